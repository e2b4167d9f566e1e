"""SLA clocks: due times on a 24x7 or business clock, pauses, breach and at-risk states.

A "business" clock only runs while the line is open (its hours, minus holidays); a "24x7"
clock runs always. All instants are aware datetimes; results are UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from routing.model import ClockKind, Line, RoutingConfig, SlaTarget
from routing.schedule import _iter_open, next_opening, open_intervals

_ZERO = timedelta(0)


def _check_clock(clock: str) -> None:
    if clock not in ("24x7", "business"):
        raise ValueError(f'unknown SLA clock \'{clock}\': use "24x7" or "business"')


def clock_add(line: Line, clock: ClockKind, start: datetime, duration: timedelta) -> datetime:
    """Return the instant when `duration` has elapsed on `clock` counting from `start`."""
    _check_clock(clock)
    if duration < _ZERO:
        raise ValueError(f"duration must not be negative, got {duration}")
    start = start.astimezone(UTC)
    if clock == "24x7":
        return start + duration
    remaining = duration
    for begin, end in _iter_open(line, start):
        if remaining <= end - begin:
            return begin + remaining
        remaining -= end - begin
    raise AssertionError("unreachable: _iter_open never ends without raising")


def clock_elapsed(line: Line, clock: ClockKind, start: datetime, end: datetime) -> timedelta:
    """Return the time elapsed on `clock` between `start` and `end` (zero if end <= start)."""
    _check_clock(clock)
    if end <= start:
        return _ZERO
    if clock == "24x7":
        return end - start
    return sum((e - b for b, e in open_intervals(line, start, end)), _ZERO)


@dataclass(frozen=True)
class SlaDue:
    """When the first response and the resolution of an incident are due (UTC)."""

    attention_due: datetime
    solution_due: datetime


def _target(cfg: RoutingConfig, severity: str) -> SlaTarget:
    try:
        return cfg.sla[severity]
    except KeyError:
        raise ValueError(f"no SLA target for severity '{severity}'") from None


def _merge_pauses(
    pauses: Sequence[tuple[datetime, datetime | None]], now: datetime | None
) -> list[tuple[datetime, datetime]]:
    closed: list[tuple[datetime, datetime]] = []
    for begin, end in pauses:
        if end is None:
            if now is None:
                raise ValueError("an open pause (end None) needs `now`")
            end = now
        if end > begin:
            closed.append((begin, end))
    closed.sort()
    # Overlapping pauses (e.g. a duplicated status event) must not pause the clock twice.
    merged: list[tuple[datetime, datetime]] = []
    for begin, end in closed:
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    return merged


def sla_due(
    cfg: RoutingConfig,
    line: Line,
    severity: str,
    registered_at: datetime,
    pauses: Sequence[tuple[datetime, datetime | None]] = (),
    now: datetime | None = None,
) -> SlaDue:
    """Return the attention and solution due times; pauses extend only the solution clock."""
    target = _target(cfg, severity)
    paused = sum(
        (clock_elapsed(line, target.clock, b, e) for b, e in _merge_pauses(pauses, now)), _ZERO
    )
    return target_due(line, target, registered_at, paused)


def target_due(
    line: Line, target: SlaTarget, registered_at: datetime, paused: timedelta = _ZERO
) -> SlaDue:
    """Due times of one SLA target from registration; `paused` extends only the solution."""
    return SlaDue(
        attention_due=clock_add(line, target.clock, registered_at, target.attention),
        solution_due=clock_add(line, target.clock, registered_at, target.solution + paused),
    )


def clock_starts_at(
    cfg: RoutingConfig, line: Line, severity: str, registered_at: datetime
) -> datetime:
    """Return when the SLA clock of an incident registered at `registered_at` starts (UTC)."""
    if _target(cfg, severity).clock == "24x7":
        return registered_at.astimezone(UTC)
    return next_opening(line, registered_at)


@dataclass(frozen=True)
class SlaState:
    """Breach and at-risk flags of an incident's two SLA deadlines at one instant."""

    attention_breached: bool
    solution_breached: bool
    attention_at_risk: bool
    solution_at_risk: bool


def _deadline(
    due: datetime, done_at: datetime | None, now: datetime, window: timedelta
) -> tuple[bool, bool]:
    """Return (breached, at_risk) of one deadline."""
    breached = (done_at if done_at is not None else now) > due
    at_risk = done_at is None and not breached and due - now <= window
    return breached, at_risk


def sla_state(
    attention_due: datetime,
    solution_due: datetime,
    attended_at: datetime | None,
    resolved_at: datetime | None,
    now: datetime,
    at_risk_window: timedelta = timedelta(minutes=15),
    paused: bool = False,
) -> SlaState:
    """Return which deadlines are breached or at risk at `now`."""
    attention = _deadline(attention_due, attended_at, now, at_risk_window)
    if paused and resolved_at is None:
        # While waiting for the customer the solution clock stands still: its due time keeps
        # moving with `now`, so neither flag may be raised until the pause ends.
        solution = (False, False)
    else:
        solution = _deadline(solution_due, resolved_at, now, at_risk_window)
    return SlaState(
        attention_breached=attention[0],
        solution_breached=solution[0],
        attention_at_risk=attention[1],
        solution_at_risk=solution[1],
    )


def met_sla(
    attention_due: datetime,
    solution_due: datetime,
    attended_at: datetime | None,
    resolved_at: datetime | None,
) -> bool:
    """Return whether a finished incident met both its attention and its solution times."""
    return (
        attended_at is not None
        and resolved_at is not None
        and attended_at <= attention_due
        and resolved_at <= solution_due
    )
