"""Telegram dedupe by (chat id, message id) and edited messages, through the real webhook.

Telegram restarts update ids after a week without updates: a new message that reuses an old
update_id is a new message, not a duplicate; a redelivery of the same update still is one. An
`edited_message` changes the message it edits and shows agents an edit event.
"""

from __future__ import annotations

import json
from typing import Any

from tests.adapters.telegram.conftest import CHAT, count, message, post, settle


async def messages(gw: Any) -> list[dict[str, Any]]:
    return await gw.store.read(lambda tx: tx.all("SELECT id, body FROM messages ORDER BY id"))


async def test_a_reused_update_id_with_a_new_message_is_not_dropped(tg, bot_api) -> None:
    client, gw = tg
    first = message(700, "No tengo internet en la oficina", msg_id=11)
    assert (await post(client, first)).status == 200
    assert (await post(client, first)).status == 200  # a redelivery: the same message
    # A week without updates later, Telegram starts again from a low update_id.
    later = message(700, "Tampoco funciona el teléfono fijo", msg_id=12)
    assert (await post(client, later)).status == 200
    await settle(gw)
    bodies = [m["body"] for m in await messages(gw)]
    assert bodies == ["No tengo internet en la oficina", "Tampoco funciona el teléfono fijo"]
    assert await count(gw, "incidents") == 1  # the second joins the chat's open incident


async def test_a_reused_update_id_for_a_command_is_answered(tg, bot_api) -> None:
    client, gw = tg
    assert (await post(client, message(5, "/start", msg_id=1))).status == 200
    await settle(gw)
    assert (await post(client, message(5, "/start", msg_id=90))).status == 200
    await settle(gw)
    assert len(bot_api.sent()) == 2  # answered again: a new message, not a redelivery


def edited(update_id: int, msg_id: int, text: str, edit_date: int) -> dict[str, Any]:
    update = message(update_id, text, msg_id=msg_id)
    msg = update.pop("message")
    msg["edit_date"] = edit_date
    return {**update, "edited_message": msg}


async def test_an_edited_message_reaches_the_incident_as_an_edit(tg, bot_api, agent_token):
    client, gw = tg
    await post(client, message(800, "Mi número es 8888-0000", msg_id=31))
    edit = edited(801, 31, "Mi número es 8888-1111", 1_800_000_000)
    assert (await post(client, edit)).status == 200
    assert (await post(client, edit)).status == 200  # redelivered edit: applied once
    await settle(gw)
    assert [m["body"] for m in await messages(gw)] == ["Mi número es 8888-1111"]
    token = await agent_token(gw, "sara", "supervisor")
    tracking = (await gw.store.read(lambda tx: tx.one("SELECT tracking FROM incidents")))[
        "tracking"
    ]
    resp = await client.get(
        f"/api/v1/incidents/{tracking}", headers={"Authorization": f"Bearer {token}"}
    )
    body = await resp.json()
    edits = [e for e in body["events"] if e["kind"] == "message_edited"]
    assert len(edits) == 1
    assert edits[0]["detail"]["before"] == "Mi número es 8888-0000"
    assert edits[0]["detail"]["text"] == "Mi número es 8888-1111"
    assert await count(gw, "incidents") == 1 and len(bot_api.sent()) == 1  # one ack only


async def test_an_edit_of_a_message_we_never_got_is_a_new_message(tg, bot_api) -> None:
    client, gw = tg
    edit = edited(900, 77, "Sigo sin servicio", 1_800_000_100)
    assert (await post(client, edit)).status == 200
    await settle(gw)
    assert [m["body"] for m in await messages(gw)] == ["Sigo sin servicio"]
    raw = await gw.store.read(lambda tx: tx.one("SELECT raw FROM receipts"))
    assert json.loads(raw["raw"])["edited_message"]["chat"]["id"] == CHAT
