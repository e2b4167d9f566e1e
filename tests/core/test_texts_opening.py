"""The next-opening phrase of an after-hours acknowledgement, cached per line and instant."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from config.loader import load_settings
from gateway.core.texts import Texts, opening_text

LINES = load_settings({}).routing.lines


@pytest.mark.parametrize(
    ("code", "lang", "opens_at", "expected"),
    [
        (
            "CR",
            "es",
            "2026-11-30T12:00:00+00:00",
            "el lunes 30/11/2026 a las 06:00, hora de Costa Rica",
        ),
        (
            "MX",
            "es",
            "2026-12-01T12:00:00+00:00",
            "el martes 01/12/2026 a las 06:00, hora de México",
        ),
        ("US", "en", "2026-03-09T10:00:00+00:00", "on Monday 2026-03-09 at 06:00, Miami time"),
        ("CA", "en", "2026-11-02T11:00:00+00:00", "on Monday 2026-11-02 at 06:00, Canadá time"),
    ],
)
def test_opening_text(code: str, lang: str, opens_at: str, expected: str) -> None:
    line = LINES[code]
    at = datetime.fromisoformat(opens_at)
    assert Texts().opening(line, at, lang) == expected
    assert Texts().opening(line, at, lang) == expected  # from the cache
    # The same instant written in another zone is the same opening.
    elsewhere = at.astimezone(ZoneInfo("Asia/Tokyo"))
    assert opening_text(line, elsewhere, lang) == expected


def test_each_line_and_instant_has_its_own_text() -> None:
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    line = LINES["CR"]
    renamed = dataclasses.replace(line, name="Otra")  # equal hash, different line
    assert opening_text(line, at, "es").endswith("hora de Costa Rica")
    assert opening_text(renamed, at, "es").endswith("hora de Otra")
    assert opening_text(line, at + timedelta(days=1), "es").startswith("el martes 01/12/2026")


def test_a_naive_opening_is_still_refused() -> None:
    with pytest.raises(ValueError):
        opening_text(LINES["CR"], datetime(2026, 11, 30, 12, 0), "es")
