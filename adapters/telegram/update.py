"""Parsing of Telegram `Update` JSON into what the gateway does with it (pure: no I/O, no clock).

python-telegram-bot's `Update.de_json` reads the wire format; this module only classifies the
result: a customer's text message, one of the bot's commands, or an update the gateway stores
and ignores. It never talks to the Bot API or the store.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import telegram
from telegram.constants import MessageEntityType

# Commands the bot answers itself (https://core.telegram.org/bots/features#commands);
# any other "/word" is an ordinary customer message, so nothing a customer writes is dropped.
COMMANDS = {"start": "start", "help": "start", "estado": "estado", "status": "estado"}


class NotAnUpdate(ValueError):
    """The JSON object is not a Telegram Update."""


@dataclass(frozen=True)
class ParsedUpdate:
    """One update, classified. `kind` is "message", "command", "edit" or "other"."""

    update_id: int
    kind: str
    update_type: str  # Telegram's field name: "message", "edited_message", "my_chat_member"...
    chat_id: str | None = None
    message_id: int | None = None
    name: str | None = None
    text: str = ""
    command: str | None = None  # "start" or "estado"
    language: str | None = None  # "en" when the Telegram client runs in English
    sent_at: datetime | None = None  # the message's own date (aware UTC)
    files: tuple[TelegramFile, ...] = ()  # what can be downloaded with getFile
    other_media: bool = False  # an attachment the gateway neither downloads nor describes
    edited_at: datetime | None = None  # an edited_message: when the customer edited it


@dataclass(frozen=True)
class TelegramFile:
    """A file attached to a message, downloadable later with getFile (its `file_id`)."""

    file_id: str
    filename: str
    content_type: str
    size: int  # as Telegram announced it; 0 when it did not say

    @property
    def url(self) -> str:
        """How the attachment row remembers where its bytes are: `tg-file:<file_id>`."""
        return FILE_URL_PREFIX + self.file_id


FILE_URL_PREFIX = "tg-file:"
# Media kinds that carry a file, with the name and type to give one that has none of its own.
_MEDIA: dict[str, tuple[str, str, str]] = {
    "document": ("archivo", "", "application/octet-stream"),
    "voice": ("nota_de_voz", ".ogg", "audio/ogg"),
    "audio": ("audio", ".mp3", "audio/mpeg"),
    "video": ("video", ".mp4", "video/mp4"),
    "video_note": ("video", ".mp4", "video/mp4"),
    "animation": ("animacion", ".mp4", "video/mp4"),
}


def bot_id_of(token: str) -> str:
    """The bot's numeric id: the part of the token before ':' (Bot API token format)."""
    return token.split(":", 1)[0]


def parse_update(data: dict[str, Any], bot: telegram.Bot | None = None) -> ParsedUpdate:
    """Classify an Update JSON object; raises NotAnUpdate when it is not one."""
    update_id = data.get("update_id")
    # bool is an int in Python; Telegram's update_id is a positive 32-bit-ish integer.
    if not isinstance(update_id, int) or isinstance(update_id, bool) or update_id < 0:
        raise NotAnUpdate("update_id must be a non-negative integer")
    try:
        update = telegram.Update.de_json(data, bot)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError, OSError) as exc:
        # OverflowError/OSError: a `date` no clock can hold (found by fuzzing, issue #16).
        raise NotAnUpdate(f"not a Telegram Update: {type(exc).__name__}") from None
    update_type = next((t for t in telegram.Update.ALL_TYPES if getattr(update, t, None)), None)
    if update_type is None:
        # A type newer than this library (or none at all): stored, answered 200, ignored.
        extra = sorted(k for k in data if k != "update_id")
        return ParsedUpdate(update_id, "other", extra[0] if extra else "empty")
    edited = update.edited_message
    if update_type == "edited_message" and edited is not None:
        try:
            parsed = _message(update_id, edited)
        except (TypeError, ValueError, AttributeError) as exc:  # {"chat": null} (fuzzing)
            raise NotAnUpdate(f"not a Telegram message: {type(exc).__name__}") from None
        kind = "edit" if parsed.kind != "other" else "other"
        return replace(parsed, kind=kind, update_type=update_type, edited_at=edited.edit_date)
    message = update.message
    if update_type != "message" or message is None:
        chat = update.effective_chat
        return ParsedUpdate(update_id, "other", update_type, chat_id=_chat(chat))
    try:
        return _message(update_id, message)
    except (TypeError, ValueError, AttributeError) as exc:
        # de_json does not check JSON types ({"text": true} gets this far): not a real update.
        raise NotAnUpdate(f"not a Telegram message: {type(exc).__name__}") from None


def _chat(chat: telegram.Chat | None) -> str | None:
    return str(chat.id) if chat is not None else None


def _message(update_id: int, message: telegram.Message) -> ParsedUpdate:
    user = message.from_user
    name = user.full_name.strip() if user is not None else None
    if not name and message.sender_chat is not None:
        name = message.sender_chat.title
    code = (user.language_code or "").lower() if user is not None else ""
    text = (message.text or message.caption or "").strip()
    files = _files(message)
    described = files or any(
        getattr(message, kind) is not None for kind in ("location", "contact", "sticker")
    )
    other_media = message.effective_attachment is not None and not described
    if not text:
        text = _placeholder(message, files)
    base = {
        "chat_id": str(message.chat.id),
        "message_id": message.message_id,
        "name": name or None,
        "text": text,
        "language": "en" if code.startswith("en") else None,
        "sent_at": message.date,
        "files": files,
        "other_media": other_media,
    }
    if not text:
        return ParsedUpdate(update_id, "other", "message", **base)
    command = _command(message)
    if command is not None:
        return ParsedUpdate(update_id, "command", "message", command=command, **base)
    return ParsedUpdate(update_id, "message", "message", **base)


def _files(message: telegram.Message) -> tuple[TelegramFile, ...]:
    """The message's downloadable file: the largest size of a photo, or its one media file."""
    if message.photo:
        best = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        name = f"foto_{best.file_unique_id}.jpg"
        return (TelegramFile(best.file_id, name, "image/jpeg", best.file_size or 0),)
    for kind, (stem, suffix, default_type) in _MEDIA.items():
        media = getattr(message, kind, None)
        if media is None:
            continue
        content_type = getattr(media, "mime_type", None) or default_type
        name = getattr(media, "file_name", None) or f"{stem}_{media.file_unique_id}{suffix}"
        return (TelegramFile(media.file_id, name[:200], content_type[:100], media.file_size or 0),)
    return ()


def _placeholder(message: telegram.Message, files: tuple[TelegramFile, ...]) -> str:
    """What the agent reads for a message without text: its location, contact or files."""
    if message.location is not None:
        place = message.venue.title if message.venue is not None else ""
        where = f"{message.location.latitude},{message.location.longitude}"
        return f"[ubicación {where}] {place}".strip()
    if message.sticker is not None:  # said with a picture: kept as its emoji, not downloaded
        return f"[sticker {message.sticker.emoji or ''}]".replace(" ]", "]")
    if message.contact is not None:
        card = message.contact
        name = " ".join(filter(None, (card.first_name, card.last_name)))
        return f"[contacto {name} {card.phone_number}]".strip()
    if files:
        return f"[{len(files)} archivo(s) adjunto(s)]"
    return ""


def _command(message: telegram.Message) -> str | None:
    """The bot command the text starts with ("/start@CallMyWayBot x" → "start"), if known."""
    text = message.text or ""
    for entity in message.entities:
        if entity.type == MessageEntityType.BOT_COMMAND and entity.offset == 0:
            word = text[1 : entity.length].split("@", 1)[0].lower()
            return COMMANDS.get(word)
    return None
