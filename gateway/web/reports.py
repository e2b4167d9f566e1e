"""Monthly SLA compliance (target ≥ 98 %): which incidents met both attention and solution.

An incident registered in the month meets its SLA when it was attended by its attention due time
and resolved by its solution due time (pauses already extend the stored solution due). One still
open and not yet due is `pending` and left out of the ratio; one past a due time counts as missed.
CSV cells that a spreadsheet would run as a formula are neutralised (OWASP CSV injection).
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from gateway.core.errors import Forbidden, Rejected
from gateway.core.feedback import csat_summary
from gateway.core.timeutil import iso, parse_iso
from gateway.store.tx import Row, Tx

TARGET = 0.98
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """'2026-11' -> [2026-11-01, 2026-12-01) in UTC; Rejected for anything else."""
    match = _MONTH.match(month or "")
    if not match:
        raise Rejected("month must look like YYYY-MM", field="month")
    year, mon = int(match.group(1)), int(match.group(2))
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return start, end


def outcome(row: Row, now: datetime) -> dict[str, Any]:
    """Whether one incident met attention and solution, or is still pending."""
    attention_due = parse_iso(row["attention_due"])
    solution_due = parse_iso(row["solution_due"])
    attended = parse_iso(row["attended_at"])
    resolved = parse_iso(row["resolved_at"])
    assert attention_due and solution_due
    paused = row["status"] == "waiting_customer"
    attention_met = attended is not None and attended <= attention_due
    attention_missed = (attended or now) > attention_due
    solution_met = resolved is not None and resolved <= solution_due
    solution_missed = not paused and (resolved or now) > solution_due
    if resolved is not None:
        solution_missed = resolved > solution_due
    pending = not (attention_missed or solution_missed) and not (attention_met and solution_met)
    return {
        "met": attention_met and solution_met,
        "pending": pending,
        "attention_breached": attention_missed,
        "solution_breached": solution_missed,
    }


def _ratio(met: int, total: int) -> float | None:
    return round(met / total, 4) if total else None


def compliance(rows: list[Row], month: str, now: datetime) -> dict[str, Any]:
    """The report: overall and by line, severity, channel and level, plus the breaches."""
    groups: dict[str, dict[str, dict[str, int]]] = {
        k: defaultdict(lambda: {"incidents": 0, "met": 0, "pending": 0})
        for k in ("by_line", "by_severity", "by_channel", "by_level")
    }
    overall = {"incidents": 0, "met": 0, "pending": 0}
    breaches = []
    for row in rows:
        result = outcome(row, now)
        keys = {
            "by_line": row["country"],
            "by_severity": row["severity"],
            "by_channel": row["channel"],
            "by_level": row["level"],
        }
        for bucket in (overall, *(groups[g][k] for g, k in keys.items())):
            if result["pending"]:
                bucket["pending"] += 1
                continue
            bucket["incidents"] += 1
            bucket["met"] += int(result["met"])
        if result["attention_breached"] or result["solution_breached"]:
            breaches.append(
                {
                    "tracking": row["tracking"],
                    "line": row["country"],
                    "channel": row["channel"],
                    "severity": row["severity"],
                    "level": row["level"],
                    "status": row["status"],
                    "attention_breached": result["attention_breached"],
                    "solution_breached": result["solution_breached"],
                    "attention_due": row["attention_due"],
                    "attended_at": row["attended_at"],
                    "solution_due": row["solution_due"],
                    "resolved_at": row["resolved_at"],
                    "subject": row["subject"],
                }
            )

    def finish(bucket: dict[str, int]) -> dict[str, Any]:
        return {**bucket, "compliance": _ratio(bucket["met"], bucket["incidents"])}

    return {
        "month": month,
        "target": TARGET,
        "overall": finish(overall),
        **{g: {k: finish(v) for k, v in sorted(groups[g].items())} for g in groups},
        "breaches": breaches,
    }


def safe_cell(value: Any) -> str:
    """A CSV cell that spreadsheets will not evaluate as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def breaches_csv(report: dict[str, Any]) -> str:
    """The breaches as CSV (every cell quoted and formula-safe)."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    columns = [
        "tracking",
        "line",
        "channel",
        "severity",
        "level",
        "status",
        "attention_breached",
        "solution_breached",
        "attention_due",
        "attended_at",
        "solution_due",
        "resolved_at",
        "subject",
    ]
    writer.writerow(columns)
    for row in report["breaches"]:
        writer.writerow([safe_cell(row[c]) for c in columns])
    return out.getvalue()


async def sla_report(request: web.Request) -> web.Response:
    """GET /api/v1/reports/sla?month=YYYY-MM[&format=csv] (supervisors and admins)."""
    from gateway.core.services import gw_of
    from gateway.web.api import current_user

    user = await current_user(request)
    if user.role not in ("supervisor", "admin"):
        raise Forbidden("the SLA report is for supervisors")
    month = request.query.get("month", "")
    start, end = month_bounds(month)
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise Rejected("format must be json or csv", field="format")
    gw = gw_of(request)
    rows = await gw.store.read(lambda tx: read_month(tx, start, end))
    report = compliance(rows, month, gw.clock())
    report["csat"] = csat_summary(rows)  # the customers' 1-5 answers to resolution notices
    if fmt == "csv":
        return web.Response(
            text=breaches_csv(report),
            content_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="sla-{month}.csv"'},
        )
    return web.json_response(report)


def setup(app: web.Application) -> None:
    """Register the report route."""
    app.router.add_get("/api/v1/reports/sla", sla_report)


def read_month(tx: Tx, start: datetime, end: datetime) -> list[Row]:
    """Incidents registered in [start, end)."""
    return tx.all(
        "SELECT * FROM incidents WHERE registered_at >= ? AND registered_at < ?"
        " ORDER BY registered_at",
        (iso(start), iso(end)),
    )
