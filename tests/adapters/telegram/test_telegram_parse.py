"""Pure parts of the Telegram adapter: Update classification, text splitting, error mapping."""

from __future__ import annotations

from datetime import timedelta

import pytest
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut

from adapters.telegram.send import send_error, split_text
from adapters.telegram.update import NotAnUpdate, bot_id_of, parse_update
from tests.adapters.telegram.conftest import CHAT, message, user


@pytest.mark.parametrize(
    ("text", "kind", "command"),
    [
        ("/start", "command", "start"),
        ("/start@CallMyWaySoporteBot", "command", "start"),
        ("/help", "command", "start"),
        ("/estado", "command", "estado"),
        ("/status", "command", "estado"),
        ("/ESTADO extra words", "command", "estado"),
        ("/reclamo no tengo tono", "message", None),  # unknown command: the customer's words
        ("No tengo tono", "message", None),
    ],
)
def test_messages_and_commands(text: str, kind: str, command: str | None) -> None:
    parsed = parse_update(message(42, text))
    assert (parsed.kind, parsed.command) == (kind, command)
    assert parsed.chat_id == str(CHAT) and parsed.name == "Ana Rojas"
    assert parsed.sent_at is not None and parsed.sent_at.tzinfo is not None


@pytest.mark.parametrize(
    ("code", "lang"), [("en", "en"), ("en-GB", "en"), ("es", None), ("pt-br", None)]
)
def test_language_from_the_client(code: str, lang: str | None) -> None:
    parsed = parse_update(message(1, "hola", sender=user(lang=code)))
    assert parsed.language == lang


def test_a_user_without_last_name_and_a_slash_inside_text() -> None:
    parsed = parse_update(message(1, "mi IP es 10.0.0.1/24", sender=user("Luis", None)))
    assert parsed.kind == "message" and parsed.name == "Luis"


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"update_id": -1},
        {"update_id": 1.5},
        {"update_id": False},
        {"update_id": 3, "message": {"message_id": 1}},
    ],
)
def test_not_an_update(data: dict) -> None:
    with pytest.raises(NotAnUpdate):
        parse_update(data)


def test_bot_id_is_the_token_prefix() -> None:
    assert bot_id_of("7212345678:AAHdqTcv") == "7212345678"


def test_split_text_keeps_lines_whole_and_respects_the_limit() -> None:
    text = "\n".join(f"línea {n} " + "x" * 50 for n in range(200))
    chunks = split_text(text, limit=4096)
    assert all(len(c) <= 4096 for c in chunks) and len(chunks) == 3
    assert "\n".join(chunks) == text
    assert split_text("x" * 5000) == ["x" * 4096, "x" * 904]


@pytest.mark.parametrize(
    ("exc", "permanent", "retry_after"),
    [
        (RetryAfter(12), False, 12.0),
        (RetryAfter(timedelta(seconds=3)), False, 3.0),
        (Forbidden("Forbidden: bot was blocked by the user"), True, None),
        (BadRequest("Bad Request: chat not found"), True, None),
        (TimedOut(), False, None),
        (NetworkError("Bad Gateway"), False, None),
    ],
)
def test_bot_api_errors_map_to_the_outbox_policy(exc, permanent, retry_after) -> None:
    error = send_error(exc)
    assert error.permanent is permanent and error.retry_after == retry_after
    assert error.reason
