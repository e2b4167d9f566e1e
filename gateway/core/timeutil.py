"""UTC timestamps as stored: one fixed ISO 8601 shape so text order equals time order."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """The real clock (aware UTC); everything else receives a `Clock`."""
    return datetime.now(UTC)


def iso(moment: datetime | None) -> str | None:
    """Aware datetime -> '2026-11-29T10:05:41.123456+00:00' (None stays None)."""
    if moment is None:
        return None
    return _iso(moment)


# An intake writes the same instant into half a dozen columns; formatting it once saves a few
# microseconds each time. Equal instants in any zone format alike (UTC), so they share a slot.
@lru_cache(maxsize=4096)
def _iso(moment: datetime) -> str:
    if moment.tzinfo is not UTC:
        if moment.tzinfo is None:
            raise ValueError("naive datetime")
        moment = moment.astimezone(UTC)
    return moment.isoformat(timespec="microseconds")


def parse_iso(text: str | None) -> datetime | None:
    """Inverse of `iso`."""
    if not text:
        return None
    return datetime.fromisoformat(text).astimezone(UTC)
