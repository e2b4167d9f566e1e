"""Checklist W1–W3 on the wire: Origin, frame size, rate and IP limits, heartbeat, bad frames."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from aiohttp import WSCloseCode, WSMsgType

from adapters.webchat import ws as webchat_ws
from tests.adapters.webchat.chat_kit import (
    ORIGIN,
    START,
    connect,
    hello,
    recv,
    refused_for_too_many_sockets,
    start_chat,
    two_tabs,
    welcomed_again,
)


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", "http://www.callmyway.com", None]
)
async def test_foreign_or_missing_origin_is_refused_at_the_handshake(
    chat_app: Any, origin: str | None
) -> None:
    client, _ = await chat_app()
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await connect(client, origin)
    assert err.value.status == 403


async def test_the_gateways_own_origin_and_configured_ones_are_allowed(chat_app: Any) -> None:
    client, _ = await chat_app(
        {"allowed_origins": ["https://shop.example.com:8443"]},
        GATEWAY_PUBLIC_URL="https://chat.callmyway.com",
    )
    for origin in (
        "https://chat.callmyway.com",
        "https://CHAT.callmyway.com:443",
        "https://shop.example.com:8443",
    ):
        ws = await connect(client, origin)
        welcome, _ = await hello(ws)
        assert welcome["type"] == "welcome"
        await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await connect(client, "https://www.callmyway.com")  # no longer configured


async def test_plain_get_without_upgrade_is_a_clear_400(chat_app: Any) -> None:
    client, _ = await chat_app()
    resp = await client.get("/chat/ws", headers={"Origin": "https://www.callmyway.com"})
    assert resp.status == 400
    assert "WebSocket" in (await resp.json())["error"]["message"]


async def test_oversized_frame_closes_with_1009(chat_app: Any) -> None:
    client, gw = await chat_app({"max_frame_bytes": 4096})
    ws = await connect(client)
    await hello(ws)
    await ws.send_json({**START, "text": "x" * 5000})
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.CLOSE and msg.data == WSCloseCode.MESSAGE_TOO_BIG
    count = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents"))
    assert count["n"] == 0
    ws2 = await connect(client)  # the server is fine
    assert (await hello(ws2))[0]["type"] == "welcome"


async def test_frame_flood_gets_an_error_then_close_1008(chat_app: Any) -> None:
    client, _ = await chat_app({"messages_per_minute": 5})
    ws = await connect(client)
    await hello(ws)  # frame 1
    for _ in range(4):  # frames 2..5 are allowed
        await ws.send_str("{}")
        assert (await recv(ws))["code"] == "missing_field"
    await ws.send_str("{}")
    error = await recv(ws)
    assert error["type"] == "error" and error["code"] == "rate_limited"
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.CLOSE and msg.data == WSCloseCode.POLICY_VIOLATION
    other = await connect(client)  # another visitor is not affected
    assert (await hello(other))[0]["type"] == "welcome"


async def test_a_visitor_cannot_multiply_its_rate_with_more_tabs(chat_app: Any) -> None:
    client, _ = await chat_app({"messages_per_minute": 4})
    ws, welcome, _ = await start_chat(client)  # the start is the visitor's first write
    tab = await connect(client)
    await hello(tab, welcome["token"])
    socks = [ws, tab]
    for n in range(3):  # writes 2..4 alternate between the two tabs
        sender, other = socks[n % 2], socks[(n + 1) % 2]
        await sender.send_json({"type": "message", "client_id": f"a{n}", "text": f"m{n}"})
        assert (await recv(sender))["type"] == "ack"
        assert (await recv(other))["text"] == f"m{n}"  # the echo to the other tab
    await tab.send_json({"type": "message", "client_id": "a9", "text": "una más"})
    assert (await recv(tab))["code"] == "rate_limited"


async def test_per_ip_socket_cap_answers_429(chat_app: Any) -> None:
    client, _ = await chat_app({"max_sockets_per_ip": 2})
    first, second = await connect(client), await connect(client)
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await connect(client)
    assert err.value.status == 429
    await first.close()
    await hello(second)
    third = None
    for _ in range(100):  # the server notices the close on its own schedule
        try:
            third = await connect(client)
            break
        except aiohttp.WSServerHandshakeError:
            await second.send_str("{}")
            await recv(second)
    assert third is not None and (await hello(third))[0]["type"] == "welcome"


async def test_per_visitor_socket_cap_on_one_instance(chat_app: Any) -> None:
    """A visitor's tabs are capped (1008 "too many sockets"); a closed tab frees its place.
    On SQLite the process's own hub counts them, on PostgreSQL the shared presence rows."""
    client, gw = await chat_app({"max_sockets_per_visitor": 2})
    first, second, token = await two_tabs(client, client)
    await refused_for_too_many_sockets(client, token)
    await second.close()
    await welcomed_again(client, token)
    rows = await gw.store.read(lambda tx: tx.all("SELECT * FROM webchat_presence"))
    assert bool(rows) is gw.store.shared  # SQLite: no transaction spent on presence
    await first.close()


async def test_silent_peer_is_reaped_by_the_heartbeat(chat_app: Any) -> None:
    client, _ = await chat_app({"heartbeat": "1s"})
    ws = await client.ws_connect(
        "/chat/ws", headers={"Origin": "https://www.callmyway.com"}, autoping=False
    )
    await hello(ws)
    while True:  # never answer the server's pings
        msg = await ws.receive(timeout=10)
        if msg.type != WSMsgType.PING:
            break
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)


@pytest.mark.parametrize(
    ("frame", "code", "field"),
    [
        ("not json", "bad_json", None),
        ("[1, 2]", "bad_json", None),
        ('{"type": "launch"}', "unknown_type", "type"),
        ('{"text": "hola"}', "missing_field", "type"),
        (
            '{"type": "start", "client_id": "s1", "name": "Ana", "text": "hola", "country": "CR"}',
            "missing_field",
            "email",
        ),
        (
            '{"type": "start", "name": "Ana", "email": "a@b.co", "text": "x", "country": "ZZ"}',
            "invalid_field",
            "country",
        ),
        (
            '{"type": "start", "name": "Ana", "email": "not-an-email", "text": "x"}',
            "invalid_field",
            "email",
        ),
        ('{"type": "start", "name": "Ana", "phone": "12", "text": "x"}', "invalid_field", "phone"),
        (
            '{"type": "start", "name": "Ana", "email": "a@b.co", "text": "x", "users": "one"}',
            "missing_field",
            "can_work",
        ),
        (
            '{"type": "start", "name": "Ana", "email": "a@b.co", "text": "x", "users": "all",'
            ' "can_work": true}',
            "invalid_field",
            "users",
        ),
        ('{"type": "message", "client_id": "bad id!", "text": "x"}', "invalid_field", "client_id"),
        ('{"type": "message", "text": 5}', "invalid_field", "text"),
    ],
)
async def test_bad_frames_get_an_error_frame_and_the_socket_stays_up(
    chat_app: Any, frame: str, code: str, field: str | None
) -> None:
    client, _ = await chat_app()
    ws = await connect(client)
    await hello(ws)
    await ws.send_str(frame)
    error = await recv(ws)
    assert error["type"] == "error" and error["code"] == code and error.get("field") == field
    assert error["message"]
    await ws.send_json(START)
    assert (await recv(ws))["type"] == "ack"


async def test_binary_frames_are_refused(chat_app: Any) -> None:
    client, _ = await chat_app()
    ws = await connect(client)
    await ws.send_bytes(b"\x00\x01")
    assert (await recv(ws))["code"] == "bad_frame"
    assert (await hello(ws))[0]["type"] == "welcome"


async def test_per_ip_socket_cap_counts_each_visitor_behind_a_trusted_proxy(
    start_app: Any, make_settings: Any
) -> None:
    """Behind the TLS proxy every socket comes from the proxy: X-Forwarded-For names the visitor
    (only because the proxy is listed in [gateway] trusted_proxies)."""
    settings = make_settings(
        {"gateway": {"trusted_proxies": ["127.0.0.0/8"]}, "webchat": {"max_sockets_per_ip": 1}}
    )
    client, _ = await start_app(settings, adapters={"webchat": webchat_ws.setup})

    async def open_as(visitor: str) -> Any:
        headers = {"Origin": ORIGIN, "X-Forwarded-For": visitor}
        return await client.ws_connect("/chat/ws", headers=headers)

    first = await open_as("203.0.113.7")
    other = await open_as("198.51.100.23")  # another visitor behind the same proxy
    assert (await hello(other))[0]["type"] == "welcome"
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await open_as("203.0.113.7")
    assert err.value.status == 429
    await first.close()
    await other.close()
