"""The pure frame parser: what each client frame becomes, and what it refuses (table tests)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from adapters.webchat.frames import FrameError, Hello, Message, Start, parse_frame

LINES = ("CR", "MX", "US")
BASE = {"type": "start", "name": " Ana ", "email": "Ana@Example.com", "text": " hola "}


@pytest.mark.parametrize(
    ("users", "can_work", "severity"),
    [
        ("company", False, "S1"),
        ("company", True, "S2"),
        ("several", False, "S2"),
        ("several", True, "S3"),
        ("one", False, "S3"),
        ("one", True, "S4"),
    ],
)
def test_impact_answers_give_the_seed_severity(users: str, can_work: bool, severity: str) -> None:
    frame = parse_frame(json.dumps({**BASE, "users": users, "can_work": can_work}), LINES)
    assert isinstance(frame, Start) and frame.severity == severity


def test_start_is_normalized() -> None:
    frame = parse_frame(json.dumps({**BASE, "phone": "8888 0001", "country": "cr"}), LINES)
    assert frame == Start(
        client_id=None,
        name="Ana",
        email="ana@example.com",
        phone="+50688880001",  # a national number read in the chosen country
        country="CR",
        text="hola",
        severity=None,  # not asked: the line's default applies
    )


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"type": "hello"}, Hello(token=None, lang=None, country=None)),
        ({"type": "hello", "token": "t", "lang": "en", "country": "mx"}, Hello("t", "en", "MX")),
        ({"type": "hello", "token": 5, "lang": "fr", "country": "ZZ"}, Hello(None, None, None)),
        ({"type": "message", "text": "a", "client_id": "k-1_"}, Message("k-1_", "a")),
    ],
)
def test_hello_and_message(data: dict[str, Any], expected: object) -> None:
    assert parse_frame(json.dumps(data), LINES) == expected


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        ("{", "bad_json", None),
        ('"hello"', "bad_json", None),
        ("[" * 100000 + "]" * 100000, "bad_json", None),
        (json.dumps({**BASE, "name": "x" * 121}), "too_long", "name"),
        (json.dumps({**BASE, "text": "   "}), "missing_field", "text"),
        (json.dumps({**BASE, "email": None}), "missing_field", "email"),
        (json.dumps({**BASE, "can_work": "no", "users": "one"}), "invalid_field", "can_work"),
        (json.dumps({"type": "message", "text": "x" * 4001}), "too_long", "text"),
        (
            json.dumps({"type": "message", "text": "a", "client_id": "x" * 65}),
            "invalid_field",
            "client_id",
        ),
    ],
)
def test_refusals_name_the_code_and_field(raw: str, code: str, field: str | None) -> None:
    with pytest.raises(FrameError) as err:
        parse_frame(raw, LINES)
    assert (err.value.code, err.value.field) == (code, field)
