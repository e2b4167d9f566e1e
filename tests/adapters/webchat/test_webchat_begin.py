"""Type first over a real socket: `begin` (a message alone), `details` after it, images over
POST /chat/upload, and the case's status with its rating (frames only added to the contract)."""

from __future__ import annotations

import json
from typing import Any

from tests.adapters.webchat.chat_kit import ORIGIN, connect, frames_until, hello, recv
from tests.workspace.conftest import png

BEGIN = {"type": "begin", "client_id": "c-begin", "text": "Sin tono en la central", "country": "CR"}


async def _begin(client: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    ws = await connect(client)
    welcome, _ = await hello(ws)
    await ws.send_json(BEGIN)
    ack, ticket = await frames_until(ws, "ticket")
    assert ack["type"] == "ack"
    return ws, welcome, ticket


async def test_begin_with_a_message_alone_then_details(chat_app: Any) -> None:
    client, gw = await chat_app()
    ws, _, ticket = await _begin(client)
    tracking = ticket["tracking"]
    row = await gw.store.read(lambda tx: tx.incident_by_tracking(tracking))
    assert (row["severity"], row["status"]) == ("S3", "new")
    first = await gw.store.read(lambda tx: tx.messages(row["id"]))
    assert first[0]["author"] == "Visitante del chat"  # never the visitor's token

    # A wrong field is named; the right details are kept and raise the severity.
    await ws.send_json({"type": "details", "client_id": "d1", "email": "ana@"})
    error = await recv(ws)
    assert (error["type"], error["field"], error["client_id"]) == ("error", "email", "d1")
    await ws.send_json(
        {
            "type": "details",
            "client_id": "d2",
            "name": "Ana Rojas",
            "email": "ana@example.com",
            "users": "company",
            "can_work": False,
        }
    )
    saved = await recv(ws)
    assert saved["type"] == "details_saved" and saved["client_id"] == "d2"
    # The typed address gets its confirmation link, queued with the details in one COMMIT.
    confirm = await gw.store.read(
        lambda tx: tx.all("SELECT recipient FROM outbox WHERE kind = 'confirm'")
    )
    assert confirm == [{"recipient": "ana@example.com"}]
    row = await gw.store.read(lambda tx: tx.incident_by_tracking(tracking))
    # Typed details are the incident's claims, never the visitor's identity (issue #15).
    claims = json.loads(row["claims"])
    assert (claims["name"], claims["email"]) == ("Ana Rojas", "ana@example.com")
    contact = await gw.store.read(lambda tx: tx.contact(row["contact_id"]))
    assert contact["email"] is None and contact["visitor_id"]
    assert row["severity"] == "S1"
    events = await gw.store.read(lambda tx: tx.events(row["id"]))
    assert [e["actor"] for e in events if e["kind"] == "severity_changed"] == ["customer"]
    messages = await gw.store.read(lambda tx: tx.messages(row["id"]))
    assert "nombre Ana Rojas; correo ana@example.com" in messages[-1]["body"]


async def test_resolution_reaches_the_chat_and_the_rating_keeps_it_resolved(
    chat_app: Any, agent_token: Any
) -> None:
    client, gw = await chat_app()
    auth = {"Authorization": f"Bearer {await agent_token(gw)}"}
    ws, welcome, ticket = await _begin(client)
    tracking = ticket["tracking"]
    resp = await client.post(
        f"/api/v1/incidents/{tracking}/resolve",
        json={"category": "consulta", "resolution": "Central reiniciada"},
        headers=auth,
    )
    assert resp.status == 200
    await gw.outbox.drain_once()
    message, status = await frames_until(ws, "status")
    assert message["from"] == "agent" and message["author"] == "ana"
    assert tracking in message["text"] and "del 1 (nada satisfecho) al 5" in message["text"]
    assert status == {"type": "status", "tracking": tracking, "status": "resolved", "csat": True}

    # A new tab with the same token is told the case's state.
    other = await connect(client)
    again, replay = await hello(other, token=welcome["token"])
    assert again["case"] == {"tracking": tracking, "status": "resolved"}
    assert replay[-1].get("author") == "ana"
    await ws.send_json({"type": "message", "client_id": "m5", "text": "5"})
    ack = await recv(ws)
    assert ack["type"] == "ack" and ack["tracking"] == tracking
    row = await gw.store.read(lambda tx: tx.incident_by_tracking(tracking))
    assert (row["status"], row["csat"]) == ("resolved", 5)

    # Closing is shown live too.
    resp = await client.post(f"/api/v1/incidents/{tracking}/close", headers=auth)
    assert resp.status == 200
    await gw.outbox.drain_once()
    [closed] = await frames_until(ws, "status")
    assert closed["status"] == "closed"


async def test_images_join_only_the_visitors_own_conversation(chat_app: Any) -> None:
    client, gw = await chat_app()
    _, welcome, ticket = await _begin(client)
    tracking = ticket["tracking"]
    headers = {"Origin": ORIGIN, "Authorization": f"Bearer {welcome['token']}"}

    async def upload(data: bytes, kind: str = "image/png", **kw: Any) -> Any:
        query = {"client_id": "img1", "tracking": tracking, "name": "../captura.png", **kw}
        return await client.post(
            "/chat/upload", data=data, params=query, headers={**headers, "Content-Type": kind}
        )

    resp = await upload(png())
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["tracking"] == tracking and body["filename"] == "captura.png"
    assert (await upload(png())).status == 200  # a resend (same client id) is stored once
    files = await gw.store.read(lambda tx: tx.all("SELECT filename, size FROM attachments"))
    assert files == [{"filename": "captura.png", "size": len(png())}]

    assert (await upload(b"<svg onload=alert(1)>", client_id="x2")).status == 400
    assert (await upload(png(), "image/svg+xml", client_id="x3")).status == 400
    stranger = await connect(client)
    own, _ = await hello(stranger)
    resp = await client.post(
        "/chat/upload",
        data=png(),
        params={"client_id": "x4", "tracking": tracking},
        headers={
            "Origin": ORIGIN,
            "Authorization": f"Bearer {own['token']}",
            "Content-Type": "image/png",
        },
    )
    assert resp.status == 409  # not this visitor's conversation
    resp = await client.post(
        "/chat/upload",
        data=png(),
        params={"client_id": "x5", "tracking": tracking},
        headers={"Origin": ORIGIN, "Content-Type": "image/png"},
    )
    assert resp.status == 401
    resp = await client.post(
        "/chat/upload",
        data=png(),
        params={"client_id": "x6", "tracking": tracking},
        headers={**headers, "Origin": "https://evil.example", "Content-Type": "image/png"},
    )
    assert resp.status == 403
