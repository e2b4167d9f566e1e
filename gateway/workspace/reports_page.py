"""The supervisor's month (Spanish pages, supervisors and admins only): `/agent/reportes` with
compliance per line and per week against the target, breaches by severity and channel, what is
at risk now, every breach linked to its incident, a month picker and the CSV downloads; and
`/agent/reportes/penalizaciones`, the printable penalty sheet. Reads only; charts are SVG drawn
here (`charts`), the figures come from `gateway.web.reports` (the API's own report).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from gateway.core.auth import User
from gateway.core.errors import Rejected
from gateway.core.model import CHANNELS
from gateway.core.report import at_risk_now, first_day, shift_month, today_month
from gateway.core.services import gw_of
from gateway.web.reports import month_report, read_open
from gateway.workspace.charts import Bar, count_bars, percent_bars
from gateway.workspace.web import CHANNEL_ES, render
from routing.model import SEVERITIES

MONTHS_ES = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto",
             "septiembre", "octubre", "noviembre", "diciembre")  # fmt: skip
MISSED_ES = {
    "attention": "atención",
    "solution": "solución",
    "attention+solution": "atención y solución",
}
CLOCK_ES = {"24x7": "24x7", "business": "horario hábil"}


async def _manager(request: web.Request) -> tuple[User, dict[str, Any]]:
    from gateway.workspace.pages import manager_page_user, page_context

    refusal = "Los informes del mes son solo para supervisores y administradores."
    user = await manager_page_user(request, refusal)
    return user, page_context(request, user)


def month_label(month: str) -> str:
    """'2026-11' -> 'noviembre de 2026'."""
    day = first_day(month)
    return f"{MONTHS_ES[day.month - 1]} de {day.year}"


def _names(gw: Any) -> dict[str, str]:
    countries = gw.texts.country_names("es")
    return {
        code: countries.get(code, line.name) for code, line in gw.settings.routing.lines.items()
    }


def _query(month: str, zone: str | None, **more: str) -> str:
    params = {"mes": month, **({"zona": zone} if zone else {}), **more}
    return urlencode(params)


async def _load(request: web.Request) -> tuple[User, dict[str, Any], dict[str, Any] | None]:
    """The user, the page context and the month's report (None with an error for bad input)."""
    user, ctx = await _manager(request)
    gw = gw_of(request)
    default_zone = str(gw.settings.routing.default_line.timezone)
    month = request.query.get("mes") or today_month(gw.clock(), default_zone)
    zone = request.query.get("zona") or None
    line_zones = {code: str(line.timezone) for code, line in gw.settings.routing.lines.items()}
    ctx.update(month=month, zone=zone, names=_names(gw), line_zones=line_zones)
    try:
        report = await month_report(request, month, zone)
    except Rejected as exc:
        field = "mes (AAAA-MM)" if exc.field == "month" else "zona horaria"
        ctx["error"] = f"Revise el campo {field}."
        return user, ctx, None
    api = f"/api/v1/reports/sla?{urlencode({'month': month, **({'tz': zone} if zone else {})})}"
    ctx.update(
        report=report,
        label=month_label(month),
        prev=_query(shift_month(month, -1), zone),
        next=_query(shift_month(month, 1), zone),
        csv_breaches=f"{api}&format=csv",
        csv_penalties=f"{api}&format=csv&sheet=penalties",
        printable=f"/agent/reportes/penalizaciones?{_query(month, zone)}",
        zones=sorted(
            {(tz, ctx["names"][code]) for code, tz in line_zones.items()}, key=lambda z: z[1]
        ),
        missed_es=MISSED_ES,
        clock_es=CLOCK_ES,
    )
    return user, ctx, report


def _charts(report: dict[str, Any], names: dict[str, str], target: float) -> dict[str, Any]:
    line_bars = [
        Bar(f"{names.get(code, code)} ({b['incidents']})", b["compliance"])
        for code, b in report["by_line"].items()
    ]
    week_bars = [
        Bar(f"sem. del {k[8:10]}/{k[5:7]} ({b['incidents']})", b["compliance"])
        for k, b in report["by_week"].items()
    ]
    severity = [Bar(s, report["by_severity"].get(s, {}).get("breached", 0)) for s in SEVERITIES]
    channel = [
        Bar(CHANNEL_ES.get(c, c), report["by_channel"].get(c, {}).get("breached", 0))
        for c in CHANNELS
    ]
    return {
        "by_line": percent_bars("chart-lines", "Cumplimiento por línea", line_bars, target),
        "by_week": percent_bars("chart-weeks", "Cumplimiento por semana", week_bars, target),
        "by_severity": count_bars("chart-severity", "Incumplimientos por severidad", severity),
        "by_channel": count_bars("chart-channel", "Incumplimientos por canal", channel),
    }


async def reports_page(request: web.Request) -> web.Response:
    """GET /agent/reportes[?mes=YYYY-MM][&zona=Area/City]: the month at a glance."""
    _user, ctx, report = await _load(request)
    if report is None:
        return render("reportes.html", status=400, report=None, **ctx)
    gw = gw_of(request)
    now = gw.clock()
    rows = await gw.store.read(read_open)
    risk = at_risk_now(rows, now, gw.settings.routing.at_risk_window)
    charts = _charts(report, ctx["names"], report["target"])
    return render("reportes.html", charts=charts, at_risk=risk, **ctx)


async def penalties_page(request: web.Request) -> web.Response:
    """GET /agent/reportes/penalizaciones[?mes=..][&zona=..]: the printable penalty sheet."""
    _user, ctx, report = await _load(request)
    if report is None:
        return render("penalizaciones.html", status=400, report=None, **ctx)
    return render("penalizaciones.html", **ctx)


def setup(app: web.Application) -> None:
    """Register the supervisor's pages."""
    app.router.add_get("/agent/reportes", reports_page)
    app.router.add_get("/agent/reportes/penalizaciones", penalties_page)
