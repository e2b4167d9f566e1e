"""The incident life cycle as pure functions: state in, new state and audit events out.

Statuses (CONTRACT): new → in_progress ⇄ waiting_customer → resolved → closed; reopen brings a
resolved or closed incident back. Every function raises `Conflict` for a transition the current
state does not allow and never touches storage or the clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from gateway.core.errors import Conflict, Rejected
from gateway.core.model import OPEN_STATUSES
from routing.model import LEVELS, SEVERITIES


@dataclass(frozen=True)
class Event:
    """One audit-trail entry: who did what, when."""

    at: datetime
    actor: str
    kind: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class IncidentState:
    """The mutable part of an incident that the life cycle reads and writes."""

    status: str
    level: str
    team: str | None
    severity: str
    claimed_by: str | None = None
    attended_at: datetime | None = None
    resolved_at: datetime | None = None
    category: str | None = None
    resolution: str | None = None
    pauses: tuple[tuple[datetime, datetime | None], ...] = ()

    @property
    def is_open(self) -> bool:
        """New, in progress or waiting for the customer."""
        return self.status in OPEN_STATUSES

    @property
    def paused(self) -> bool:
        """The solution clock is paused (waiting for the customer)."""
        return bool(self.pauses) and self.pauses[-1][1] is None


Change = tuple[IncidentState, list[Event]]


def _require_open(state: IncidentState, action: str) -> None:
    if not state.is_open:
        raise Conflict(f"cannot {action} an incident that is {state.status}")


def _end_pause(state: IncidentState, now: datetime) -> IncidentState:
    if not state.paused:
        return state
    start, _ = state.pauses[-1]
    return replace(state, pauses=(*state.pauses[:-1], (start, now)))


def claim(state: IncidentState, actor: str, now: datetime) -> Change:
    """An agent takes the incident (initial diagnosis begins)."""
    _require_open(state, "claim")
    new = replace(
        state, claimed_by=actor, status="in_progress" if state.status == "new" else state.status
    )
    return new, [Event(now, actor, "claimed", {"phase": "diagnostico-inicial"})]


def agent_reply(state: IncidentState, actor: str, now: datetime, *, wait: bool = False) -> Change:
    """An agent answers the customer; the first answer meets attention; `wait` pauses solution."""
    _require_open(state, "reply to")
    new = _end_pause(state, now)
    new = replace(new, status="waiting_customer" if wait else "in_progress")
    if new.claimed_by is None:
        new = replace(new, claimed_by=actor)
    events = [Event(now, actor, "replied", {"wait_for_customer": wait})]
    if state.attended_at is None:
        new = replace(new, attended_at=now)
        events.append(Event(now, actor, "attended", {}))
    if wait:
        new = replace(new, pauses=(*new.pauses, (now, None)))
        events.append(Event(now, actor, "solution_clock_paused", {}))
    return new, events


def customer_message(state: IncidentState, now: datetime) -> Change:
    """A customer writes again: a waiting or resolved incident goes back to in_progress."""
    if state.status not in ("waiting_customer", "resolved"):
        return state, []
    new = _end_pause(state, now)
    detail = {"from": state.status}
    new = replace(
        new,
        status="in_progress",
        resolved_at=None if state.status == "resolved" else new.resolved_at,
    )
    return new, [Event(now, "customer", "resumed_by_customer", detail)]


def change_severity(
    state: IncidentState, actor: str, now: datetime, severity: str, reason: str | None
) -> Change:
    """Change severity; the caller recomputes the SLA clocks from registration."""
    if state.status == "closed":
        raise Conflict("cannot change the severity of a closed incident")
    if severity not in SEVERITIES:
        raise Rejected(f"severity must be one of {', '.join(SEVERITIES)}", field="severity")
    if severity == state.severity:
        raise Conflict(f"severity is already {severity}")
    detail = {"from": state.severity, "to": severity, "reason": reason}
    return replace(state, severity=severity), [Event(now, actor, "severity_changed", detail)]


def escalate(
    state: IncidentState, actor: str, now: datetime, level: str, team: str | None, reason: str
) -> Change:
    """Move the incident up to L2 or L3 (escalation phase); SLA clocks are kept."""
    _require_open(state, "escalate")
    if level not in LEVELS:
        raise Rejected("level must be L1, L2 or L3", field="level")
    if LEVELS.index(level) <= LEVELS.index(state.level):
        raise Conflict(f"cannot escalate from {state.level} to {level}")
    if not reason or not reason.strip():
        raise Rejected("a reason is required to escalate", field="reason")
    new = replace(
        state,
        level=level,
        team=team,
        claimed_by=None,
        status="in_progress" if state.status == "new" else state.status,
    )
    detail = {
        "from": state.level,
        "to": level,
        "team": team,
        "reason": reason,
        "phase": "escalamiento",
    }
    return new, [Event(now, actor, "escalated", detail)]


def resolve(
    state: IncidentState,
    actor: str,
    now: datetime,
    category: str,
    resolution: str,
    categories: tuple[str, ...],
) -> Change:
    """Resolution and recovery: a configured category and a resolution text are required."""
    _require_open(state, "resolve")
    if category not in categories:
        raise Rejected(f"category must be one of: {', '.join(categories)}", field="category")
    if not resolution or not resolution.strip():
        raise Rejected("a resolution text is required", field="resolution")
    new = _end_pause(state, now)
    new = replace(
        new, status="resolved", resolved_at=now, category=category, resolution=resolution.strip()
    )
    detail = {"category": category, "phase": "resolucion-y-recuperacion"}
    return new, [Event(now, actor, "resolved", detail)]


def close(state: IncidentState, actor: str, now: datetime) -> Change:
    """Closure: only a resolved, categorized incident can be closed."""
    if state.status != "resolved":
        raise Conflict(f"only a resolved incident can be closed; this one is {state.status}")
    if not state.category:
        raise Conflict("the incident has no closure category")
    return replace(state, status="closed"), [Event(now, actor, "closed", {"phase": "cierre"})]


def reopen(state: IncidentState, actor: str, now: datetime, reason: str | None = None) -> Change:
    """Reopen a resolved or closed incident."""
    if state.status not in ("resolved", "closed"):
        raise Conflict(
            f"only a resolved or closed incident can be reopened; this one is {state.status}"
        )
    new = replace(state, status="in_progress", resolved_at=None)
    return new, [Event(now, actor, "reopened", {"from": state.status, "reason": reason})]


def urgent_due(
    state: IncidentState, attention_due: datetime | None, solution_due: datetime | None
) -> datetime | None:
    """The deadline that orders the queue: attention until attended, then solution."""
    if not state.is_open:
        return None
    if state.attended_at is None and attention_due is not None:
        return attention_due
    return solution_due
