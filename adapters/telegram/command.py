"""Telegram updates that do not become incident messages: stored raw, and /start, /estado answered.

Every function here runs inside one store transaction (the database thread): it records the raw
update under UNIQUE(bot_id, update_id) — a redelivery is a no-op — and, for a command, queues the
answer as an outbox "notice" row in the same commit. It never creates or changes incidents.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.telegram.update import ParsedUpdate
from config.settings import Settings
from gateway.core.texts import Texts
from gateway.core.timeutil import iso
from gateway.store.tx import Row, Tx
from routing.schedule import is_open, next_opening

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        -- Updates that are not customer messages (those live in the core's receipts with their
        -- raw JSON). UNIQUE makes Telegram's redeliveries of one update_id a no-op (G3).
        CREATE TABLE telegram_updates (
            id INTEGER PRIMARY KEY,
            bot_id TEXT NOT NULL,
            update_id INTEGER NOT NULL,
            update_type TEXT NOT NULL,
            chat_id TEXT,
            state TEXT NOT NULL CHECK (state IN ('answered', 'ignored')),
            received_at TEXT NOT NULL,
            raw BLOB NOT NULL,
            UNIQUE (bot_id, update_id)
        );
        """,
    )
]


@dataclass(frozen=True)
class CommandContext:
    """What answering a command needs besides the transaction."""

    settings: Settings
    texts: Texts
    bot_id: str


def _seen(tx: Tx, bot_id: str, update_id: int) -> bool:
    row = tx.one(
        "SELECT 1 FROM telegram_updates WHERE bot_id = ? AND update_id = ?", (bot_id, update_id)
    )
    return row is not None


def _record(
    tx: Tx, bot_id: str, parsed: ParsedUpdate, raw: bytes, now: datetime, state: str
) -> None:
    tx.execute(
        "INSERT INTO telegram_updates (bot_id, update_id, update_type, chat_id, state,"
        " received_at, raw) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (bot_id, parsed.update_id, parsed.update_type, parsed.chat_id, state, iso(now), raw),
    )


def store_ignored(tx: Tx, bot_id: str, parsed: ParsedUpdate, raw: bytes, now: datetime) -> bool:
    """Keep an update the gateway does not act on; False when it was already stored."""
    if _seen(tx, bot_id, parsed.update_id):
        return False
    _record(tx, bot_id, parsed, raw, now, "ignored")
    return True


def open_incidents(tx: Tx, chat_id: str) -> list[Row]:
    """The chat's open incidents, oldest first."""
    return tx.incidents_of_contact("telegram_chat_id", chat_id, open_only=True)


def _latest(tx: Tx, chat_id: str) -> Row | None:
    incidents = tx.incidents_of_contact("telegram_chat_id", chat_id)
    return incidents[-1] if incidents else None


def answer_command(
    tx: Tx, ctx: CommandContext, parsed: ParsedUpdate, raw: bytes, now: datetime
) -> bool:
    """Store the command and queue its answer; False when this update_id was answered before."""
    assert parsed.chat_id is not None and parsed.command is not None
    if _seen(tx, ctx.bot_id, parsed.update_id):
        return False
    _record(tx, ctx.bot_id, parsed, raw, now, "answered")
    routing = ctx.settings.routing
    latest = _latest(tx, parsed.chat_id)
    # The contact's line once an incident told us which it is; the default line before that.
    line = routing.lines.get(latest["country"], routing.default_line) if latest else None
    line = line or routing.default_line
    lang = parsed.language or (latest["language"] if latest else None) or line.language
    context: dict[str, Any] = {"name": parsed.name, "line": line}
    if parsed.command == "start":
        open_now = is_open(line, now)
        context["open_now"] = open_now
        if not open_now:
            context["opens_at"] = next_opening(line, now)
        text = ctx.texts.render("telegram_start", lang, **context)
    else:
        context["incidents"] = open_incidents(tx, parsed.chat_id)
        text = ctx.texts.render("telegram_status", lang, **context)
    tx.insert_outbox(
        channel="telegram",
        kind="notice",
        recipient=parsed.chat_id,
        at=now,
        payload={"text": text, "language": lang, "command": parsed.command},
    )
    return True
