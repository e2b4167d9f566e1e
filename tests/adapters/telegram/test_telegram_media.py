"""Telegram files: photos, voice notes and documents reach the agent after the commit (getFile
and the file download URL through the real python-telegram-bot `Bot`, against the fake API)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.adapters.telegram.conftest import count, message, post, settle

JPEG = b"\xff\xd8\xff\xe0" + b"captura de pantalla " * 50 + b"\xff\xd9"
OGG = b"OggS" + b"\x00voz" * 300


def photo(file_id: str, size: int) -> list[dict[str, Any]]:
    """Telegram sends every size of a photo; the largest is the one worth keeping."""
    return [
        {"file_id": f"{file_id}-thumb", "file_unique_id": "AQADs", "width": 90, "height": 51,
         "file_size": 1254},
        {"file_id": file_id, "file_unique_id": "AQADx", "width": 1280, "height": 720,
         "file_size": size},
    ]  # fmt: skip


async def fetched(gw: Any) -> None:
    """Wait for the downloads the webhook started."""
    await asyncio.gather(*list(gw.extras["telegram"].media.tasks))


async def attachments(gw: Any) -> list[dict[str, Any]]:
    return await gw.store.read(
        lambda tx: tx.all(
            "SELECT filename, content_type, size, state, data FROM attachments ORDER BY id"
        )
    )


async def test_a_photo_without_caption_opens_an_incident_with_the_picture(
    tg, bot_api, agent_token
) -> None:
    client, gw = tg
    bot_api.files["AgACAgEAAxkBAAIC"] = JPEG
    resp = await post(client, message(1200, None, photo=photo("AgACAgEAAxkBAAIC", len(JPEG))))
    assert resp.status == 200
    await fetched(gw)
    await settle(gw)
    # The customer gets the tracking number, as for a text message.
    [ack] = bot_api.sent()
    assert "CMW-" in ack["text"]
    # Only the largest size was asked for, through getFile and its download URL.
    assert [p["file_id"] for m, p in bot_api.calls if m == "getFile"] == ["AgACAgEAAxkBAAIC"]
    assert bot_api.downloads == ["documents/AgACAgEAAxkBAAIC.bin"]
    token = await agent_token(gw)
    auth = {"Authorization": f"Bearer {token}"}
    row = await gw.store.read(lambda tx: tx.one("SELECT tracking FROM incidents"))
    body = await (await client.get(f"/api/v1/incidents/{row['tracking']}", headers=auth)).json()
    [msg] = body["messages"]
    assert msg["body"] == "[1 archivo(s) adjunto(s)]"
    [att] = msg["attachments"]
    assert att["filename"] == "foto_AQADx.jpg" and att["content_type"] == "image/jpeg"
    assert att["state"] == "stored" and att["size"] == len(JPEG)
    download = await client.get(att["url"], headers=auth)
    assert download.status == 200 and await download.read() == JPEG


async def test_a_voice_note_joins_the_open_incident(tg, bot_api) -> None:
    client, gw = tg
    await post(client, message(1210, "No tengo tono desde ayer"))
    bot_api.files["AwACAgEAAxkBAAIE"] = OGG
    voice = {"file_id": "AwACAgEAAxkBAAIE", "file_unique_id": "AgADv", "duration": 4,
             "mime_type": "audio/ogg", "file_size": len(OGG)}  # fmt: skip
    await post(client, message(1211, None, voice=voice))
    await fetched(gw)
    assert await count(gw, "incidents") == 1
    bodies = await gw.store.read(lambda tx: tx.all("SELECT body FROM messages ORDER BY id"))
    assert [b["body"] for b in bodies] == ["No tengo tono desde ayer", "[1 archivo(s) adjunto(s)]"]
    [att] = await attachments(gw)
    assert att["filename"] == "nota_de_voz_AgADv.ogg" and att["content_type"] == "audio/ogg"
    assert att["data"] == OGG


async def test_a_document_keeps_its_name_and_the_caption_is_the_text(tg, bot_api) -> None:
    client, gw = tg
    bot_api.files["BQACAgEAAxkBAAIF"] = b"%PDF-1.7 factura"
    document = {"file_id": "BQACAgEAAxkBAAIF", "file_unique_id": "AgADd",
                "file_name": "factura-noviembre.pdf", "mime_type": "application/pdf",
                "file_size": 16}  # fmt: skip
    await post(client, message(1220, None, document=document, caption="Me cobraron doble"))
    await fetched(gw)
    body = await gw.store.read(lambda tx: tx.one("SELECT body, flags FROM messages"))
    assert body["body"] == "Me cobraron doble" and "media_not_fetched" not in body["flags"]
    [att] = await attachments(gw)
    assert (att["filename"], att["content_type"], att["state"]) == (
        "factura-noviembre.pdf",
        "application/pdf",
        "stored",
    )


async def test_a_file_over_the_limit_is_refused_and_shown_to_agents(
    start_app, tg_settings, bot_api
) -> None:
    from dataclasses import replace

    from adapters.telegram import bot as telegram_bot

    settings = replace(tg_settings, telegram=replace(tg_settings.telegram, max_file_bytes=100))
    client, gw = await start_app(settings, adapters={"telegram": telegram_bot.setup})
    bot_api.files["AgACbig"] = JPEG
    resp = await post(client, message(1230, None, photo=photo("AgACbig", len(JPEG))))
    assert resp.status == 200  # intake is never blocked by a file
    await fetched(gw)
    [att] = await attachments(gw)
    assert att["state"] == "failed" and att["data"] is None
    assert bot_api.downloads == []  # getFile said how big it is: not downloaded at all
    [event] = await gw.store.read(
        lambda tx: tx.all("SELECT detail FROM events WHERE kind = 'attachment_failed'")
    )
    assert "over 100" in json.loads(event["detail"])["reason"]


async def test_a_failed_getfile_stays_pending_and_the_job_retries(tg, bot_api, clock) -> None:
    client, gw = tg
    bot_api.files["AgACretry"] = JPEG
    bot_api.file_fail.append("502")
    await post(client, message(1240, None, photo=photo("AgACretry", len(JPEG))))
    await fetched(gw)
    [att] = await attachments(gw)
    assert att["state"] == "pending"
    assert await count(gw, "jobs") == 1  # committed before the 200
    clock.advance(minutes=2)
    gw.scheduler.wake()
    for _ in range(200):
        if (await attachments(gw))[0]["state"] == "stored":
            break
        await asyncio.sleep(0.02)
    assert (await attachments(gw))[0]["data"] == JPEG


async def test_a_redelivered_update_downloads_the_file_once(tg, bot_api) -> None:
    client, gw = tg
    bot_api.files["AgAConce"] = JPEG
    update = message(1250, None, photo=photo("AgAConce", len(JPEG)), caption="Sale este error")
    await post(client, update)
    await fetched(gw)
    await post(client, update)
    await fetched(gw)
    assert len(bot_api.downloads) == 1
    assert await count(gw, "attachments") == 1 and await count(gw, "messages") == 1


async def test_location_sticker_and_contact_reach_the_agent_as_text(tg, bot_api) -> None:
    client, gw = tg
    await post(client, message(1260, None, location={"latitude": 9.93, "longitude": -84.08}))
    sticker = {"file_id": "CAACAgIAAxkBAAE", "file_unique_id": "AgAD", "type": "regular",
               "width": 512, "height": 512, "is_animated": False, "is_video": False,
               "emoji": "👍"}  # fmt: skip
    await post(client, message(1261, None, sticker=sticker))
    card = {"phone_number": "+50688887777", "first_name": "Luis", "last_name": "Mora"}
    await post(client, message(1262, None, contact=card))
    rows = await gw.store.read(lambda tx: tx.all("SELECT body FROM messages ORDER BY id"))
    assert [r["body"] for r in rows] == [
        "[ubicación 9.93,-84.08]",
        "[sticker 👍]",
        "[contacto Luis Mora +50688887777]",
    ]
    assert await count(gw, "attachments") == 0 and bot_api.downloads == []
