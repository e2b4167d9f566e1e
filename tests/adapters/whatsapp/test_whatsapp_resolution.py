"""Resolution over WhatsApp: the notice with the 1-5 question, the answer as `csat`, a thanks
after closing kept on the incident, anything else reopening it (through the fake Twilio)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.adapters.whatsapp.wa_kit import inbound_form, post_signed

WEBHOOK = "/webhooks/twilio/whatsapp"
TRACKING = re.compile(r"CMW-[0-9]{7,}-[0-9]")
PHONE = "+50688887777"


async def _sent(fake: Any, count: int) -> list[Any]:
    for _ in range(250):
        if len(fake.sent) >= count:
            return fake.sent
        await asyncio.sleep(0.02)
    raise AssertionError(f"Twilio got {len(fake.sent)} messages, expected {count}")


async def _write(client: Any, text: str) -> str:
    resp = await post_signed(client, WEBHOOK, inbound_form(PHONE, text))
    assert resp.status == 200
    return await resp.text()


async def test_resolution_notice_csat_answer_thanks_and_reopen(
    wa: Any, twilio_fake: Any, agent_token: Any, clock: Any
) -> None:
    client, gw = wa
    auth = {"Authorization": f"Bearer {await agent_token(gw)}"}
    tracking = TRACKING.search(await _write(client, "No tengo tono desde ayer")).group(0)  # type: ignore[union-attr]

    async def act(action: str, body: Any = None) -> dict[str, Any]:
        resp = await client.post(f"/api/v1/incidents/{tracking}/{action}", json=body, headers=auth)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def incident() -> dict[str, Any]:
        resp = await client.get(f"/api/v1/incidents/{tracking}", headers=auth)
        return await resp.json()

    resolved = {"category": "falla-de-servicio", "resolution": "Se reinició la central"}
    body = await act("resolve", resolved)
    assert body["status"] == "resolved" and body["csat"] is None
    [notice] = await _sent(twilio_fake, 1)
    assert notice["To"] == f"whatsapp:{PHONE}"
    assert tracking in notice["Body"] and "del 1 (nada satisfecho) al 5" in notice["Body"]

    # The customer's "5" is the rating: thanked, recorded, and the incident stays resolved.
    clock.advance(hours=2)
    answer = await _write(client, "5")
    assert "Gracias por su respuesta" in answer and tracking in answer
    body = await incident()
    assert (body["status"], body["csat"]) == ("resolved", 5)
    assert [e["detail"] for e in body["events"] if e["kind"] == "csat_recorded"] == [{"score": 5}]
    assert body["messages"][-1]["body"] == "5"
    boss = {"Authorization": f"Bearer {await agent_token(gw, 'sofia', 'supervisor')}"}
    report = await (await client.get("/api/v1/reports/sla?month=2026-11", headers=boss)).json()
    assert report["csat"] == {
        "answers": 1,
        "average": 5.0,
        "by_score": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 1},
    }

    # Anything else reopens the same incident.
    await _write(client, "Volvió a fallar esta tarde")
    body = await incident()
    assert body["status"] == "in_progress" and body["tracking"] == tracking

    # Resolved again (a fresh rating is asked for), closed; a "gracias" a day later is kept
    # on the closed incident, never a new S3 in the queue.
    body = await act("resolve", resolved)
    assert body["csat"] is None
    await _sent(twilio_fake, 2)
    await act("close")
    clock.advance(days=1)
    assert "<Message>" not in await _write(client, "Muchas gracias 👍")
    body = await incident()
    assert body["status"] == "closed" and body["messages"][-1]["body"] == "Muchas gracias 👍"
    assert any(e["kind"] == "thanks_recorded" for e in body["events"])
    queue = await (await client.get("/api/v1/queue?level=L1", headers=auth)).json()
    assert queue["incidents"] == []
    count = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents"))
    assert count["n"] == 1

    # A real message after closing starts a follow-up incident, as before.
    reply = await _write(client, "Ahora no tengo internet")
    follow_up = TRACKING.search(reply).group(0)  # type: ignore[union-attr]
    assert follow_up != tracking
