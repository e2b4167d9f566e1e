"""The report's pure helpers: month arithmetic, bad input named by its field, what is at risk
now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.core.errors import Rejected
from gateway.core.report import at_risk_now, check_zone, parse_month, shift_month, today_month

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def test_months() -> None:
    assert parse_month("2026-11") == (2026, 11)
    assert shift_month("2026-01", -1) == "2025-12"
    assert shift_month("2026-12", 1) == "2027-01"
    # 05:00 UTC on Dec 1st is still November 30th in Costa Rica.
    assert today_month(datetime(2026, 12, 1, 5, tzinfo=UTC), "America/Costa_Rica") == "2026-11"
    for bad in ("2026-13", "26-11", "", "2026-1"):
        with pytest.raises(Rejected) as info:
            parse_month(bad)
        assert info.value.field == "month"
    with pytest.raises(Rejected) as info:
        check_zone("Mars/Base")
    assert info.value.field == "tz"
    assert check_zone("") is None and check_zone("UTC") == "UTC"


def _row(tracking: str, status: str, attention: timedelta, solution: timedelta, attended: bool):
    return {
        "tracking": tracking,
        "country": "CR",
        "channel": "email",
        "severity": "S1",
        "level": "L1",
        "status": status,
        "attention_due": (NOW + attention).isoformat(),
        "solution_due": (NOW + solution).isoformat(),
        "attended_at": (NOW - timedelta(hours=1)).isoformat() if attended else None,
    }


def test_at_risk_now() -> None:
    window = timedelta(minutes=15)
    rows = [
        _row("late", "new", -timedelta(minutes=5), timedelta(hours=2), False),
        _row("soon", "in_progress", timedelta(hours=2), timedelta(minutes=10), True),
        _row("calm", "new", timedelta(hours=1), timedelta(hours=3), False),
        _row("waiting", "waiting_customer", -timedelta(hours=1), -timedelta(minutes=1), True),
    ]
    risk = at_risk_now(rows, NOW, window)
    assert [(r["tracking"], r["kind"], r["overdue"]) for r in risk] == [
        ("late", "attention", True),
        ("soon", "solution", False),
    ]
