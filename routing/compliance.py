"""SLA verdicts of one incident over its history, and the months they are counted in.

Severity rule (README "The supervisor's month"): each deadline has a budget per severity; while a
severity is in force, its own clock (24x7, or the line's open hours minus holidays) spends that
severity's budget, and the deadline falls when the whole budget is spent. Without a severity
change this is exactly `routing.sla.sla_due`. Pauses (waiting on the customer) stop only the
solution clock. Pure: no clock reading, no I/O; every instant is aware and results are UTC.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from routing.model import ClockKind, Line, RoutingConfig
from routing.schedule import _iter_open

Interval = tuple[datetime, datetime]
Kind = Literal["attention", "solution"]
State = Literal["met", "breached", "pending"]
_FOREVER = timedelta(days=365 * 50)
_ZERO = timedelta(0)


@dataclass(frozen=True)
class History:
    """What the verdict needs of one incident: severities in force, pauses, done times."""

    registered_at: datetime
    # (in force from, severity), oldest first; the first one is in force from registration.
    severities: tuple[tuple[datetime, str], ...]
    pauses: tuple[tuple[datetime, datetime | None], ...] = ()  # (begin, end); still open: None
    attended_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class Deadline:
    """One deadline's verdict: due time, when it was done, met/breached/pending, by how much."""

    kind: Kind
    due: datetime
    done_at: datetime | None
    state: State
    overrun: timedelta | None  # wall time past due (done, or report time while open); else None
    clock: ClockKind  # the clock of the severity in force when the deadline fell


@dataclass(frozen=True)
class Verdict:
    """Both deadlines of one incident at the report's time."""

    attention: Deadline
    solution: Deadline

    @property
    def state(self) -> State:
        """Breached if either is; met if both are; otherwise still pending."""
        states = {self.attention.state, self.solution.state}
        if "breached" in states:
            return "breached"
        return "met" if states == {"met"} else "pending"


def month_bounds(zone: str, year: int, month: int) -> Interval:
    """[first local midnight of the month, first local midnight of the next) in UTC."""
    tz = ZoneInfo(zone)
    start = datetime(year, month, 1, tzinfo=tz)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def _merge(
    pauses: Sequence[tuple[datetime, datetime | None]], now: datetime
) -> tuple[Interval, ...]:
    spans = sorted((b, e if e is not None else now) for b, e in pauses)
    merged: list[Interval] = []
    for begin, end in spans:
        if end <= begin:
            continue
        if merged and begin <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    return tuple(merged)


def _running(
    line: Line, clock: ClockKind, start: datetime, excluded: Sequence[Interval]
) -> Iterator[Interval]:
    """Intervals from `start` on during which `clock` runs, minus the excluded (pauses)."""
    base: Iterator[Interval] = (
        iter([(start, start + _FOREVER)]) if clock == "24x7" else _iter_open(line, start)
    )
    for begin, end in base:
        cursor = max(begin, start)
        for ex_begin, ex_end in excluded:
            if ex_end <= cursor or ex_begin >= end:
                continue
            if ex_begin > cursor:
                yield cursor, ex_begin
            cursor = max(cursor, ex_end)
            if cursor >= end:
                break
        if cursor < end:
            yield cursor, end


def _elapsed(
    line: Line, clock: ClockKind, start: datetime, stop: datetime, excluded: Sequence[Interval]
) -> timedelta:
    total = _ZERO
    if stop <= start:
        return total
    for begin, end in _running(line, clock, start, excluded):
        if begin >= stop:
            break
        total += min(end, stop) - begin
    return total


def _add(
    line: Line, clock: ClockKind, start: datetime, amount: timedelta, excluded: Sequence[Interval]
) -> datetime:
    for begin, end in _running(line, clock, start, excluded):
        if amount <= end - begin:
            return begin + amount
        amount -= end - begin
    raise AssertionError("unreachable: a running clock never ends")


def due_time(
    cfg: RoutingConfig, line: Line, history: History, kind: Kind, now: datetime
) -> tuple[datetime, ClockKind]:
    """When `kind` is due under the severity rule, and the clock it fell on."""
    excluded = _merge(history.pauses, now) if kind == "solution" else ()
    # By time only: two changes at one instant keep the order they were made in.
    segments = sorted(history.severities, key=lambda change: change[0])
    if not segments or segments[0][0] > history.registered_at:
        raise ValueError("the first severity must be in force from registration")
    remaining = 1.0  # fraction of the budget still unspent
    for index, (start, severity) in enumerate(segments):
        start = max(start, history.registered_at).astimezone(UTC)
        target = cfg.sla[severity]
        budget: timedelta = getattr(target, kind)
        need = budget * remaining
        stop = segments[index + 1][0] if index + 1 < len(segments) else None
        if stop is not None:
            spent = _elapsed(line, target.clock, start, stop, excluded)
            if spent < need:
                remaining -= spent / budget
                continue
        due = _add(line, target.clock, start, need, excluded)
        # Whole seconds: a budget split by a severity change leaves float dust behind.
        rounded = due + timedelta(microseconds=500_000)
        return rounded.replace(microsecond=0), target.clock
    raise AssertionError("unreachable: the last segment always returns")


def _judge(
    due: datetime, done_at: datetime | None, now: datetime
) -> tuple[State, timedelta | None]:
    if done_at is not None:
        return ("met", None) if done_at <= due else ("breached", done_at - due)
    return ("breached", now - due) if now > due else ("pending", None)


def verdict(cfg: RoutingConfig, line: Line, history: History, now: datetime) -> Verdict:
    """Both deadlines of one incident; an open one is judged by its state at `now`."""
    parts: dict[str, Deadline] = {}
    for kind, done in (("attention", history.attended_at), ("solution", history.resolved_at)):
        due, clock = due_time(cfg, line, history, kind, now)  # type: ignore[arg-type]
        state, overrun = _judge(due, done, now)
        parts[kind] = Deadline(kind, due, done, state, overrun, clock)  # type: ignore[arg-type]
    return Verdict(parts["attention"], parts["solution"])
