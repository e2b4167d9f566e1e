"""Test helpers of routing: the seed's 11 lines, a routing config and local-time instants."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from routing.model import Line, RoutingConfig, SlaTarget, TimeRange
from routing.schedule import parse_hours

# code: (name, number as recommended for the shipped defaults, time zone)
SEED_LINES: dict[str, tuple[str, str, str]] = {
    "MX": ("México", "+525541708422", "America/Mexico_City"),
    "CL": ("Chile", "+56227609072", "America/Santiago"),
    "CO": ("Colombia", "+576015189663", "America/Bogota"),
    "US": ("Miami", "+13056445335", "America/New_York"),
    "CA": ("Canadá", "+16134168671", "America/Toronto"),
    "PE": ("Perú", "+5116409850", "America/Lima"),
    "PA": ("Panamá", "+5078366060", "America/Panama"),
    "GT": ("Guatemala", "+50223750299", "America/Guatemala"),
    "SV": ("El Salvador", "+50321130412", "America/El_Salvador"),
    "CR": ("Costa Rica", "+50640004000", "America/Costa_Rica"),
    "DO": ("Rep. Dominicana", "+18299466346", "America/Santo_Domingo"),
}

# The seed: Monday to Friday 06:00-21:00, Saturday and Sunday 07:00-17:00.
DEFAULT_HOURS: dict[int, str] = {0: "06:00-21:00", 1: "06:00-21:00", 2: "06:00-21:00",
                                 3: "06:00-21:00", 4: "06:00-21:00", 5: "07:00-17:00",
                                 6: "07:00-17:00"}  # fmt: skip


def make_line(
    code: str = "MX",
    hours: Mapping[int, str] | str | None = None,
    *,
    holidays: bool = True,
    closed_dates: frozenset[date] = frozenset(),
    timezone: str | None = None,
) -> Line:
    """A seed line; `hours` is one spec for every day or a {weekday: spec} override."""
    name, number, zone = SEED_LINES[code]
    specs = dict(DEFAULT_HOURS)
    if isinstance(hours, str):
        specs = dict.fromkeys(range(7), hours)
    elif hours is not None:
        specs.update(hours)
    parsed: dict[int, tuple[TimeRange, ...]] = {d: parse_hours(s) for d, s in specs.items()}
    return Line(
        code=code,
        name=name,
        number=number,
        timezone=timezone or zone,
        hours=parsed,
        holidays=holidays,
        language="en" if code in ("US", "CA") else "es",
        closed_dates=closed_dates,
    )


def at(line: Line, local: str, fold: int = 0) -> datetime:
    """The UTC instant of a local wall time "YYYY-MM-DD HH:MM" of the line."""
    naive = datetime.fromisoformat(local)
    return naive.replace(tzinfo=ZoneInfo(line.timezone), fold=fold).astimezone(UTC)


def utc(text: str) -> datetime:
    """A UTC instant from "YYYY-MM-DD HH:MM"."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


SEED_SLA: dict[str, SlaTarget] = {
    "S1": SlaTarget(timedelta(hours=1), timedelta(hours=3), "24x7"),
    "S2": SlaTarget(timedelta(hours=1, minutes=30), timedelta(hours=4), "business"),
    "S3": SlaTarget(timedelta(hours=2), timedelta(hours=4), "business"),
    "S4": SlaTarget(timedelta(hours=2), timedelta(hours=4), "business"),
}


def make_cfg(default_country: str = "CR", **line_overrides: Line) -> RoutingConfig:
    """A routing config of the 11 seed lines with the seed's SLA table."""
    lines = {code: make_line(code) for code in SEED_LINES} | line_overrides
    return RoutingConfig(lines=lines, default_country=default_country, sla=dict(SEED_SLA))


# Fixtures hand the helpers to the test modules, which keeps them importable under any
# pytest import mode (tests/routing is not a package).
@pytest.fixture(name="make_line")
def _make_line_fixture() -> Callable[..., Line]:
    return make_line


@pytest.fixture(name="make_cfg")
def _make_cfg_fixture() -> Callable[..., RoutingConfig]:
    return make_cfg


@pytest.fixture(name="at")
def _at_fixture() -> Callable[..., datetime]:
    return at


@pytest.fixture(name="utc")
def _utc_fixture() -> Callable[[str], datetime]:
    return utc


@pytest.fixture
def cfg() -> RoutingConfig:
    return make_cfg()
