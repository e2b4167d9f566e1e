"""DST: opening hours and business clocks across the changes of New York, Toronto, Santiago.

2026: New York and Toronto spring forward on 03-08 (02:00 → 03:00) and fall back on 11-01
(02:00 → 01:00); Santiago falls back on 04-05 (00:00 → 23:00 of 04-04) and springs forward
on 09-06 (00:00 → 01:00).
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from routing.schedule import is_open, next_closing, next_opening, open_intervals
from routing.sla import clock_add, clock_elapsed

NIGHT = "01:00-04:00"


def _day(make_line, code, hours, day, utc):
    line = make_line(code, hours, holidays=False)
    start = utc(f"{day} 00:00")
    return list(open_intervals(line, start, start + timedelta(days=1)))


@pytest.mark.parametrize("code", ["US", "CA"])
@pytest.mark.parametrize(
    ("day", "intervals"),
    [
        ("2026-03-07", [("2026-03-07 06:00", "2026-03-07 09:00")]),  # EST, 3 h
        ("2026-03-08", [("2026-03-08 06:00", "2026-03-08 08:00")]),  # gap: 2 h
        ("2026-03-09", [("2026-03-09 05:00", "2026-03-09 08:00")]),  # EDT, 3 h
        ("2026-10-31", [("2026-10-31 05:00", "2026-10-31 08:00")]),  # EDT
        ("2026-11-01", [("2026-11-01 05:00", "2026-11-01 09:00")]),  # fold: 4 h
        ("2026-11-02", [("2026-11-02 06:00", "2026-11-02 09:00")]),  # EST
    ],
)
def test_night_hours_on_change_nights(make_line, utc, code, day, intervals):
    expected = [(utc(b), utc(e)) for b, e in intervals]
    assert _day(make_line, code, NIGHT, day, utc) == expected


@pytest.mark.parametrize("code", ["US", "CA"])
@pytest.mark.parametrize(
    ("moment", "open_"),
    [
        ("2026-03-08 06:59", True),  # 01:59 EST
        ("2026-03-08 07:00", True),  # 03:00 EDT
        ("2026-03-08 07:59", True),  # 03:59 EDT
        ("2026-03-08 08:00", False),  # 04:00 EDT
        ("2026-11-01 05:30", True),  # 01:30 EDT, first time
        ("2026-11-01 06:30", True),  # 01:30 EST, second time
        ("2026-11-01 08:59", True),  # 03:59 EST
        ("2026-11-01 09:00", False),
    ],
)
def test_is_open_across_change(make_line, utc, code, moment, open_):
    line = make_line(code, NIGHT, holidays=False)
    assert is_open(line, utc(moment)) is open_


@pytest.mark.parametrize(
    ("hours", "opening", "closing"),
    [
        ("02:30-05:00", "2026-03-08 07:00", "2026-03-08 09:00"),  # starts in the gap
        ("00:00-02:30", "2026-03-08 05:00", "2026-03-08 07:00"),  # ends in the gap
        ("02:00-02:45", "2026-03-09 06:00", "2026-03-09 06:45"),  # lost in the gap
    ],
)
def test_ranges_in_the_gap(make_line, utc, hours, opening, closing):
    line = make_line("US", hours, holidays=False)
    now = utc("2026-03-08 05:00")  # 00:00 EST
    assert next_opening(line, now) == utc(opening)
    assert next_closing(line, utc(opening)) == utc(closing)


def test_santiago_spring_forward_midnight(make_line, utc):
    # 2026-09-06 00:00 does not exist in Santiago: Sunday starts at 01:00 -03 (04:00Z).
    line = make_line("CL", {6: "00:00-03:00", 5: "closed"}, holidays=False)
    assert next_opening(line, utc("2026-09-05 12:00")) == utc("2026-09-06 04:00")
    assert next_closing(line, utc("2026-09-06 04:00")) == utc("2026-09-06 06:00")


def test_santiago_whole_days_stay_continuous(make_line, utc):
    line = make_line("CL", "00:00-24:00", holidays=False)
    start, end = utc("2026-09-04 00:00"), utc("2026-09-08 00:00")
    assert list(open_intervals(line, start, end)) == [(start, end)]
    start, end = utc("2026-04-03 00:00"), utc("2026-04-07 00:00")
    assert list(open_intervals(line, start, end)) == [(start, end)]


@pytest.mark.parametrize(
    ("hours", "interval"),
    [
        # 23:00-24:00 of 04-04 happens twice: 22:00 -03 → 00:00 -04 is three real hours.
        ("22:00-24:00", ("2026-04-05 01:00", "2026-04-05 04:00")),
        ("23:00-23:30", ("2026-04-05 02:00", "2026-04-05 03:30")),
    ],
)
def test_santiago_fall_back_repeated_hour(make_line, utc, hours, interval):
    line = make_line("CL", {5: hours}, holidays=False)
    got = list(open_intervals(line, utc("2026-04-04 20:00"), utc("2026-04-05 10:00")))
    assert got == [(utc(interval[0]), utc(interval[1]))]


@pytest.mark.parametrize(
    ("code", "start", "duration", "due"),
    [
        # Saturday 16:00 local, 1 h left that day, 2 h on Sunday from 07:00 (new offset).
        ("US", "2026-03-07 21:00", timedelta(hours=3), "2026-03-08 13:00"),  # EST → EDT
        ("CA", "2026-03-07 21:00", timedelta(hours=3), "2026-03-08 13:00"),
        ("US", "2026-10-31 20:00", timedelta(hours=3), "2026-11-01 14:00"),  # EDT → EST
        ("CA", "2026-10-31 20:00", timedelta(hours=3), "2026-11-01 14:00"),
        ("CL", "2026-04-04 19:00", timedelta(hours=2), "2026-04-05 12:00"),  # -03 → -04
        ("CL", "2026-09-05 20:00", timedelta(hours=2), "2026-09-06 11:00"),  # -04 → -03
        # Friday 20:00 EST + 15 h 30 m: 1 h Fri, 10 h Sat, 4 h 30 m from Sun 07:00 EDT.
        ("US", "2026-03-07 01:00", timedelta(hours=15, minutes=30), "2026-03-08 15:30"),
    ],
)
def test_business_clock_across_change(make_line, utc, code, start, duration, due):
    line = make_line(code, holidays=False)
    assert clock_add(line, "business", utc(start), duration) == utc(due)
    assert clock_elapsed(line, "business", utc(start), utc(due)) == duration


@pytest.mark.parametrize(
    ("start", "duration", "due"),
    [
        ("2026-03-08 05:00", timedelta(hours=2), "2026-03-08 08:00"),  # the short night
        ("2026-03-08 05:00", timedelta(hours=2, minutes=30), "2026-03-09 05:30"),
        ("2026-11-01 05:00", timedelta(hours=4), "2026-11-01 09:00"),  # the long night
        ("2026-11-01 05:00", timedelta(hours=4, minutes=1), "2026-11-02 06:01"),
    ],
)
def test_business_clock_night_line(make_line, utc, start, duration, due):
    line = make_line("CA", NIGHT, holidays=False)
    assert clock_add(line, "business", utc(start), duration) == utc(due)


def test_24x7_clock_ignores_dst(make_line, utc):
    line = make_line("US")
    start = utc("2026-03-08 05:00")
    assert clock_add(line, "24x7", start, timedelta(hours=3)) == utc("2026-03-08 08:00")
