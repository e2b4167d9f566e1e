"""The request-reading layer (issue #16 item 1): input that crashed Python's parsers or
hmac.compare_digest gets the contract's 400/415 naming the problem, on every JSON/form route,
before any handler runs; and nothing such is shunted for a replay that could never work."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from typing import Any

import pytest

from gateway.core.model import Contact, Inbound
from gateway.workspace.actions import ACTIONS
from tests.conftest import whatsapp_incident

DEEP = b"[" * 100_000 + b"]" * 100_000  # 200 KB, 100,000 levels
HUGE_NUMBER = b'{"text": ' + b"9" * 5000 + b"}"
HUGE_INT_IN_ARRAY = b'{"text": "x", "n": [' + b"1" * 4301 + b"]}"
SURROGATE = b'{"text": "\\ud800", "name": "\\udfff", "phone": "+50688887777",'
SURROGATE += b' "severity": "S2", "level": "L2", "reason": "\\ud800", "category": "consulta",'
SURROGATE += b' "resolution": "\\ud800"}'


JSON_CASES = [
    (SURROGATE, "surrogate"),
    (HUGE_NUMBER, "number"),
    (HUGE_INT_IN_ARRAY, "number"),
    (DEEP, "nested"),
    (b'{"text": NaN}', "not valid JSON"),
]


async def post_paths(gw: Any, tracking: str) -> list[str]:
    """Every POST route of the app (agent actions expanded)."""
    paths = set()
    for resource in gw.app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        if path and any(route.method == "POST" for route in resource):
            path = path.replace("{tracking}", tracking)
            if "{action}" in path:
                paths.update(path.replace("{action}", a) for a in ACTIONS)
            elif "{" not in path:
                paths.add(path)
    return sorted(paths)


async def test_bad_json_is_400_naming_the_problem_on_every_route(
    start_app: Any, full_settings: Any, agent_token: Any
) -> None:
    client, gw = await start_app(full_settings)
    tracking = await whatsapp_incident(gw, "SMguard")
    auth = {"Authorization": f"Bearer {await agent_token(gw, 'jefa', 'supervisor')}"}
    paths = await post_paths(gw, tracking)
    for needed in (
        "/api/v1/click2call",
        "/webhooks/telegram",
        f"/api/v1/incidents/{tracking}/reply",
    ):
        assert needed in paths
    for path in paths:
        for body, words in JSON_CASES:
            headers = {"Content-Type": "application/json", "Origin": "https://www.callmyway.com"}
            resp = await client.post(path, data=body, headers={**headers, **auth})
            text = await resp.text()
            assert resp.status == 400, (path, words, resp.status, text[:200])
            error = (await resp.json())["error"]
            assert words in error["message"], (path, error)
    assert (await client.get("/healthz")).status == 200


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b'{"text": "hola"}'),  # says gzip, is not
        ("deflate", b'{"text": "hola"}'),
        ("br", b'{"text": "hola"}'),
        ("gzip", gzip.compress(b'{"text": "hola"}')),  # really gzip: still not accepted
        ("deflate", zlib.compress(b"From=x&Body=y")),
    ],
)
async def test_content_encoding_is_415_before_any_handler(
    start_app: Any, full_settings: Any, agent_token: Any, encoding: str, body: bytes
) -> None:
    client, gw = await start_app(full_settings)
    tracking = await whatsapp_incident(gw, "SMguard")
    auth = {"Authorization": f"Bearer {await agent_token(gw)}"}
    for path in (
        f"/api/v1/incidents/{tracking}/note",
        "/api/v1/click2call",
        "/webhooks/telegram",
        "/webhooks/twilio/whatsapp",
    ):
        headers = {"Content-Type": "application/json", "Content-Encoding": encoding, **auth}
        resp = await client.post(path, data=body, headers=headers)
        assert resp.status == 415, (path, resp.status, await resp.text())
        assert "Content-Encoding" in (await resp.json())["error"]["message"]


async def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request written byte for byte (clients refuse to send non-ASCII headers)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    status = int(data.split(b" ", 2)[1])
    return status, data


@pytest.mark.parametrize(
    "header",
    [
        "X-CSRF-Token: t\xc3\xa9st".encode("latin-1"),
        b"X-CSRF-Token: \xff\xfe",
        "Cookie: cmw_agent=\xc3\xa9.abc".encode("latin-1"),
        b"Cookie: cmw_login_csrf=\xff",
        "Authorization: Bearer \xc3\xb1".encode("latin-1"),
    ],
)
async def test_non_ascii_credentials_are_400_not_500(
    start_app: Any, full_settings: Any, header: bytes
) -> None:
    client, gw = await start_app(full_settings)
    tracking = await whatsapp_incident(gw, "SMguard")
    port = client.server.port
    for path in (
        f"/api/v1/incidents/{tracking}/note",
        "/webhooks/telegram",
        "/webhooks/twilio/whatsapp",
        "/agent/login",
    ):
        head = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header + b"\r\n"
        head += b"Content-Type: application/json\r\n"
        status, data = await raw_request(port, head, b'{"text": "hola"}')
        assert status == 400, (path, header, data[:300])
        assert b"ASCII" in data
    assert (await client.get("/healthz")).status == 200


@pytest.mark.parametrize(
    ("path", "header"),
    [
        ("/webhooks/telegram", "X-Telegram-Bot-Api-Secret-Token: s3cr\xc3\xa9t".encode("latin-1")),
        ("/webhooks/telegram", b"X-Telegram-Bot-Api-Secret-Token: \xff\xfe"),
        ("/webhooks/twilio/whatsapp", b"X-Twilio-Signature: \xff\xff"),
        ("/webhooks/twilio/whatsapp", "X-Twilio-Signature: \xc3\xb1=".encode("latin-1")),
    ],
)
async def test_non_ascii_provider_signatures_are_their_403(
    start_app: Any, full_settings: Any, path: str, header: bytes
) -> None:
    """A provider's secret header that is not even ASCII is a wrong one: 403 (T1, G1)."""
    client, _ = await start_app(full_settings)
    head = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + header + b"\r\n"
    head += b"Content-Type: application/x-www-form-urlencoded\r\n"
    status, data = await raw_request(client.server.port, head, b"From=x&Body=y")
    assert status == 403, data[:300]


async def test_login_form_csrf_field_non_ascii_is_refused_not_500(
    start_app: Any, full_settings: Any
) -> None:
    client, _ = await start_app(full_settings)
    page = await client.get("/agent/login")
    assert page.status == 200
    resp = await client.post(
        "/agent/login", data={"csrf": "é" * 10, "name": "ana", "password": "x"}
    )
    assert resp.status == 403  # the form expired, said in Spanish; never a 500
    live = await client.get("/agent/live?csrf=%C3%A9")
    assert live.status < 500


async def test_click2call_surrogate_is_400_and_never_shunted(
    start_app: Any, full_settings: Any
) -> None:
    client, gw = await start_app(full_settings)
    body = b'{"name": "Ana \\ud800", "phone": "+50688887777", "description": "\\udc00"}'
    headers = {"Content-Type": "application/json", "Origin": "https://www.callmyway.com"}
    resp = await client.post("/api/v1/click2call", data=body, headers=headers)
    assert resp.status == 400
    assert "surrogate" in (await resp.json())["error"]["message"]
    # Sent as text/plain, the same body reaches read_json: still 400, still nothing stored.
    resp = await client.post(
        "/api/v1/click2call", data=body, headers={**headers, "Content-Type": "text/plain"}
    )
    assert resp.status == 400
    receipts = await gw.store.read(lambda tx: tx.all("SELECT state FROM receipts"))
    assert not [r for r in receipts if r["state"] == "shunted"]
    assert await gw.intake.replay_shunted() == (0, 0)


async def test_a_lone_surrogate_reaching_the_core_is_replaced_not_shunted(
    start_app: Any, full_settings: Any
) -> None:
    """Email decodes bad bytes into surrogates (surrogateescape): stored with U+FFFD-like '?'."""
    _, gw = await start_app(full_settings)
    receipt = await gw.intake.accept(
        Inbound(
            channel="email",
            provider_id="<bad@x>",
            contact=Contact(email="ana@example.com", name="Ana \udcff"),
            text="hola \udce9",
            subject="asunto \ud800",
            received_at=gw.clock(),
            acknowledge=False,
        )
    )
    assert receipt.created
    shunted = await gw.store.read(
        lambda tx: tx.all("SELECT id FROM receipts WHERE state = 'shunted'")
    )
    assert shunted == []
