"""Resolution over Telegram: the notice with the 1-5 question reaches the chat through the Bot
API, the customer's answer is the incident's `csat` and keeps it resolved, and anything else
reopens it (through the fake Bot API)."""

from __future__ import annotations

from typing import Any

from tests.adapters.telegram.conftest import CHAT, message, post, settle


async def test_resolution_notice_csat_answer_and_reopen(
    tg: Any, bot_api: Any, agent_token: Any, clock: Any
) -> None:
    client, gw = tg
    auth = {"Authorization": f"Bearer {await agent_token(gw)}"}
    assert (await post(client, message(7001, "No tengo tono desde ayer"))).status == 200
    await settle(gw)
    row = await gw.store.read(lambda tx: tx.one("SELECT tracking FROM incidents"))
    tracking = row["tracking"]

    async def incident() -> dict[str, Any]:
        resp = await client.get(f"/api/v1/incidents/{tracking}", headers=auth)
        return await resp.json()

    resolved = {"category": "falla-de-servicio", "resolution": "Se reinició la central"}
    resp = await client.post(f"/api/v1/incidents/{tracking}/resolve", json=resolved, headers=auth)
    assert resp.status == 200, await resp.text()
    await settle(gw)
    notice = bot_api.sent()[-1]
    assert notice["chat_id"] == str(CHAT)
    assert tracking in notice["text"] and "del 1 (nada satisfecho) al 5" in notice["text"]

    # The customer's "4" is the rating: recorded, and the incident stays resolved.
    clock.advance(hours=3)
    assert (await post(client, message(7002, "4"))).status == 200
    await settle(gw)
    body = await incident()
    assert (body["status"], body["csat"]) == ("resolved", 4)
    assert [e["detail"] for e in body["events"] if e["kind"] == "csat_recorded"] == [{"score": 4}]

    # Anything else reopens the same incident.
    assert (await post(client, message(7003, "Volvió a fallar esta tarde"))).status == 200
    body = await incident()
    assert body["status"] == "in_progress" and body["tracking"] == tracking
