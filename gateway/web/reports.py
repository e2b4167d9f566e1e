"""Monthly SLA compliance and the penalty sheet on the API (supervisors and admins).

`GET /api/v1/reports/sla?month=YYYY-MM[&tz=Area/City][&format=csv][&sheet=penalties]`: the
arithmetic is `gateway.core.report` (pure); this module reads the month's incidents and their
severity changes, and writes JSON or CSV. CSV cells a spreadsheet would run as a formula are
neutralised (OWASP "CSV Injection": a leading =, +, -, @, tab or carriage return).
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections import defaultdict
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.core.auth import User
from gateway.core.errors import Forbidden, Rejected
from gateway.core.feedback import csat_summary
from gateway.core.report import build, check_zone, query_window, windows
from gateway.core.timeutil import iso
from gateway.store.tx import Row, Tx

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
BREACH_COLUMNS = [
    "tracking",
    "line",
    "channel",
    "severity",
    "level",
    "team",
    "status",
    "open",
    "attention_breached",
    "solution_breached",
    "attention_due",
    "attended_at",
    "attention_overrun_minutes",
    "attention_clock",
    "solution_due",
    "resolved_at",
    "solution_overrun_minutes",
    "solution_clock",
    "subject",
]
PENALTY_COLUMNS = [
    "line",
    "line_name",
    "tracking",
    "severity",
    "missed",
    "attention_due",
    "attended_at",
    "attention_overrun_minutes",
    "solution_due",
    "resolved_at",
    "solution_overrun_minutes",
    "percent",
]


def safe_cell(value: Any) -> str:
    """A CSV cell that spreadsheets will not evaluate as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv(columns: list[str], rows: list[list[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([safe_cell(v) for v in row])
    return out.getvalue()


def breaches_csv(report: dict[str, Any]) -> str:
    """The breaches as CSV (every cell quoted and formula-safe)."""
    return _csv(BREACH_COLUMNS, [[b[c] for c in BREACH_COLUMNS] for b in report["breaches"]])


def missed(item: dict[str, Any]) -> str:
    """Which times an incident missed: 'attention', 'solution' or 'attention+solution'."""
    kinds = [k for k in ("attention", "solution") if item[f"{k}_breached"]]
    return "+".join(kinds)


def penalties_csv(report: dict[str, Any]) -> str:
    """The penalty sheet as CSV: one row per breached incident, then each line's discount."""
    rows: list[list[Any]] = []
    sheet = report["penalties"]
    for code, entry in sheet["by_line"].items():
        for item in entry["incidents"]:
            values = {**item, "line_name": entry["name"], "missed": missed(item)}
            rows.append([values[c] for c in PENALTY_COLUMNS])
        total = [code, entry["name"], "TOTAL", "", f"{entry['breached']} incidents"]
        rows.append([*total, "", "", "", "", "", "", entry["discount_percent"]])
    general = sheet["general"]
    head = ["*", "general", "COMPLIANCE", general["compliance"], f"{general['gap_points']} points"]
    rows.append([*head, "", "", "", "", "", "", general["discount_percent"]])
    return _csv(PENALTY_COLUMNS, rows)


def read_month(tx: Tx, start: datetime, end: datetime) -> tuple[list[Row], dict[int, list[Row]]]:
    """Incidents registered in [start, end) and their severity changes, oldest first."""
    rows = tx.all(
        "SELECT * FROM incidents WHERE registered_at >= ? AND registered_at < ?"
        " ORDER BY registered_at, id",
        (iso(start), iso(end)),
    )
    events: dict[int, list[Row]] = defaultdict(list)
    for event in tx.all(
        "SELECT e.incident_id, e.at, e.detail FROM events e JOIN incidents i"
        " ON i.id = e.incident_id WHERE i.registered_at >= ? AND i.registered_at < ?"
        " AND e.kind = 'severity_changed' ORDER BY e.incident_id, e.id",
        (iso(start), iso(end)),
    ):
        events[event["incident_id"]].append(event)
    return rows, events


def require_supervisor(user: User) -> None:
    """Reports are for supervisors and admins."""
    if user.role not in ("supervisor", "admin"):
        raise Forbidden("the SLA report is for supervisors")


async def month_report(request: web.Request, month: str, tz: str | None) -> dict[str, Any]:
    """The report of `month` (each line's own zone unless `tz`), judged at the gateway's now."""
    from gateway.core.services import gw_of

    gw = gw_of(request)
    bounds = windows(gw.settings, month, check_zone(tz))
    start, end = query_window(bounds)
    rows, events = await gw.store.read(lambda tx: read_month(tx, start, end))
    # A month of thousands of incidents is about a second of arithmetic: off the event loop.
    report = await asyncio.to_thread(build, gw.settings, month, tz, rows, events, gw.clock())
    counted = {i["tracking"] for i in report["incidents"]}
    # The customers' 1-5 answers to resolution notices of the month's incidents.
    report["csat"] = csat_summary([r for r in rows if r["tracking"] in counted])
    return report


def csv_response(text: str, name: str) -> web.Response:
    """A CSV download."""
    return web.Response(
        text=text,
        content_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


async def sla_report(request: web.Request) -> web.Response:
    """GET /api/v1/reports/sla?month=YYYY-MM[&tz=..][&format=csv][&sheet=penalties]."""
    from gateway.web.api import current_user

    require_supervisor(await current_user(request))
    month = request.query.get("month", "")
    tz = request.query.get("tz") or None
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv"):
        raise Rejected("format must be json or csv", field="format")
    sheet = request.query.get("sheet", "breaches")
    if sheet not in ("breaches", "penalties"):
        raise Rejected("sheet must be breaches or penalties", field="sheet")
    report = await month_report(request, month, tz)
    if fmt == "csv":
        if sheet == "penalties":
            return csv_response(penalties_csv(report), f"penalizaciones-{month}.csv")
        return csv_response(breaches_csv(report), f"sla-{month}.csv")
    return web.json_response(report)


def setup(app: web.Application) -> None:
    """Register the report route."""
    app.router.add_get("/api/v1/reports/sla", sla_report)


def read_open(tx: Tx, limit: int = 500) -> list[Row]:
    """Open incidents, the most urgent first (the queue's partial index)."""
    return tx.all(
        "SELECT tracking, country, channel, severity, level, status, attention_due,"
        " solution_due, attended_at FROM incidents"
        " WHERE status IN ('new', 'in_progress', 'waiting_customer')"
        " ORDER BY urgent_due LIMIT ?",
        (limit,),
    )
