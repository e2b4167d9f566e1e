"""Weekly hours: parsing, edges of opening and closing, midnight, week wrap, several ranges."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from routing.model import TimeRange
from routing.schedule import (
    is_open,
    local_time,
    next_closing,
    next_opening,
    open_intervals,
    parse_hours,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("closed", ()),
        (" Closed ", ()),
        ("06:00-21:00", (TimeRange(360, 1260),)),
        ("08:00-12:00,14:00-18:00", (TimeRange(480, 720), TimeRange(840, 1080))),
        ("14:00-18:00, 08:00-12:00", (TimeRange(480, 720), TimeRange(840, 1080))),
        ("00:00-24:00", (TimeRange(0, 1440),)),
        ("08:00-12:00,12:00-13:00", (TimeRange(480, 720), TimeRange(720, 780))),
        ("23:59-24:00", (TimeRange(1439, 1440),)),
    ],
)
def test_parse_hours(spec: str, expected: tuple[TimeRange, ...]):
    assert parse_hours(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("25:00-26:00", "'25:00' is not a time HH:MM"),
        ("08:00-24:30", "'24:30' is not a time HH:MM"),
        ("8:00-12:00", "'8:00' is not a time HH:MM"),
        ("08:60-12:00", "'08:60' is not a time HH:MM"),
        ("10:00-09:00", "range 10:00-09:00 ends before it starts"),
        ("10:00-10:00", "range 10:00-10:00 ends before it starts"),
        ("08:00-12:00,11:00-13:00", "ranges overlap: 08:00-12:00 and 11:00-13:00"),
        ("08:00", "'08:00' is not a range HH:MM-HH:MM"),
        ("24:00-24:00", "starts at 24:00"),
        ("", "empty hours"),
        ("open", "'open' is not a range"),
    ],
)
def test_parse_hours_errors(spec: str, message: str):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_hours(spec)


# MX (America/Mexico_City, UTC-6 all year). 2026-11-30 is a Monday, 11-28 a Saturday.
@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-11-30 05:59", False),
        ("2026-11-30 06:00", True),
        ("2026-11-30 06:01", True),
        ("2026-11-30 20:59", True),
        ("2026-11-30 21:00", False),
        ("2026-11-30 21:01", False),
        ("2026-11-30 00:00", False),
        ("2026-11-28 06:59", False),
        ("2026-11-28 07:00", True),
        ("2026-11-28 16:59", True),
        ("2026-11-28 17:00", False),
        ("2026-11-29 12:00", True),  # Sunday
    ],
)
def test_is_open_edges(make_line, at, local: str, expected: bool):
    line = make_line("MX")
    assert is_open(line, at(line, local)) is expected


@pytest.mark.parametrize(
    ("local", "opening"),
    [
        ("2026-11-30 10:00", "2026-11-30 10:00"),  # open now: now
        ("2026-11-30 05:59", "2026-11-30 06:00"),
        ("2026-11-30 00:00", "2026-11-30 06:00"),
        ("2026-11-30 21:00", "2026-12-01 06:00"),
        ("2026-11-27 21:00", "2026-11-28 07:00"),  # Friday night → Saturday
        ("2026-11-28 17:00", "2026-11-29 07:00"),  # Saturday → Sunday
        ("2026-11-29 17:00", "2026-11-30 06:00"),  # Sunday → Monday
        ("2026-11-29 23:59", "2026-11-30 06:00"),
    ],
)
def test_next_opening(make_line, at, local: str, opening: str):
    line = make_line("MX")
    result = next_opening(line, at(line, local))
    assert result == at(line, opening)
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("local", "closing"),
    [
        ("2026-11-30 06:00", "2026-11-30 21:00"),
        ("2026-11-30 20:59", "2026-11-30 21:00"),
        ("2026-11-28 07:00", "2026-11-28 17:00"),
        ("2026-11-30 21:00", None),
        ("2026-11-30 05:59", None),
    ],
)
def test_next_closing(make_line, at, local: str, closing: str | None):
    line = make_line("MX")
    assert next_closing(line, at(line, local)) == (at(line, closing) if closing else None)


SPLIT = {0: "08:00-12:00,14:00-18:00"}


@pytest.mark.parametrize(
    ("local", "open_", "opening", "closing"),
    [
        ("2026-11-30 07:59", False, "2026-11-30 08:00", None),
        ("2026-11-30 11:59", True, "2026-11-30 11:59", "2026-11-30 12:00"),
        ("2026-11-30 12:00", False, "2026-11-30 14:00", None),
        ("2026-11-30 13:59", False, "2026-11-30 14:00", None),
        ("2026-11-30 14:00", True, "2026-11-30 14:00", "2026-11-30 18:00"),
        ("2026-11-30 18:00", False, "2026-12-01 06:00", None),
    ],
)
def test_several_ranges_per_day(make_line, at, local, open_, opening, closing):
    line = make_line("MX", SPLIT)
    now = at(line, local)
    assert is_open(line, now) is open_
    assert next_opening(line, now) == at(line, opening)
    assert next_closing(line, now) == (at(line, closing) if closing else None)


def test_closed_day_is_skipped(make_line, at):
    line = make_line("MX", {5: "closed", 6: "closed"})
    assert not is_open(line, at(line, "2026-11-28 12:00"))
    assert next_opening(line, at(line, "2026-11-27 21:00")) == at(line, "2026-11-30 06:00")


def test_week_wrap_only_sunday(make_line, at):
    line = make_line("MX", {d: "closed" for d in range(6)})
    # Monday → the next Sunday, six days later.
    assert next_opening(line, at(line, "2026-11-30 08:00")) == at(line, "2026-12-06 07:00")


def test_midnight_end(make_line, at):
    line = make_line("MX", {0: "22:00-24:00", 1: "closed"})
    assert is_open(line, at(line, "2026-11-30 23:59"))
    assert not is_open(line, at(line, "2026-12-01 00:00"))
    assert next_closing(line, at(line, "2026-11-30 22:30")) == at(line, "2026-12-01 00:00")


def test_24_00_then_00_00_is_one_interval(make_line, at):
    line = make_line("MX", {0: "20:00-24:00", 1: "00:00-02:00,09:00-10:00"})
    start, end = at(line, "2026-11-30 00:00"), at(line, "2026-12-01 12:00")
    assert next_closing(line, at(line, "2026-11-30 22:00")) == at(line, "2026-12-01 02:00")
    assert is_open(line, at(line, "2026-12-01 00:00"))
    intervals = list(open_intervals(line, start, end))
    assert intervals[:2] == [
        (at(line, "2026-11-30 20:00"), at(line, "2026-12-01 02:00")),
        (at(line, "2026-12-01 09:00"), at(line, "2026-12-01 10:00")),
    ]


@pytest.mark.parametrize("local", ["2026-11-30 00:00", "2026-11-29 23:59", "2026-12-02 13:37"])
def test_whole_day(make_line, at, local: str):
    line = make_line("MX", "00:00-24:00", holidays=False)
    now = at(line, local)
    assert is_open(line, now)
    assert next_opening(line, now) == now
    # Never closes: the search horizon stands for "not within a year".
    closing = next_closing(line, now)
    assert closing is not None and closing - now >= timedelta(days=365)


def test_whole_day_but_sunday(make_line, at):
    line = make_line("MX", {d: "00:00-24:00" for d in range(6)} | {6: "closed"})
    assert next_closing(line, at(line, "2026-11-30 12:00")) == at(line, "2026-12-06 00:00")
    assert next_opening(line, at(line, "2026-12-06 09:00")) == at(line, "2026-12-07 00:00")


def test_open_intervals_clipped_to_window(make_line, at):
    line = make_line("MX")
    start, end = at(line, "2026-11-30 10:00"), at(line, "2026-12-01 07:00")
    assert list(open_intervals(line, start, end)) == [
        (start, at(line, "2026-11-30 21:00")),
        (at(line, "2026-12-01 06:00"), end),
    ]
    assert list(open_intervals(line, end, start)) == []
    week = list(open_intervals(line, at(line, "2026-11-30 00:00"), at(line, "2026-12-07 00:00")))
    assert len(week) == 7
    assert sum((e - b for b, e in week), timedelta()) == timedelta(hours=5 * 15 + 2 * 10)


def test_never_open(make_line, at):
    line = make_line("MX", "closed")
    now = at(line, "2026-11-30 10:00")
    assert not is_open(line, now)
    assert next_closing(line, now) is None
    assert list(open_intervals(line, now, now + timedelta(days=30))) == []
    with pytest.raises(ValueError, match="never open within 400 days"):
        next_opening(line, now)


def test_closed_dates(make_line, at):
    line = make_line("MX", closed_dates=frozenset({date(2026, 11, 30), date(2026, 12, 1)}))
    assert not is_open(line, at(line, "2026-11-30 10:00"))
    assert next_opening(line, at(line, "2026-11-29 17:00")) == at(line, "2026-12-02 06:00")


def test_local_time(make_line):
    line = make_line("MX")
    moment = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    local = local_time(line, moment)
    assert (local.hour, str(local.tzinfo)) == (6, "America/Mexico_City")
    assert local == moment


def test_naive_datetimes_are_refused(make_line):
    line = make_line("MX")
    with pytest.raises(ValueError, match="timezone-aware"):
        is_open(line, datetime(2026, 11, 30, 12, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        next_opening(line, datetime(2026, 11, 30, 12, 0))


def test_non_utc_input_gives_utc_output(make_line, at):
    line = make_line("CR")
    now = local_time(line, at(line, "2026-11-30 05:00"))  # aware, in America/Costa_Rica
    assert next_opening(line, now) == at(line, "2026-11-30 06:00")
    assert next_opening(line, now).tzinfo is UTC
