"""A customer's Telegram conversation end to end: Update JSON in, sendMessage out (fake Bot API).

First message → incident + tracking number; follow-ups join without a second ack; /start greets
with the hours and creates nothing; /estado lists open incidents; agent replies leave through
sendMessage; concurrent first messages of one chat make one incident (checklist G7).
"""

from __future__ import annotations

import asyncio
import re

from gateway.core.replies import queue_reply
from tests.adapters.telegram.conftest import CHAT, count, message, post, settle, user
from tests.conftest import CLOSED_TIME

TRACKING = re.compile(r"CMW-[0-9]{7,}-[0-9]")


async def _incident(gw, tracking: str) -> dict:
    return await gw.store.read(lambda tx: tx.incident_by_tracking(tracking))


async def test_first_message_registers_an_incident_and_sends_the_tracking_number(
    tg, bot_api
) -> None:
    client, gw = tg
    resp = await post(client, message(1001, "Hola, no tengo tono en ninguna de mis líneas"))
    assert resp.status == 200
    await settle(gw)
    [sent] = bot_api.sent()
    assert sent["chat_id"] == str(CHAT)
    tracking = TRACKING.search(sent["text"]).group(0)
    assert sent["text"].startswith("Hola Ana Rojas")
    row = await _incident(gw, tracking)
    assert row["channel"] == "telegram" and row["country"] == "CR" and row["language"] == "es"
    contact = await gw.store.read(lambda tx: tx.contact(row["contact_id"]))
    assert contact["telegram_chat_id"] == str(CHAT) and contact["name"] == "Ana Rojas"
    ack = await gw.store.read(lambda tx: tx.one("SELECT * FROM outbox WHERE kind = 'ack'"))
    assert ack["status"] == "sent" and ack["provider_id"] == "501"


async def test_follow_up_joins_the_open_incident_without_a_second_ack(tg, bot_api) -> None:
    client, gw = tg
    await post(client, message(1001, "No tengo tono desde ayer"))
    await settle(gw)
    await post(client, message(1002, "Ya reinicié el equipo y sigue igual"))
    await settle(gw)
    assert await count(gw, "incidents") == 1
    bodies = await gw.store.read(
        lambda tx: [m["body"] for m in tx.all("SELECT body FROM messages ORDER BY id")]
    )
    assert bodies == ["No tengo tono desde ayer", "Ya reinicié el equipo y sigue igual"]
    assert len(bot_api.sent()) == 1


async def test_english_client_gets_english(tg, bot_api) -> None:
    client, gw = tg
    sender = user("John", "Smith", lang="en-US", uid=555)
    await post(client, message(1003, "Calls drop after a minute", chat=555, sender=sender))
    await settle(gw)
    [sent] = bot_api.sent()
    assert sent["text"].startswith("Hello John Smith") and TRACKING.search(sent["text"])


async def test_start_greets_with_the_hours_and_creates_no_incident(tg, bot_api) -> None:
    client, gw = tg
    assert (await post(client, message(1010, "/start"))).status == 200
    assert (await post(client, message(1010, "/start"))).status == 200  # redelivered
    await settle(gw)
    [sent] = bot_api.sent()
    assert sent["chat_id"] == str(CHAT)
    assert "¡Hola Ana Rojas!" in sent["text"]
    assert "lunes a viernes de 06:00 a 21:00" in sent["text"]
    assert "fuera de horario" not in sent["text"]
    assert await count(gw, "incidents") == 0
    assert await count(gw, "receipts") == 0


async def test_start_after_hours_says_when_the_line_opens(tg, bot_api, clock) -> None:
    client, gw = tg
    clock.set(CLOSED_TIME)  # Sunday 23:00 in Costa Rica
    await post(client, message(1011, "/start@CallMyWaySoporteBot"))
    await settle(gw)
    [sent] = bot_api.sent()
    assert "abrimos el lunes 30/11/2026 a las 06:00, hora de Costa Rica" in sent["text"]


async def test_estado_lists_the_chats_open_incidents(tg, bot_api) -> None:
    client, gw = tg
    await post(client, message(1020, "/estado"))
    await settle(gw)
    assert "No tiene casos abiertos" in bot_api.sent()[-1]["text"]
    await post(client, message(1021, "La factura de noviembre vino duplicada"))
    await settle(gw)
    tracking = TRACKING.search(bot_api.sent()[-1]["text"]).group(0)
    row = await _incident(gw, tracking)
    await gw.store.transact(lambda tx: tx.update_incident(row["id"], {"status": "in_progress"}))
    await post(client, message(1022, "/estado"))
    await settle(gw)
    text = bot_api.sent()[-1]["text"]
    assert f"{tracking}: en atención (La factura de noviembre vino duplicada)" in text
    assert await count(gw, "incidents") == 1
    assert await count(gw, "messages") == 1  # commands are not incident messages


async def test_agent_reply_leaves_through_send_message(tg, bot_api, clock) -> None:
    client, gw = tg
    await post(client, message(1030, "No puedo recibir llamadas"))
    await settle(gw)
    tracking = TRACKING.search(bot_api.sent()[-1]["text"]).group(0)
    row = await _incident(gw, tracking)
    text = "Hola Ana, ya reiniciamos su troncal. ¿Puede probar de nuevo?"
    message_id = await gw.store.transact(
        lambda tx: queue_reply(
            tx, row, text=text, author="ana", now=clock(), guards=gw.reply_guards
        )
    )
    await settle(gw)
    sent = bot_api.sent()[-1]
    assert sent == {"chat_id": str(CHAT), "text": text}
    out = await gw.store.read(
        lambda tx: tx.one("SELECT * FROM messages WHERE id = ?", (message_id,))
    )
    assert out["delivery_status"] == "sent" and out["external_ref"] == "502"


async def test_concurrent_first_messages_of_one_chat_make_one_incident(tg, bot_api) -> None:
    client, gw = tg
    texts = [f"Mensaje {n}: sin servicio en la sucursal" for n in range(8)]
    responses = await asyncio.gather(
        *(post(client, message(2000 + n, t)) for n, t in enumerate(texts))
    )
    assert [r.status for r in responses] == [200] * 8
    await settle(gw)
    assert await count(gw, "incidents") == 1
    assert await count(gw, "messages") == 8
    assert len(bot_api.sent()) == 1  # one acknowledgement
    # The timeline keeps arrival order (the single writer serializes the chat's updates).
    bodies = await gw.store.read(
        lambda tx: [m["body"] for m in tx.all("SELECT body FROM messages ORDER BY at, id")]
    )
    assert sorted(bodies) == sorted(texts)


async def test_photo_with_caption_is_a_message_with_the_photo_attached(tg, bot_api) -> None:
    client, gw = tg
    photo = [
        {
            "file_id": "AgACAgEAAxkBAAIB",
            "file_unique_id": "AQADx",
            "width": 90,
            "height": 51,
            "file_size": 1254,
        }
    ]
    bot_api.files["AgACAgEAAxkBAAIB"] = b"\xff\xd8 jpeg"
    await post(client, message(1040, None, photo=photo, caption="Este error sale en el equipo"))
    await settle(gw)
    assert await count(gw, "incidents") == 1
    row = await gw.store.read(lambda tx: tx.one("SELECT flags, body FROM messages"))
    assert row["body"] == "Este error sale en el equipo"
    assert "media_not_fetched" not in row["flags"]
    att = await gw.store.read(lambda tx: tx.one("SELECT filename, content_type FROM attachments"))
    assert att == {"filename": "foto_AQADx.jpg", "content_type": "image/jpeg"}
