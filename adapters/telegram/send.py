"""Outbox sender of the Telegram channel: one outbox row → `sendMessage` through PTB's `Bot`.

Maps the Bot API's answers onto the outbox's retry policy (checklist G8): 429 waits the
`retry_after` Telegram names, 5xx and timeouts are retried with backoff, 400 and 403 fail at once
with Telegram's reason. It never touches the store: the outbox records the outcome.
"""

from __future__ import annotations

from datetime import timedelta

import telegram
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from gateway.core.model import OutboundItem, SendError

# sendMessage accepts 1-4096 characters of text (https://core.telegram.org/bots/api#sendmessage).
MAX_TEXT = 4096


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """Chunks of at most `limit` characters, cut at a line break when one is near."""
    chunks = []
    while len(text) > limit:
        cut = text.rfind("\n", limit // 2, limit)
        cut = cut if cut > 0 else limit
        chunks.append(text[:cut])
        text = text[cut:].lstrip("\n")
    if text:
        chunks.append(text)
    return chunks


def _seconds(value: int | float | timedelta) -> float:
    # PTB 22.2+ may return an int or a timedelta depending on PTB_TIMEDELTA.
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def send_text(bot: telegram.Bot, item: OutboundItem) -> str:
    """Deliver the row's text to its chat; returns Telegram's message id(s), or raises SendError."""
    text = str(item.payload.get("text") or "").strip()
    if not text:
        raise SendError("the outbox row has no text to send", permanent=True)
    chat_id: str | int = item.recipient
    sent: list[str] = []
    # A long text leaves as several messages; a retry after a partial failure may repeat the
    # first ones (at-least-once, like every outbox delivery).
    for chunk in split_text(text):
        try:
            message = await bot.send_message(chat_id=chat_id, text=chunk)
        except ChatMigrated as exc:
            # A group became a supergroup: Telegram names the new chat id; send there once.
            chat_id = exc.new_chat_id
            message = await _send_once(bot, chat_id, chunk)
        except TelegramError as exc:
            raise send_error(exc) from None
        sent.append(str(message.message_id))
    return ",".join(sent)


async def _send_once(bot: telegram.Bot, chat_id: str | int, text: str) -> telegram.Message:
    try:
        return await bot.send_message(chat_id=chat_id, text=text)
    except TelegramError as exc:
        raise send_error(exc) from None


def send_error(exc: TelegramError) -> SendError:
    """The outbox's view of a Bot API failure: permanent or retried, with a readable reason."""
    if isinstance(exc, RetryAfter):
        wait = _seconds(exc.retry_after)
        return SendError(f"Telegram flood control (429): retry after {wait:g} s", retry_after=wait)
    if isinstance(exc, Forbidden):
        # 403 "Forbidden: bot was blocked by the user" / "user is deactivated": final.
        return SendError(f"Telegram refused the message (403): {exc.message}", permanent=True)
    if isinstance(exc, BadRequest):
        # 400 "Bad Request: chat not found" and the like: the request itself is wrong.
        return SendError(f"Telegram rejected the message (400): {exc.message}", permanent=True)
    if isinstance(exc, TimedOut):
        # Telegram may have delivered it anyway: the retry can duplicate it (documented, D8).
        return SendError("the Telegram Bot API did not answer in time")
    if isinstance(exc, InvalidToken):
        # The operator fixes TELEGRAM_BOT_TOKEN; the message waits for it. Never echo the token.
        return SendError("the Telegram Bot API rejected the bot token (401/404)")
    if isinstance(exc, NetworkError):
        return SendError(f"the Telegram Bot API failed: {exc.message}")
    return SendError(f"Telegram error: {exc.message}")
