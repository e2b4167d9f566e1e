"""The read side of the agent API through real HTTP: auth, errors, queue order, one incident."""

from __future__ import annotations

from datetime import timedelta

from gateway.core.model import Contact, Inbound
from tests.conftest import OPEN_TIME


def _msg(pid: str, phone: str, text: str = "No tengo tono desde esta mañana", **kw) -> Inbound:
    return Inbound(
        channel="whatsapp",
        provider_id=pid,
        contact=Contact(name="Ana", phone=phone),
        text=text,
        received_at=OPEN_TIME,
        thread_by_contact=True,
        **kw,
    )


async def test_queue_requires_a_token(start_app, settings) -> None:
    client, _ = await start_app(settings, adapters={})
    resp = await client.get("/api/v1/queue")
    assert resp.status == 401
    body = await resp.json()
    assert body["error"]["code"] == "unauthorized"
    resp = await client.get("/api/v1/queue", headers={"Authorization": "Bearer nope"})
    assert resp.status == 401


async def test_queue_lists_most_urgent_attention_first(start_app, settings, agent_token, clock):
    client, gw = await start_app(settings, adapters={})
    token = await agent_token(gw)
    normal = await gw.intake.accept(_msg("SM1", "+50688880001"))
    clock.advance(minutes=5)
    critical = await gw.intake.accept(_msg("SM2", "+50688880002", severity="S1"))
    resp = await client.get("/api/v1/queue?level=L1", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    rows = (await resp.json())["incidents"]
    assert [r["tracking"] for r in rows] == [critical.tracking, normal.tracking]
    s1 = rows[0]["sla"]
    assert s1["attention_due"] == (clock.now + timedelta(hours=1)).isoformat(
        timespec="microseconds"
    )


async def test_incident_lookup_and_errors(start_app, settings, agent_token) -> None:
    client, gw = await start_app(settings, adapters={})
    token = await agent_token(gw)
    auth = {"Authorization": f"Bearer {token}"}
    r = await gw.intake.accept(_msg("SM1", "+525541700000"))
    resp = await client.get(f"/api/v1/incidents/{r.tracking}", headers=auth)
    body = await resp.json()
    assert resp.status == 200
    assert body["country"] == "MX" and body["line"] == "+525541708422"
    assert body["channel"] == "whatsapp" and body["level"] == "L1" and body["status"] == "new"
    assert body["messages"][0]["body"] == "No tengo tono desde esta mañana"
    assert [e["kind"] for e in body["events"]][:2] == ["registered", "routed"]
    # A wrong check digit is never taken for another incident.
    wrong = r.tracking[:-1] + str((int(r.tracking[-1]) + 1) % 10)
    assert (await client.get(f"/api/v1/incidents/{wrong}", headers=auth)).status == 404
    resp = await client.get("/api/v1/queue?level=L9", headers=auth)
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == "level"
    assert (await client.get("/api/v1/queue?limit=abc", headers=auth)).status == 400
    # An L1 agent cannot look at the L2 queue.
    assert (await client.get("/api/v1/queue?level=L2", headers=auth)).status == 403


async def test_attachments_download_with_nosniff_or_redirect_to_twilio(
    start_app, settings, agent_token
) -> None:
    from gateway.core.model import AttachmentIn

    client, gw = await start_app(settings, adapters={})
    auth = {"Authorization": f"Bearer {await agent_token(gw)}"}
    recording = "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1"
    r = await gw.intake.accept(
        _msg(
            "SMatt",
            "+50688880009",
            attachments=(
                AttachmentIn("factura.html", "text/html", 23, data=b"<script>alert(1)</script>"),
                AttachmentIn("buzon.wav", "audio/x-wav", 0, url=recording),
                AttachmentIn("x.png", "image/png", 0, url="http://169.254.169.254/latest"),
            ),
        )
    )
    body = await (await client.get(f"/api/v1/incidents/{r.tracking}", headers=auth)).json()
    html, wav, internal = body["messages"][0]["attachments"]
    resp = await client.get(html["url"], headers=auth)
    assert resp.status == 200 and await resp.read() == b"<script>alert(1)</script>"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert resp.headers["Content-Type"] == "application/octet-stream"
    resp = await client.get(wav["url"], headers=auth, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Location"] == recording
    assert (await client.get(internal["url"], headers=auth, allow_redirects=False)).status == 404
    assert (await client.get(html["url"])).status == 401
