"""The supervisor's month, pure: every incident registered in it judged by `routing.compliance`,
grouped by line, severity, channel, level, team and week, with the penalty sheet.

Each line's month runs from its own local midnight unless one zone (`tz`) is asked for. Open
incidents are judged by their state at `now` (past a due time: breached; otherwise pending and
left out of the ratio), and the report says so. No I/O and no clock: rows and `now` come in.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.settings import Settings
from gateway.core.errors import Rejected
from gateway.core.model import OPEN_STATUSES
from gateway.core.penalty import penalty_sheet
from gateway.core.timeutil import iso, parse_iso
from routing.compliance import Deadline, History, Verdict, month_bounds, verdict

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
GROUPS = ("by_line", "by_severity", "by_channel", "by_level", "by_team", "by_week")
OPEN_NOTE = (
    "Open incidents are judged by their state at generated_at: one past a due time counts as "
    "breached, one not yet due is pending and left out of the compliance ratio."
)
NO_TEAM = "sin-equipo"


def parse_month(month: str) -> tuple[int, int]:
    """'2026-11' -> (2026, 11); Rejected (field month) for anything else."""
    match = _MONTH.match(month or "")
    if not match:
        raise Rejected("month must look like YYYY-MM", field="month")
    return int(match.group(1)), int(match.group(2))


def check_zone(tz: str | None) -> str | None:
    """An IANA zone name or None; Rejected (field tz) for an unknown one."""
    if not tz:
        return None
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise Rejected(
            "tz must be an IANA time zone such as America/Mexico_City", field="tz"
        ) from None
    return tz


def windows(settings: Settings, month: str, tz: str | None) -> dict[str, tuple[datetime, datetime]]:
    """Each line's month [start, end) in UTC: in its own zone, or all in `tz`."""
    year, mon = parse_month(month)
    lines = settings.routing.lines
    return {code: month_bounds(tz or line.timezone, year, mon) for code, line in lines.items()}


def history_of(row: Mapping[str, Any], severity_events: list[Mapping[str, Any]]) -> History:
    """An incident row and its `severity_changed` events (oldest first) as a History."""
    registered = parse_iso(row["registered_at"])
    assert registered is not None
    changes = [(parse_iso(e["at"]), json.loads(e["detail"] or "{}")) for e in severity_events]
    first = changes[0][1].get("from") if changes else None
    severities = [(registered, first or row["severity"])]
    severities += [(at, d["to"]) for at, d in changes if at is not None and d.get("to")]
    pauses = tuple((parse_iso(a), parse_iso(b)) for a, b in json.loads(row["pauses"] or "[]"))
    return History(
        registered_at=registered,
        severities=tuple(severities),
        pauses=pauses,  # type: ignore[arg-type]
        attended_at=parse_iso(row["attended_at"]),
        resolved_at=parse_iso(row["resolved_at"]),
    )


def _minutes(delta: timedelta | None) -> float | None:
    return None if delta is None else round(delta.total_seconds() / 60, 1)


def _deadline_json(d: Deadline) -> dict[str, Any]:
    return {
        "due": iso(d.due),
        "at": iso(d.done_at),
        "state": d.state,
        "overrun_minutes": _minutes(d.overrun),
        "clock": d.clock,
    }


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _week(registered: datetime, zone: str, start: datetime) -> str:
    """The week (from Monday, clipped to the month's first day) a registration falls in."""
    local = registered.astimezone(_zone(zone)).date()
    first = start.astimezone(_zone(zone)).date()
    monday = local - timedelta(days=local.weekday())
    return max(monday, first).isoformat()


def _incident(row: Mapping[str, Any], v: Verdict, history: History) -> dict[str, Any]:
    return {
        "tracking": row["tracking"],
        "line": row["country"],
        "channel": row["channel"],
        "severity": row["severity"],
        "severities": [[iso(at), s] for at, s in history.severities],
        "level": row["level"],
        "team": row["team"],
        "status": row["status"],
        "open": row["status"] in OPEN_STATUSES,
        "after_hours": bool(row["after_hours"]),
        "registered_at": row["registered_at"],
        "state": v.state,
        "attention": _deadline_json(v.attention),
        "solution": _deadline_json(v.solution),
    }


def _breach(item: dict[str, Any], subject: str | None) -> dict[str, Any]:
    a, s = item["attention"], item["solution"]
    return {
        **{k: item[k] for k in ("tracking", "line", "channel", "severity", "level", "team")},
        "status": item["status"],
        "open": item["open"],
        "attention_breached": a["state"] == "breached",
        "solution_breached": s["state"] == "breached",
        "attention_due": a["due"],
        "attended_at": a["at"],
        "attention_overrun_minutes": a["overrun_minutes"],
        "attention_clock": a["clock"],
        "solution_due": s["due"],
        "resolved_at": s["at"],
        "solution_overrun_minutes": s["overrun_minutes"],
        "solution_clock": s["clock"],
        "subject": subject,
    }


def _bucket() -> dict[str, int]:
    return {"incidents": 0, "met": 0, "pending": 0, "breached": 0, "open": 0}


def _finish(bucket: dict[str, int], target: float) -> dict[str, Any]:
    ratio = round(bucket["met"] / bucket["incidents"], 4) if bucket["incidents"] else None
    gap = None if ratio is None else round(max(0.0, target - ratio), 4)
    return {**bucket, "compliance": ratio, "gap": gap}


def build(
    settings: Settings,
    month: str,
    tz: str | None,
    rows: list[Mapping[str, Any]],
    severity_events: Mapping[int, list[Mapping[str, Any]]],
    now: datetime,
) -> dict[str, Any]:
    """The month's report: overall, the groups, every incident, the breaches, the penalties."""
    cfg, rule = settings.routing, settings.penalties
    bounds = windows(settings, month, check_zone(tz))
    overall = _bucket()
    groups: dict[str, dict[str, dict[str, int]]] = {g: defaultdict(_bucket) for g in GROUPS}
    incidents, breaches = [], []
    for row in rows:
        code = row["country"] if row["country"] in bounds else cfg.default_country
        start, end = bounds[code]
        registered = parse_iso(row["registered_at"])
        if registered is None or not start <= registered < end:
            continue
        line = cfg.lines[code]
        history = history_of(row, severity_events.get(row["id"], []))
        v = verdict(cfg, line, history, now)
        state = v.state
        item = _incident(row, v, history)
        incidents.append(item)
        keys = {
            "by_line": code,
            "by_severity": row["severity"],
            "by_channel": row["channel"],
            "by_level": row["level"],
            "by_team": row["team"] or NO_TEAM,
            "by_week": _week(registered, tz or line.timezone, start),
        }
        for bucket in (overall, *(groups[g][k] for g, k in keys.items())):
            bucket["open"] += int(item["open"])
            if state == "pending":
                bucket["pending"] += 1
                continue
            bucket["incidents"] += 1
            bucket["met"] += int(state == "met")
            bucket["breached"] += int(state == "breached")
        if state == "breached":
            breaches.append(_breach(item, row["subject"]))
    target = rule.target
    report: dict[str, Any] = {
        "month": month,
        "tz": tz or None,
        "target": target,
        "generated_at": iso(now),
        "open_judged_at_report_time": True,
        "note": OPEN_NOTE,
        "months": {c: {"start": iso(s), "end": iso(e)} for c, (s, e) in sorted(bounds.items())},
        "overall": _finish(overall, target),
        **{g: {k: _finish(b, target) for k, b in sorted(groups[g].items())} for g in GROUPS},
        "breaches": breaches,
        "incidents": incidents,
    }
    line_compliance = {c: b["compliance"] for c, b in report["by_line"].items()}
    names = {c: line.name for c, line in cfg.lines.items()}
    report["penalties"] = penalty_sheet(
        rule,
        [dict(b) for b in breaches],
        line_compliance,
        report["overall"]["compliance"],
        names,
    )
    return report


def query_window(bounds: Mapping[str, tuple[datetime, datetime]]) -> tuple[datetime, datetime]:
    """The UTC span covering every line's month (what the database is asked for)."""
    starts, ends = zip(*bounds.values(), strict=True)
    return min(starts), max(ends)


def today_month(now: datetime, zone: str) -> str:
    """'YYYY-MM' of `now` in `zone`."""
    local = now.astimezone(ZoneInfo(zone))
    return f"{local.year:04d}-{local.month:02d}"


def shift_month(month: str, delta: int) -> str:
    """The month `delta` months after `month` ('2026-01', -1 -> '2025-12')."""
    year, mon = parse_month(month)
    index = year * 12 + mon - 1 + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def first_day(month: str) -> date:
    """The first day of 'YYYY-MM'."""
    year, mon = parse_month(month)
    return date(year, mon, 1)


def at_risk_now(
    rows: list[Mapping[str, Any]], now: datetime, window: timedelta
) -> list[dict[str, Any]]:
    """Open incidents whose next deadline is due within `window` or already past, by due time."""
    out = []
    for row in rows:
        attended = parse_iso(row["attended_at"])
        kind = "attention" if attended is None else "solution"
        if kind == "solution" and row["status"] == "waiting_customer":
            continue  # the solution clock stands still while waiting on the customer
        due = parse_iso(row[f"{kind}_due"])
        if due is None or due - now > window:
            continue
        out.append(
            {
                "tracking": row["tracking"],
                "line": row["country"],
                "channel": row["channel"],
                "severity": row["severity"],
                "level": row["level"],
                "status": row["status"],
                "kind": kind,
                "due": iso(due),
                "overdue": due <= now,
                "seconds_left": (due - now).total_seconds(),
            }
        )
    return sorted(out, key=lambda r: r["due"])
