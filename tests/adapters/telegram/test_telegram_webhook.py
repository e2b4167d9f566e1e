"""POST /webhooks/telegram through real HTTP: secret, malformed bodies, dedupe, stored updates, 503.

Checklist rows G1 (forged secret), G2 (peer allow-list), G3 (dedupe), G5 (store down → 503 and
processed once after recovery), G6 (malformed and unknown updates).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from adapters.telegram import bot as telegram_bot
from gateway.app import create_app
from gateway.core.services import GW
from tests.adapters.telegram.conftest import (
    BOT_ID,
    CHAT,
    HEADERS,
    SECRET,
    count,
    message,
    post,
    settle,
)
from tests.faults import BrokenDisk, Gated, make_store_with


async def _stored(gw: Any) -> dict[str, int]:
    return {t: await count(gw, t) for t in ("receipts", "telegram_updates", "incidents", "outbox")}


async def test_missing_or_wrong_secret_is_403_and_stores_nothing(tg, caplog) -> None:
    client, gw = tg
    update = message(9001, "No tengo tono")
    for headers in (
        {},
        {"X-Telegram-Bot-Api-Secret-Token": "forged-9f2c"},
        {"X-Telegram-Bot-Api-Secret-Token": SECRET + "x"},
        {"X-Telegram-Bot-Api-Secret-Token": "ñandú"},
    ):
        resp = await post(client, update, headers=headers)
        assert resp.status == 403
        body = await resp.json()
        assert "X-Telegram-Bot-Api-Secret-Token" in body["error"]["message"]
    assert await _stored(gw) == {"receipts": 0, "telegram_updates": 0, "incidents": 0, "outbox": 0}
    assert SECRET not in caplog.text and "forged-9f2c" not in caplog.text
    assert "missing or wrong secret" in caplog.text


async def test_unconfigured_telegram_answers_503(start_app, settings) -> None:
    client, _ = await start_app(settings, adapters={"telegram": telegram_bot.setup})
    resp = await post(client, message(1, "hola"))
    assert resp.status == 503
    assert "not configured" in (await resp.json())["error"]["message"]


async def test_malformed_bodies_are_400_naming_the_problem(tg) -> None:
    client, gw = tg
    resp = await post(client, b"{not json", headers={**HEADERS, "Content-Type": "application/json"})
    assert resp.status == 400
    assert "not valid JSON" in (await resp.json())["error"]["message"]
    resp = await post(
        client, b'{"update_id": 1}', headers={**HEADERS, "Content-Type": "text/plain"}
    )
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == "Content-Type"
    for bad in ([1, 2], {"message": {"text": "hola"}}, {"update_id": "12"}, {"update_id": True}):
        resp = await post(client, bad)
        assert resp.status == 400, bad
    # Right update_id, but a message that is not a Message object.
    resp = await post(client, {"update_id": 77, "message": "hola"})
    assert resp.status == 400
    assert (await resp.json())["error"]["field"] == "update_id"
    assert await _stored(gw) == {"receipts": 0, "telegram_updates": 0, "incidents": 0, "outbox": 0}


async def test_body_over_the_limit_is_413(start_app, make_settings, bot_api) -> None:
    settings = make_settings(
        {"gateway": {"max_body_bytes": 4096}},
        TELEGRAM_BOT_TOKEN="1:x",
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        TELEGRAM_API_BASE=bot_api.base,
    )
    client, gw = await start_app(settings, adapters={"telegram": telegram_bot.setup})
    resp = await post(client, message(5, "x" * 10000))
    assert resp.status == 413
    assert await count(gw, "receipts") == 0


async def test_peer_outside_allowed_networks_is_403(start_app, make_settings, bot_api) -> None:
    settings = make_settings(
        {"telegram": {"allowed_networks": ["149.154.160.0/20", "91.108.4.0/22"]}},
        TELEGRAM_BOT_TOKEN="1:x",
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        TELEGRAM_API_BASE=bot_api.base,
    )
    client, gw = await start_app(settings, adapters={"telegram": telegram_bot.setup})
    resp = await post(client, message(5, "hola"))  # from 127.0.0.1
    assert resp.status == 403
    assert await count(gw, "receipts") == 0


async def test_allowed_networks_behind_a_trusted_proxy_check_the_forwarded_peer(
    start_app, make_settings, bot_api
) -> None:
    """Behind the TLS proxy every update comes from the proxy: the allow-list must look at the
    address the proxy forwards, and only a listed proxy is believed."""
    networks = {"allowed_networks": ["149.154.160.0/20", "91.108.4.0/22"]}
    env = {
        "TELEGRAM_BOT_TOKEN": "1:x",
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_API_BASE": bot_api.base,
    }
    settings = make_settings(
        {"telegram": networks, "gateway": {"trusted_proxies": ["127.0.0.1"]}}, **env
    )
    client, gw = await start_app(settings, adapters={"telegram": telegram_bot.setup})
    from_telegram = {**HEADERS, "X-Forwarded-For": "149.154.167.220"}
    assert (await post(client, message(31, "hola"), headers=from_telegram)).status == 200
    elsewhere = {**HEADERS, "X-Forwarded-For": "203.0.113.9"}
    assert (await post(client, message(32, "hola"), headers=elsewhere)).status == 403
    # A forged left-most hop does not help: the proxy appended the real peer after it.
    forged = {**HEADERS, "X-Forwarded-For": "149.154.167.220, 203.0.113.9"}
    assert (await post(client, message(33, "hola"), headers=forged)).status == 403
    assert await count(gw, "receipts") == 1

    # Without the proxy listed as trusted, the header is anybody's claim: not believed.
    untrusted = make_settings({"telegram": networks}, **env)
    client, gw = await start_app(untrusted, adapters={"telegram": telegram_bot.setup})
    assert (await post(client, message(34, "hola"), headers=from_telegram)).status == 403
    assert await count(gw, "receipts") == 1  # the same database: only update 31


async def test_same_update_twice_is_one_message_and_one_ack(tg, bot_api) -> None:
    client, gw = tg
    update = message(9100, "Buenas, no tengo tono en la línea de la oficina desde ayer")
    first = await post(client, update)
    again = await post(client, update)
    assert first.status == again.status == 200
    await settle(gw)
    assert await count(gw, "incidents") == 1
    assert await count(gw, "messages") == 1
    assert len(bot_api.sent()) == 1
    receipt = await gw.store.read(lambda tx: tx.receipt("telegram", f"{BOT_ID}:{CHAT}:9100"))
    assert json.loads(receipt["raw"])["message"]["text"].startswith("Buenas")


async def test_unknown_and_unanswered_updates_are_stored_and_answered_200(tg, bot_api) -> None:
    client, gw = tg
    chat_user = {"id": CHAT, "is_bot": False, "first_name": "Ana"}
    me = {"id": int(BOT_ID), "is_bot": True, "first_name": "CallMyWay Soporte"}
    updates = [
        # (edited_message updates reach their incident: test_telegram_dedupe_edits.py)
        {
            "update_id": 501,
            "channel_post": {
                "message_id": 3,
                "date": 1764514800,
                "chat": {"id": -1001234567890, "type": "channel", "title": "Novedades CallMyWay"},
                "text": "Mantenimiento programado",
            },
        },
        {
            "update_id": 502,
            "my_chat_member": {
                "chat": {"id": CHAT, "first_name": "Ana", "type": "private"},
                "from": chat_user,
                "date": 1764514800,
                "old_chat_member": {"user": me, "status": "member"},
                "new_chat_member": {"user": me, "status": "kicked", "until_date": 0},
            },
        },
        {"update_id": 503, "some_future_update": {"x": 1}},
        # A dice: a message with neither text, caption nor file.
        message(504, None, dice={"emoji": "🎲", "value": 4}),
    ]
    for update in updates:
        resp = await post(client, update)
        assert resp.status == 200, update
        assert (await post(client, update)).status == 200  # redelivery: still one row
    rows = await gw.store.read(
        lambda tx: tx.all("SELECT * FROM telegram_updates ORDER BY update_id")
    )
    assert [(r["update_id"], r["update_type"], r["state"]) for r in rows] == [
        (501, "channel_post", "ignored"),
        (502, "my_chat_member", "ignored"),
        (503, "some_future_update", "ignored"),
        (504, "message", "ignored"),
    ]
    assert json.loads(rows[2]["raw"]) == updates[2]
    assert rows[1]["chat_id"] == str(CHAT)
    await settle(gw)
    assert await count(gw, "incidents") == 0
    assert bot_api.sent() == []


async def test_store_that_cannot_commit_answers_503_then_processes_once(
    aiohttp_client, tg_settings, clock, bot_api
) -> None:
    store = make_store_with(tg_settings, BrokenDisk)
    app = create_app(
        tg_settings, clock=clock, store=store, adapters={"telegram": telegram_bot.setup}
    )
    client = await aiohttp_client(app)
    gw = app[GW]
    store.broken = True
    for update in (message(700, "Se cayó la central telefónica"), message(701, "/start")):
        resp = await post(client, update)
        assert resp.status == 503  # Telegram retries
        assert resp.headers["Retry-After"]
    store.broken = False
    assert await _stored(gw) == {"receipts": 0, "telegram_updates": 0, "incidents": 0, "outbox": 0}
    for update in (message(700, "Se cayó la central telefónica"), message(701, "/start")):
        assert (await post(client, update)).status == 200
        assert (await post(client, update)).status == 200
    await settle(gw)
    assert await count(gw, "incidents") == 1
    assert await count(gw, "telegram_updates") == 1
    assert len(bot_api.sent()) == 2  # the ack and the greeting, once each


async def test_no_200_before_the_update_is_committed(aiohttp_client, tg_settings, clock) -> None:
    store = make_store_with(tg_settings, Gated, gate=asyncio.Event(), waiting=asyncio.Event())
    app = create_app(
        tg_settings, clock=clock, store=store, adapters={"telegram": telegram_bot.setup}
    )
    client = await aiohttp_client(app)
    gw = app[GW]
    request = asyncio.create_task(post(client, message(800, "Sin señal en la oficina central")))
    await asyncio.wait_for(store.waiting.wait(), timeout=5)
    done, _ = await asyncio.wait({request}, timeout=0.3)
    assert not done  # Telegram has no answer while the commit is pending
    assert await count(gw, "receipts") == 0
    store.gate.set()
    resp = await request
    assert resp.status == 200
    assert await count(gw, "receipts") == 1


async def test_a_processing_bug_keeps_the_update_and_answers_200(tg, bot_api, monkeypatch) -> None:
    """The raw update is committed (shunted) and Telegram is not made to retry it forever,
    holding back the chat's later updates; once fixed, `replay` registers it once."""
    from gateway.core import intake as intake_module

    client, gw = tg
    real_assign = intake_module.assign

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise KeyError("routing table bug")

    monkeypatch.setattr(intake_module, "assign", broken)
    resp = await post(client, message(9300, "No tengo tono"))
    assert resp.status == 200
    row = await gw.store.read(lambda tx: tx.one("SELECT state, error FROM receipts"))
    assert row["state"] == "shunted" and "routing table bug" in row["error"]
    assert await count(gw, "incidents") == 0
    monkeypatch.setattr(intake_module, "assign", real_assign)
    assert await gw.intake.replay_shunted() == (1, 0)
    assert await count(gw, "incidents") == 1
    await settle(gw)
    assert len(bot_api.sent()) == 1  # the customer gets the tracking number after the fix
