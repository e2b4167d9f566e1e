"""Outbound through the fake Bot API's failures (checklist G8): 429, 502, timeout, 400, 403.

429 pushes the next attempt by Telegram's retry_after; 502 and timeouts retry with backoff;
400 "chat not found" and 403 "bot was blocked" fail at once, with the reason shown to agents.
Every attempt is recorded in outbox_attempts.
"""

from __future__ import annotations

from datetime import timedelta

from gateway.core.replies import queue_reply
from gateway.core.timeutil import parse_iso
from tests.adapters.telegram.conftest import message, post, settle


async def _outbox(gw, kind: str = "ack") -> dict:
    return await gw.store.read(
        lambda tx: tx.one("SELECT * FROM outbox WHERE kind = ? ORDER BY id DESC", (kind,))
    )


async def _attempts(gw, outbox_id: int) -> list[tuple[int, str | None]]:
    rows = await gw.store.read(
        lambda tx: tx.all(
            "SELECT ok, error FROM outbox_attempts WHERE outbox_id = ? ORDER BY id", (outbox_id,)
        )
    )
    return [(r["ok"], r["error"]) for r in rows]


async def test_429_waits_retry_after_then_delivers(tg, bot_api, clock) -> None:
    client, gw = tg
    bot_api.fail = ["429"]
    await post(client, message(3001, "No tengo internet"))
    await settle(gw)
    row = await _outbox(gw)
    assert row["status"] == "pending" and row["attempts"] == 1
    assert "retry after 37" in row["last_error"]
    # The outbox's own backoff is shorter; Telegram's 37 s wins.
    assert parse_iso(row["next_attempt_at"]) >= clock() + timedelta(seconds=37)
    clock.advance(seconds=30)
    await settle(gw)
    assert bot_api.sent() == []  # not before retry_after
    clock.advance(seconds=60)
    await settle(gw)
    assert len(bot_api.sent()) == 1
    row = await _outbox(gw)
    assert row["status"] == "sent"
    assert [ok for ok, _ in await _attempts(gw, row["id"])] == [0, 1]


async def test_502_and_timeout_are_retried_with_backoff(tg, bot_api, clock) -> None:
    client, gw = tg
    bot_api.fail = ["502", "slow"]
    await post(client, message(3002, "No tengo tono"))
    await settle(gw)
    row = await _outbox(gw)
    assert row["status"] == "pending" and "Bad Gateway" in row["last_error"]
    clock.advance(hours=1)
    await settle(gw)
    row = await _outbox(gw)
    assert row["status"] == "pending" and "did not answer in time" in row["last_error"]
    clock.advance(hours=1)
    await settle(gw)
    row = await _outbox(gw)
    assert row["status"] == "sent"
    attempts = await _attempts(gw, row["id"])
    assert [ok for ok, _ in attempts] == [0, 0, 1]


async def test_403_blocked_marks_the_reply_failed_with_the_reason(tg, bot_api, clock) -> None:
    client, gw = tg
    await post(client, message(3003, "Necesito ayuda con mi central"))
    await settle(gw)
    row = await gw.store.read(lambda tx: tx.one("SELECT * FROM incidents"))
    bot_api.fail = ["403"]
    message_id = await gw.store.transact(
        lambda tx: queue_reply(
            tx,
            row,
            text="¿Sigue con el problema?",
            author="ana",
            now=clock(),
            guards=gw.reply_guards,
        )
    )
    await settle(gw)
    out = await _outbox(gw, "reply")
    assert out["status"] == "dead" and out["attempts"] == 1
    assert "bot was blocked by the user" in out["last_error"]
    msg = await gw.store.read(
        lambda tx: tx.one("SELECT * FROM messages WHERE id = ?", (message_id,))
    )
    assert msg["delivery_status"] == "failed"
    assert "Forbidden: bot was blocked by the user" in msg["delivery_error"]
    events = await gw.store.read(lambda tx: tx.events(row["id"]))
    failed = [e for e in events if e["kind"] == "delivery_failed"]
    assert len(failed) == 1 and "blocked" in failed[0]["detail"]
    clock.advance(hours=2)
    await settle(gw)
    assert len([m for m, _ in bot_api.calls if m == "sendMessage"]) == 2


async def test_400_chat_not_found_fails_without_retry(tg, bot_api, clock) -> None:
    client, gw = tg
    bot_api.fail = ["400"]
    await post(client, message(3004, "/estado"))
    await settle(gw)
    out = await _outbox(gw, "notice")
    assert out["status"] == "dead"
    assert out["last_error"] == "Telegram rejected the message (400): Chat not found"
    clock.advance(hours=2)
    await settle(gw)
    assert len([m for m, _ in bot_api.calls if m == "sendMessage"]) == 1
