"""Which address per-client limits count (click2call, chat sockets, agent sign-in, Telegram)."""

from __future__ import annotations

from unittest import mock

import pytest
from aiohttp.test_utils import make_mocked_request

from gateway.web.http import client_address

PROXIES = ("10.0.0.0/8", "fd00::/8")


def request_from(peer: str, *forwarded: str):
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 4711) if name == "peername" else default
    )
    headers = [("X-Forwarded-For", value) for value in forwarded]
    return make_mocked_request("POST", "/api/v1/click2call", headers=headers, transport=transport)


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", ("198.51.100.1",), "203.0.113.9"),  # not a proxy: the header is ignored
        ("10.1.2.3", (), "10.1.2.3"),  # the proxy itself (a health check)
        ("10.1.2.3", ("198.51.100.1",), "198.51.100.1"),
        ("10.1.2.3", ("6.6.6.6, 198.51.100.1",), "198.51.100.1"),  # left part is the client's
        ("10.1.2.3", ("198.51.100.1, 10.9.9.9",), "198.51.100.1"),  # two proxy hops
        ("10.1.2.3", ("198.51.100.1", "10.9.9.9"), "198.51.100.1"),  # repeated header
        ("10.1.2.3", ("10.7.7.7, 10.9.9.9",), "10.7.7.7"),  # an internal client
        ("10.1.2.3", ("not-an-ip, 198.51.100.1",), "198.51.100.1"),
        ("10.1.2.3", ("198.51.100.1, <script>",), "10.1.2.3"),  # garbage from the proxy side
        ("fd00::1", ("2001:db8::7",), "2001:db8::7"),
    ],
)
def test_forwarded_for_is_believed_only_from_trusted_proxies(
    peer: str, forwarded: tuple[str, ...], expected: str
) -> None:
    assert client_address(request_from(peer, *forwarded), PROXIES) == expected


def test_without_trusted_proxies_the_peer_is_the_client() -> None:
    assert client_address(request_from("10.1.2.3", "198.51.100.1"), ()) == "10.1.2.3"
