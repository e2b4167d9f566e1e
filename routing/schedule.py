"""Opening hours of a line: parsing, holidays, and open intervals as UTC instants.

A line is open while its local wall clock reads inside one of the day's ranges. Wall times
are mapped to UTC so that DST gaps open at the first existing instant and DST folds keep the
line open through both occurrences of the repeated hour.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from itertools import pairwise
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from routing.model import Line, TimeRange

# How far ahead a search for an opening (or closing) goes before giving up.
SEARCH_DAYS = 400

_TIME = re.compile(r"^(\d{2}):(\d{2})$")
_MINUTES_PER_DAY = 24 * 60

Interval = tuple[datetime, datetime]


def _parse_time(text: str) -> int:
    match = _TIME.match(text)
    hour, minute = (int(match[1]), int(match[2])) if match else (-1, -1)
    if not (0 <= hour <= 24 and 0 <= minute <= 59) or (hour == 24 and minute != 0):
        raise ValueError(f"'{text}' is not a time HH:MM")
    return hour * 60 + minute


def _format_time(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def parse_hours(spec: str) -> tuple[TimeRange, ...]:
    """Parse "closed" or comma-separated "HH:MM-HH:MM" ranges into sorted TimeRanges."""
    text = spec.strip()
    if text.lower() == "closed":
        return ()
    if not text:
        raise ValueError('empty hours: write "closed" or ranges like "06:00-21:00"')
    ranges: list[TimeRange] = []
    for part in text.split(","):
        bounds = part.strip().split("-")
        if len(bounds) != 2:
            raise ValueError(f"'{part.strip()}' is not a range HH:MM-HH:MM")
        start, end = (_parse_time(bound.strip()) for bound in bounds)
        if start == _MINUTES_PER_DAY:
            raise ValueError(f"range {part.strip()} starts at 24:00; write 00:00 of the next day")
        if end <= start:
            raise ValueError(f"range {part.strip()} ends before it starts")
        ranges.append(TimeRange(start, end))
    ranges.sort(key=lambda r: r.start)
    for before, after in pairwise(ranges):
        if after.start < before.end:
            raise ValueError(
                f"ranges overlap: {_format_time(before.start)}-{_format_time(before.end)} and "
                f"{_format_time(after.start)}-{_format_time(after.end)}"
            )
    return tuple(ranges)


@lru_cache(maxsize=512)
def _public_holidays(country: str, year: int) -> frozenset[date]:
    try:
        calendar = holidays_lib.country_holidays(country, years=year)
    except NotImplementedError:
        raise ValueError(f"no public-holiday calendar for country '{country}'") from None
    # Observed days ("(observed)") are included: they are the days actually taken off.
    return frozenset(calendar.keys())


@lru_cache(maxsize=1)
def _calendars() -> frozenset[str]:
    return frozenset(holidays_lib.list_supported_countries())


def has_holiday_calendar(country: str) -> bool:
    """Whether the `holidays` package knows the public holidays of `country`."""
    return country in _calendars()


def is_holiday(line: Line, day: date) -> bool:
    """Return whether the line is closed all day on `day` (closed date or public holiday)."""
    if day in line.closed_dates:
        return True
    return line.holidays and day in _public_holidays(line.code, day.year)


def _zone(line: Line) -> ZoneInfo:
    return ZoneInfo(line.timezone)


def _check_aware(moment: datetime, name: str = "now") -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {moment!r}")


def local_time(line: Line, moment: datetime) -> datetime:
    """Return `moment` (aware) in the line's time zone."""
    _check_aware(moment, "moment")
    return moment.astimezone(_zone(line))


def _wall_to_utc(zone: ZoneInfo, wall: datetime, *, is_end: bool) -> datetime:
    """Map a naive local wall time to the UTC instant the wall clock reaches it."""
    early = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    late = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if early == late:
        return early
    if early.astimezone(zone).replace(tzinfo=None) == wall:
        # Repeated hour: a range starts at its first occurrence and ends at its second, so
        # the line stays open while the wall clock reads inside the range both times.
        return late if is_end else early
    # Nonexistent wall time (DST gap): the first instant whose wall clock is past it, i.e.
    # the transition itself. fold=1 gives an instant before it, fold=0 one after it.
    low, high = min(early, late), max(early, late)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def _day_ranges(line: Line, day: date) -> tuple[TimeRange, ...]:
    if is_holiday(line, day):
        return ()
    return tuple(sorted(line.hours.get(day.weekday(), ()), key=lambda r: r.start))


@lru_cache(maxsize=8192)
def _day_intervals(line: Line, day: date) -> tuple[Interval, ...]:
    """The UTC intervals of one local day's ranges; ranges lost in a DST gap are dropped.

    Cached: every intake and SLA computation asks for the same few days of the same lines.
    """
    zone = _zone(line)
    midnight = datetime.combine(day, time())
    result: list[Interval] = []
    for rng in _day_ranges(line, day):
        start = _wall_to_utc(zone, midnight + timedelta(minutes=rng.start), is_end=False)
        end = _wall_to_utc(zone, midnight + timedelta(minutes=rng.end), is_end=True)
        if start < end:
            result.append((start, end))
    return tuple(result)


def _raw_intervals(line: Line, start: datetime, stop: datetime) -> Iterator[Interval]:
    """Per-day UTC intervals that end after `start` and begin before `stop`, in order."""
    zone = _zone(line)
    # One day of margin each side: a local day's range can reach into the neighbouring UTC
    # date, and DST folds can make a day's last interval end after the next day's begins.
    day = start.astimezone(zone).date() - timedelta(days=1)
    last = stop.astimezone(zone).date() + timedelta(days=1)
    while day <= last:
        for begin, end in _day_intervals(line, day):
            if end > start and begin < stop:
                yield begin, end
        day += timedelta(days=1)


def _iter_open(line: Line, start: datetime) -> Iterator[Interval]:
    """Disjoint intervals from `start` on, endless; ValueError after a search window never open."""
    window = timedelta(days=SEARCH_DAYS)
    cursor = start
    while True:
        window_start, found = cursor, False
        for begin, end in _raw_intervals(line, window_start, window_start + window):
            # DST folds can make neighbouring intervals overlap; never count time twice.
            if end <= cursor:
                continue
            found = True
            yield max(begin, cursor), end
            cursor = end
        if not found:
            raise ValueError(f"line {line.code} is never open within {SEARCH_DAYS} days")


def _merged(intervals: Iterator[Interval], limit: datetime) -> Iterator[Interval]:
    """Merge touching intervals (24:00 then 00:00 is one), stopping a merge at `limit`."""
    current: Interval | None = None
    for begin, end in intervals:
        if current is not None and begin <= current[1]:
            current = (current[0], max(current[1], end))
        else:
            if current is not None:
                yield current
            current = (begin, end)
        if current[1] >= limit:
            break
    if current is not None:
        yield current


def is_open(line: Line, now: datetime) -> bool:
    """Return whether the line is open at `now`."""
    _check_aware(now)
    return any(b <= now < e for b, e in _raw_intervals(line, now, now + timedelta(seconds=1)))


def next_opening(line: Line, now: datetime) -> datetime:
    """Return `now` if the line is open, else the next instant it opens (UTC)."""
    _check_aware(now)
    now = now.astimezone(UTC)
    begin, _ = next(_iter_open(line, now))
    return max(begin, now)


def next_closing(line: Line, now: datetime) -> datetime | None:
    """Return when the current open interval ends (UTC), or None if the line is closed now."""
    # A line open without a break (00:00-24:00 every day, no holidays) has no closing; the
    # end of the search horizon stands for "not within SEARCH_DAYS".
    _check_aware(now)
    now = now.astimezone(UTC)
    horizon = now + timedelta(days=SEARCH_DAYS)
    begin, end = next(_merged(_raw_intervals(line, now, horizon), horizon), (now, now))
    if begin > now or end <= now:
        return None
    return min(end, horizon)


def open_intervals(line: Line, start: datetime, end: datetime) -> Iterator[Interval]:
    """Yield the UTC intervals within [start, end) during which the line is open."""
    _check_aware(start, "start")
    _check_aware(end, "end")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return
    for begin, finish in _merged(_raw_intervals(line, start, end), end):
        yield max(begin, start), min(finish, end)
