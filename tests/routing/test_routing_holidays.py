"""Public holidays of the 11 countries close their lines, unless the line disables them."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from routing.schedule import is_holiday, is_open, next_opening
from routing.sla import clock_add

# Each country's independence (or national) day in 2026, checked in the `holidays` package.
NATIONAL_DAYS = [
    ("MX", "2026-09-16"),  # Wednesday
    ("CL", "2026-09-18"),
    ("CO", "2026-07-20"),
    ("US", "2026-07-04"),  # Saturday, open 07:00-17:00 otherwise
    ("CA", "2026-07-01"),
    ("PE", "2026-07-28"),
    ("PA", "2026-11-03"),
    ("GT", "2026-09-15"),
    ("SV", "2026-09-15"),
    ("CR", "2026-09-15"),
    ("DO", "2026-02-27"),
]
CODES = [code for code, _ in NATIONAL_DAYS]


@pytest.mark.parametrize(("code", "day"), NATIONAL_DAYS)
def test_national_day_closes_the_line(make_line, at, code: str, day: str):
    line = make_line(code)
    noon = at(line, f"{day} 12:00")
    assert is_holiday(line, date.fromisoformat(day))
    assert not is_open(line, noon)
    assert is_open(make_line(code, holidays=False), noon)
    # The day before is an ordinary day, except in the US where 07-03 is the observed day.
    assert is_open(line, noon - timedelta(days=1)) is (code != "US")


@pytest.mark.parametrize("code", CODES)
def test_new_year_closes_the_line(make_line, at, code: str):
    line = make_line(code)
    assert not is_open(line, at(line, "2026-01-01 12:00"))
    assert next_opening(line, at(line, "2026-01-01 12:00")) == at(line, "2026-01-02 06:00")
    assert is_open(make_line(code, holidays=False), at(line, "2026-01-01 12:00"))


def test_ordinary_day_is_no_holiday(make_line):
    assert not is_holiday(make_line("MX"), date(2026, 11, 30))


def test_closed_dates_apply_even_without_holidays(make_line):
    line = make_line("MX", holidays=False, closed_dates=frozenset({date(2026, 11, 30)}))
    assert is_holiday(line, date(2026, 11, 30))
    assert not is_holiday(line, date(2026, 9, 16))


def test_unknown_country_calendar(make_line, at):
    line = make_line("MX")
    unknown = type(line)(**{**line.__dict__, "code": "XX"})
    with pytest.raises(ValueError, match="no public-holiday calendar for country 'XX'"):
        is_open(unknown, at(line, "2026-11-30 12:00"))


WEEKDAYS_ONLY = {5: "closed", 6: "closed"}


@pytest.mark.parametrize(
    ("code", "hours", "local", "opening"),
    [
        # Colombia: Friday night, then the weekend and Epiphany moved to Monday 01-12.
        ("CO", WEEKDAYS_ONLY, "2026-01-09 21:00", "2026-01-13 06:00"),
        # Guatemala: Holy Thursday, Good Friday, Holy Saturday; open again on Easter Sunday.
        ("GT", None, "2026-04-01 21:00", "2026-04-05 07:00"),
        # Peru: Holy Thursday and Good Friday; Saturday is open, Easter Sunday is not.
        ("PE", None, "2026-04-01 21:00", "2026-04-04 07:00"),
        ("PE", None, "2026-04-04 17:00", "2026-04-06 06:00"),
        # Costa Rica with weekends closed: Wednesday night to Monday.
        ("CR", WEEKDAYS_ONLY, "2026-04-01 21:00", "2026-04-06 06:00"),
        # US: Independence Day on a Saturday, observed on Friday 07-03.
        ("US", None, "2026-07-02 21:00", "2026-07-05 07:00"),
        # Mexico: Christmas Day, Friday.
        ("MX", WEEKDAYS_ONLY, "2026-12-24 21:00", "2026-12-28 06:00"),
    ],
)
def test_long_holiday_weekend(make_line, at, code, hours, local, opening):
    line = make_line(code, hours)
    assert next_opening(line, at(line, local)) == at(line, opening)


def test_closed_for_weeks(make_line, at):
    days = frozenset(date(2026, 12, 1) + timedelta(days=n) for n in range(45))
    line = make_line("MX", closed_dates=days)
    assert next_opening(line, at(line, "2026-11-30 21:00")) == at(line, "2027-01-15 06:00")


@pytest.mark.parametrize(
    ("code", "start", "duration", "due"),
    [
        # Tuesday 20:00, Wednesday 09-16 closed: 1 h Tuesday, 1 h from Thursday 06:00.
        ("MX", "2026-09-15 20:00", timedelta(hours=2), "2026-09-17 07:00"),
        # Wednesday 20:00 before Easter in Guatemala: 1 h, then Sunday from 07:00.
        ("GT", "2026-04-01 20:00", timedelta(hours=4), "2026-04-05 10:00"),
        # Friday 19:00 in Colombia, weekend, Monday holiday.
        ("CO", "2026-01-09 19:00", timedelta(hours=4), "2026-01-10 09:00"),
    ],
)
def test_business_clock_skips_holidays(make_line, at, code, start, duration, due):
    line = make_line(code)
    assert clock_add(line, "business", at(line, start), duration) == at(line, due)


def test_business_clock_skips_holiday_weekend(make_line, at):
    line = make_line("CO", WEEKDAYS_ONLY)
    due = clock_add(line, "business", at(line, "2026-01-09 19:00"), timedelta(hours=4))
    assert due == at(line, "2026-01-13 08:00")
