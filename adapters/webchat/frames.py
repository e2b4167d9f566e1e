"""Parse and validate the chat widget's client frames (CONTRACT "WebSocket chat") into values.

Pure: no sockets, no store, no clock. Anything malformed raises `FrameError` naming the code and
the field, which the socket turns into an error frame; it never decides routing or threading.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from routing.phone import normalize_phone
from routing.severity import USERS_AFFECTED, severity_from_impact

MAX_TEXT = 4000
MAX_NAME = 120
_CLIENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Deliberately loose (RFC 5321 allows far more than any regex checks); the email channel
# validates again when it sends.
_EMAIL = re.compile(r"^[^@\s<>\"]{1,64}@[^@\s<>\"]+\.[^@\s<>\"]{2,}$")


class FrameError(Exception):
    """A frame the server cannot use: `code` for the client, `field` naming what is wrong."""

    def __init__(self, code: str, field: str | None = None):
        super().__init__(f"{code}: {field}" if field else code)
        self.code = code
        self.field = field


@dataclass(frozen=True)
class Hello:
    """Open or resume a session."""

    token: str | None
    lang: str | None
    country: str | None


@dataclass(frozen=True)
class Start:
    """The pre-chat form: who, where, how bad, and the first message."""

    client_id: str | None
    name: str
    email: str | None
    phone: str | None
    country: str | None
    text: str
    severity: str | None


@dataclass(frozen=True)
class Begin(Start):
    """Type first: the conversation starts with the message alone; who the customer is (and
    the impact answers) may follow in a `details` frame, or be asked by the agent."""


@dataclass(frozen=True)
class Details:
    """What the customer tells about themselves after the first message."""

    client_id: str | None
    name: str | None
    email: str | None
    phone: str | None
    severity: str | None


@dataclass(frozen=True)
class Message:
    """A customer's follow-up message."""

    client_id: str | None
    text: str


Frame = Hello | Start | Message | Details


def _str(data: dict[str, Any], key: str, *, required: bool = False, limit: int = 500) -> str | None:
    value = data.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise FrameError("missing_field", key)
        return None
    if not isinstance(value, str):
        raise FrameError("invalid_field", key)
    value = value.strip()
    if len(value) > limit:
        raise FrameError("too_long", key)
    return value


def _client_id(data: dict[str, Any]) -> str | None:
    value = data.get("client_id")
    if value is None:
        return None
    if not isinstance(value, str) or not _CLIENT_ID.match(value):
        raise FrameError("invalid_field", "client_id")
    return value


def _severity(data: dict[str, Any]) -> str | None:
    users, can_work = data.get("users"), data.get("can_work")
    if users is None and can_work is None:
        return None
    if users is None:
        raise FrameError("missing_field", "users")
    if can_work is None:
        raise FrameError("missing_field", "can_work")
    if not isinstance(users, str) or users not in USERS_AFFECTED:
        raise FrameError("invalid_field", "users")
    if not isinstance(can_work, bool):
        raise FrameError("invalid_field", "can_work")
    return severity_from_impact(users, can_work)


def parse_frame(raw: str, countries: Collection[str]) -> Frame:
    """One text frame → Hello/Start/Message, or FrameError."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise FrameError("bad_json") from None
    if not isinstance(data, dict):
        raise FrameError("bad_json")
    kind = data.get("type")
    if kind == "hello":
        token = data.get("token")
        lang = data.get("lang")
        country = _str(data, "country", limit=2)
        return Hello(
            token=token if isinstance(token, str) else None,
            lang=lang if lang in ("es", "en") else None,
            country=country.upper() if country and country.upper() in countries else None,
        )
    if kind == "start":
        return _start(data, countries)
    if kind == "begin":
        return _start(data, countries, who_required=False)
    if kind == "details":
        return _details(data, countries)
    if kind == "message":
        text = _str(data, "text", required=True, limit=MAX_TEXT)
        assert text is not None
        return Message(client_id=_client_id(data), text=text)
    if kind is None:
        raise FrameError("missing_field", "type")
    raise FrameError("unknown_type", "type")


def _country(data: dict[str, Any], countries: Collection[str]) -> str | None:
    country = _str(data, "country", limit=2)
    if country is not None:
        country = country.upper()
        if country not in countries:
            raise FrameError("invalid_field", "country")
    return country


def _reach(data: dict[str, Any], country: str | None) -> tuple[str | None, str | None]:
    """The email and phone given (each checked), either may be None."""
    email = _str(data, "email", limit=254)
    if email is not None and not _EMAIL.match(email):
        raise FrameError("invalid_field", "email")
    raw_phone = _str(data, "phone", limit=40)
    phone = None
    if raw_phone is not None:
        phone = normalize_phone(raw_phone, country)
        if phone is None:
            raise FrameError("invalid_field", "phone")
    return (email.lower() if email else None), phone


def _start(data: dict[str, Any], countries: Collection[str], who_required: bool = True) -> Start:
    name = _str(data, "name", required=who_required, limit=MAX_NAME)
    text = _str(data, "text", required=True, limit=MAX_TEXT)
    country = _country(data, countries)
    email, phone = _reach(data, country)
    if who_required and email is None and phone is None:
        raise FrameError("missing_field", "email")
    assert text is not None
    kind = Start if who_required else Begin
    return kind(
        client_id=_client_id(data),
        name=name or "",
        email=email,
        phone=phone,
        country=country,
        text=text,
        severity=_severity(data),
    )


def _details(data: dict[str, Any], countries: Collection[str]) -> Details:
    name = _str(data, "name", limit=MAX_NAME)
    email, phone = _reach(data, _country(data, countries))
    severity = _severity(data)
    if not (name or email or phone or severity):
        raise FrameError("missing_field", "name")
    return Details(
        client_id=_client_id(data), name=name, email=email, phone=phone, severity=severity
    )
