"""Value types of routing: lines, weekly hours, SLA targets and the routing configuration.

Plain frozen dataclasses built by `config.loader` from TOML; they carry no behaviour beyond
trivial accessors so that every routing function stays a plain function of its arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

Weekday = int  # 0 = Monday .. 6 = Sunday, as datetime.weekday()
ClockKind = Literal["24x7", "business"]
Severity = Literal["S1", "S2", "S3", "S4"]
Level = Literal["L1", "L2", "L3"]

SEVERITIES: tuple[Severity, ...] = ("S1", "S2", "S3", "S4")
LEVELS: tuple[Level, ...] = ("L1", "L2", "L3")
DAY_KEYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class TimeRange:
    """Open interval of one day in minutes since local midnight: [start, end), end <= 1440."""

    start: int
    end: int


@dataclass(frozen=True)
class Line:
    """One country line: its phone number, local time zone, hours and customer language."""

    code: str  # ISO 3166 alpha-2, e.g. "MX"
    name: str  # "México"
    number: str  # E.164, e.g. "+525541708422"
    timezone: str  # IANA, e.g. "America/Mexico_City"
    hours: Mapping[Weekday, tuple[TimeRange, ...]]  # every weekday present; () = closed
    holidays: bool = True  # the country's public holidays close the line
    language: str = "es"  # "es" or "en"
    closed_dates: frozenset[date] = field(default_factory=frozenset)
    l1_destination: str | None = None  # voice: number, sip: URI or queue:NAME

    def __hash__(self) -> int:
        # `hours` is a mapping (unhashable); lines are few and immutable, so hashing their
        # identity fields lets schedule computations be cached per line (equality stays full).
        return hash((self.code, self.number, self.timezone, self.holidays, self.closed_dates))


@dataclass(frozen=True)
class SlaTarget:
    """Attention and solution times of one severity and the clock they run on."""

    attention: timedelta
    solution: timedelta
    clock: ClockKind


@dataclass(frozen=True)
class RoutingConfig:
    """Everything routing needs: the lines, the fallback line and the SLA table."""

    lines: Mapping[str, Line]  # by country code
    default_country: str
    sla: Mapping[str, SlaTarget]  # by severity "S1".."S4"
    default_severity: Severity = "S3"
    at_risk_window: timedelta = timedelta(minutes=15)

    @property
    def default_line(self) -> Line:
        """The line used when a contact's country cannot be resolved."""
        return self.lines[self.default_country]
