"""The agent pages (Spanish): the unified queue and one incident, plus the HTML fragments the
pages' small scripts re-fetch when a live notice arrives. Reads only; every lookup goes through
the caller's access (`visible_incident`), and customer text is only ever autoescaped.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import nh3
from aiohttp import web

from gateway.core.auth import User
from gateway.core.errors import NotFound
from gateway.core.model import CHANNELS, OPEN_STATUSES
from gateway.core.services import gw_of
from gateway.core.tracking import parse_tracking
from gateway.store.tx import Row, Tx
from gateway.web.api import current_user, queue_contact, queue_rows, visible_incident
from gateway.web.views import incident_json, summary_json
from gateway.workspace.sessions import csrf_token, session_of
from gateway.workspace.timeline import timeline
from gateway.workspace.web import render, seconds_until
from routing.model import SEVERITIES

QUEUE_LIMIT = 100
# Allow-list for HTML mail (checklist E17): no <img> (remote images are trackers), no style,
# no scripts or event handlers (ammonia never allows them), links only to web and mail URLs.
MAIL_TAGS = set(nh3.ALLOWED_TAGS) - {"img", "area", "map"}


async def page_user(request: web.Request) -> User:
    """The signed-in agent, or a redirect to the login page."""
    try:
        return await current_user(request)
    except web.HTTPUnauthorized:
        raise web.HTTPSeeOther("/agent/login") from None


def page_context(request: web.Request, user: User) -> dict[str, Any]:
    """What every page's layout needs: the user and the session's CSRF token."""
    gw = gw_of(request)
    session = session_of(request)
    token = csrf_token(gw.secret_key, session.sid) if session else ""
    return {"user": user, "csrf": token, "now_iso": gw.clock().isoformat()}


def _filters(request: web.Request, lines: tuple[str, ...]) -> dict[str, str]:
    allowed = {
        "country": lines,
        "channel": CHANNELS,
        "severity": SEVERITIES,
        "status": OPEN_STATUSES,
    }
    return {k: v for k, ok in allowed.items() if (v := request.query.get(k, "")) in ok}


def queue_view(row: Row, contact: Row | None, now: datetime, window: Any) -> dict[str, Any]:
    """One queue row with the countdowns the page shows."""
    out = summary_json(row, contact, now, window)
    sla = out["sla"]
    out["waiting_s"] = -(seconds_until(row["registered_at"], now) or 0)
    out["attention_s"] = None if sla["attended_at"] else seconds_until(sla["attention_due"], now)
    out["solution_s"] = seconds_until(sla["solution_due"], now)
    return out


async def _queue_data(request: web.Request, user: User) -> dict[str, Any]:
    gw = gw_of(request)
    level = request.query.get("level", "").upper()
    level = level if level in user.levels else user.levels[0]
    filters = _filters(request, tuple(gw.settings.routing.lines))
    team = user.team if user.role in ("l2", "l3") else None
    now = gw.clock()
    window = gw.settings.routing.at_risk_window

    def read(tx: Tx) -> list[dict[str, Any]]:
        rows = queue_rows(tx, level=level, team_first=team, filters=filters, limit=QUEUE_LIMIT)
        return [queue_view(r, queue_contact(r), now, window) for r in rows]

    return {
        "level": level,
        "filters": filters,
        "rows": await gw.store.read(read),
        "lines": sorted(gw.settings.routing.lines),
        "channels": CHANNELS,
        "severities": SEVERITIES,
        "statuses": OPEN_STATUSES,
        "at_risk_s": window.total_seconds(),
    }


async def queue_page(request: web.Request) -> web.Response:
    """GET /agent/: the unified live queue of the agent's level."""
    user = await page_user(request)
    data = await _queue_data(request, user)
    notice = {"escalate": "Incidente escalado: salió de esta cola."}.get(
        request.query.get("hecho", "")
    )
    return render("queue.html", **page_context(request, user), **data, notice=notice)


async def queue_fragment(request: web.Request) -> web.Response:
    """GET /agent/fragments/queue: the queue's table rows, for live refresh."""
    user = await current_user(request)
    data = await _queue_data(request, user)
    return render("_queue_rows.html", **page_context(request, user), **data)


def _clean_html(html: str) -> str:
    return nh3.clean(
        html,
        tags=MAIL_TAGS,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )


async def incident_data(request: web.Request, user: User) -> dict[str, Any]:
    """The incident (whole), its merged timeline and the choices its forms offer."""
    gw = gw_of(request)
    tracking = request.match_info["tracking"]
    now = gw.clock()
    window = gw.settings.routing.at_risk_window

    def read(tx: Tx) -> tuple[dict[str, Any], dict[int, str]]:
        row = visible_incident(tx, user, tracking)
        html = tx.all(
            "SELECT id, html FROM messages WHERE incident_id = ? AND html IS NOT NULL",
            (row["id"],),
        )
        return incident_json(tx, row, now, window), {h["id"]: h["html"] for h in html}

    incident, html = await gw.store.read(read)
    for message in incident["messages"]:
        raw = html.get(message["id"])
        message["html_clean"] = _clean_html(raw) if raw else None
    teams = gw.settings.incidents.teams
    return {
        "incident": incident,
        "timeline": timeline(incident),
        "categories": gw.settings.incidents.categories,
        "severities": SEVERITIES,
        "teams": [{"name": t.name, "level": t.level} for t in teams.values()],
        "attention_s": None
        if incident["sla"]["attended_at"]
        else seconds_until(incident["sla"]["attention_due"], now),
        "solution_s": seconds_until(incident["sla"]["solution_due"], now),
        "routing_json": json.dumps(incident["routing"], ensure_ascii=False),
    }


async def incident_page(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    """GET /agent/incidents/{tracking}: conversation, audit trail, SLA and actions."""
    user = await page_user(request)
    try:
        data = await incident_data(request, user)
    except NotFound:
        message = "Ese incidente no existe en sus colas."  # same answer as a wrong number
        return render("error.html", status=404, user=user, message=message)
    done = {
        "claim": "Incidente tomado.",
        "reply": "Respuesta en cola de envío al cliente.",
        "note": "Nota interna guardada.",
        "severity": "Severidad cambiada.",
        "escalate": "Incidente escalado.",
        "resolve": "Incidente resuelto.",
        "close": "Incidente cerrado.",
        "reopen": "Incidente reabierto.",
    }.get(request.query.get("hecho", ""))
    ctx = page_context(request, user)
    return render("incident.html", status=status, **ctx, **data, error=error, done=done)


async def timeline_fragment(request: web.Request) -> web.Response:
    """GET /agent/fragments/incidents/{tracking}: the conversation, for live refresh."""
    user = await current_user(request)
    data = await incident_data(request, user)
    return render("_timeline.html", **page_context(request, user), **data)


async def find_page(request: web.Request) -> web.Response:
    """GET /agent/buscar?tracking=...: open an incident by its number (access checked there)."""
    user = await page_user(request)
    tracking = parse_tracking(request.query.get("tracking", "").strip().upper())
    if tracking is None:
        message = "Ese no es un número de seguimiento válido (p. ej. CMW-0000042-7)."
        return render("error.html", status=400, user=user, message=message)
    raise web.HTTPSeeOther(f"/agent/incidents/{tracking}")


async def _to_queue(request: web.Request) -> web.Response:
    raise web.HTTPFound("/agent/")


def setup(app: web.Application) -> None:
    """Register the page routes."""
    app.router.add_get("/agent", _to_queue)
    app.router.add_get("/agent/", queue_page)
    app.router.add_get("/agent/fragments/queue", queue_fragment)
    app.router.add_get("/agent/buscar", find_page)
    app.router.add_get("/agent/incidents/{tracking}", incident_page)
    app.router.add_get("/agent/fragments/incidents/{tracking}", timeline_fragment)
