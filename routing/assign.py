"""Queue assignment of a new contact: level, after-hours state, severity and SLA due times.

The rules are a table of data (`RULES`) walked in order, so that adding a rule (e.g. a
dedicated queue) means adding a row rather than another branch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from routing.model import Level, Line, RoutingConfig, SlaTarget
from routing.resolve import LineDecision
from routing.schedule import is_open, local_time, next_opening
from routing.severity import parse_severity
from routing.sla import SlaDue, target_due


@dataclass(frozen=True)
class Assignment:
    """Where a new contact is queued, when its line opens, its severity and SLA due times."""

    level: str
    line: Line
    country: str
    after_hours: bool
    opens_at: datetime | None  # next opening (UTC) when after hours, else None
    severity: str
    sla: SlaDue
    reasons: tuple[str, ...]
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Facts:
    """What the rules may look at; `text` holds the preformatted values their texts use."""

    after_hours: bool
    severity_given: bool
    clock: str
    text: dict[str, str]


@dataclass(frozen=True)
class Rule:
    """When `applies`, the contact goes to `level` (if set), gets `flag` (if set) and `reason`."""

    name: str
    applies: Callable[[Facts], bool]
    reason: str  # str.format template over Facts.text
    level: Level | None = None
    flag: str | None = None


RULES: tuple[Rule, ...] = (
    # The seed: every contact enters through the Centro de Atención (first level); L2 and L3
    # only receive escalations made by agents.
    Rule("first_level", lambda f: True, "new contact → L1 of line {line}", level="L1"),
    Rule(
        "after_hours",
        lambda f: f.after_hours,
        "line {line} closed at arrival; opens {opens_local}",
        flag="after_hours",
    ),
    Rule(
        "after_hours_24x7",
        lambda f: f.after_hours and f.clock == "24x7",
        "{severity} runs on a 24x7 clock: SLA counts from arrival",
    ),
    Rule("severity_given", lambda f: f.severity_given, "severity {severity}"),
    Rule("severity_default", lambda f: not f.severity_given, "severity {severity} (default)"),
)


def _format_local(line: Line, moment: datetime) -> str:
    return f"{local_time(line, moment):%Y-%m-%d %H:%M} {line.timezone}"


@lru_cache(maxsize=1024)
def _arrival(line: Line, target: SlaTarget, now: datetime) -> tuple[bool, datetime | None, SlaDue]:
    """After-hours state, next opening and SLA due times of an arrival on `line` at `now`.

    The schedule walk is the costly part of an assignment and depends only on these three
    values; the intake stamps every contact of one event-loop turn with the same `now`, so a
    burst of contacts on a line computes it once.
    """
    after_hours = not is_open(line, now)
    opens_at = next_opening(line, now) if after_hours else None
    return after_hours, opens_at, target_due(line, target, now)


def assign(
    cfg: RoutingConfig, decision: LineDecision, now: datetime, severity: str | None = None
) -> Assignment:
    """Return the queue assignment of a contact arriving at `now` on the decided line."""
    line = decision.line
    chosen = parse_severity(severity) if severity is not None else cfg.default_severity
    if chosen not in cfg.sla:
        raise ValueError(f"no SLA target for severity '{chosen}'")
    after_hours, opens_at, due = _arrival(line, cfg.sla[chosen], now)
    facts = Facts(
        after_hours=after_hours,
        severity_given=severity is not None,
        clock=cfg.sla[chosen].clock,
        text={
            "line": line.code,
            "severity": chosen,
            "opens_local": _format_local(line, opens_at) if opens_at else "",
        },
    )
    level: str | None = None
    reasons = list(decision.reasons)
    flags = list(decision.flags)
    for rule in RULES:
        if not rule.applies(facts):
            continue
        if rule.level is not None and level is None:
            level = rule.level
        if rule.flag is not None and rule.flag not in flags:
            flags.append(rule.flag)
        reasons.append(rule.reason.format(**facts.text))
    return Assignment(
        level=level or "L1",
        line=line,
        country=decision.country,
        after_hours=after_hours,
        opens_at=opens_at,
        severity=chosen,
        sla=due,
        reasons=tuple(reasons),
        flags=tuple(flags),
    )
