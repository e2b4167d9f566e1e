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
from gateway.web.api import current_user, queue_contact, visible_incident
from gateway.web.views import incident_json, summary_json
from gateway.workspace.canned import canned_for
from gateway.workspace.desk import agent_timezone, mark_seen
from gateway.workspace.labels import category_name, routing_reason, zone_label
from gateway.workspace.queue_views import (
    DEFAULT_VIEW,
    SORTS,
    VIEW_BY_KEY,
    VIEWS,
    read_view,
    row_extras,
    view_counts,
)
from gateway.workspace.sessions import csrf_token, session_of
from gateway.workspace.timeline import event_text, timeline
from gateway.workspace.web import SECURITY_HEADERS, render, seconds_until
from routing.model import SEVERITIES

MANAGERS = ("supervisor", "admin")  # who sees the supervisor's pages

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


async def manager_page_user(request: web.Request, refusal: str) -> User:
    """The signed-in supervisor or admin; anyone else gets the Spanish 403 page saying
    `refusal` (the supervisor's pages: reports, quarantine, alarms, saved replies)."""
    user = await page_user(request)
    if user.role not in MANAGERS:
        page = render("error.html", status=403, message=refusal, **page_context(request, user))
        raise web.HTTPForbidden(text=page.text, content_type="text/html", headers=SECURITY_HEADERS)
    return user


def page_context(request: web.Request, user: User) -> dict[str, Any]:
    """What every page's layout needs: the user and the session's CSRF token."""
    gw = gw_of(request)
    session = session_of(request)
    token = csrf_token(gw.secret_key, session.sid) if session else ""
    return {"user": user, "csrf": token, "now_iso": gw.clock().isoformat()}


def zone_names(gw: Any) -> dict[str, str]:
    """'America/Costa_Rica' -> 'Costa Rica': each line's zone by its country's name."""
    countries = gw.texts.country_names("es")
    lines = gw.settings.routing.lines
    return {str(line.timezone): countries.get(code, line.name) for code, line in lines.items()}


def line_zone(gw: Any, country: str | None) -> str:
    """The IANA zone of a country line (the default line's when unknown)."""
    routing = gw.settings.routing
    return str(routing.lines.get(country or "", routing.default_line).timezone)


def _filters(request: web.Request, lines: tuple[str, ...]) -> dict[str, str]:
    allowed = {
        "country": lines,
        "channel": CHANNELS,
        "severity": SEVERITIES,
        "status": OPEN_STATUSES,
    }
    return {k: v for k, ok in allowed.items() if (v := request.query.get(k, "")) in ok}


def queue_view(
    row: Row, contact: Row | None, now: datetime, window: Any, extras: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One queue row with the countdowns the page shows."""
    out = summary_json(row, contact, now, window)
    sla = out["sla"]
    out.update(extras or {"unread": False, "turn": "agent", "since": row["registered_at"]})
    out["waiting_s"] = -(seconds_until(out["since"], now) or 0) if out["since"] else None
    out["attention_s"] = None if sla["attended_at"] else seconds_until(sla["attention_due"], now)
    out["solution_s"] = seconds_until(sla["solution_due"], now)
    return out


async def _queue_data(request: web.Request, user: User) -> dict[str, Any]:
    gw = gw_of(request)
    level = request.query.get("level", "").upper()
    level = level if level in user.levels else user.levels[0]
    filters = _filters(request, tuple(gw.settings.routing.lines))
    view = request.query.get("vista", DEFAULT_VIEW)
    view = view if view in VIEW_BY_KEY else DEFAULT_VIEW
    sort = request.query.get("orden", "urgencia")
    sort = sort if sort in SORTS else "urgencia"
    team = user.team if user.role in ("l2", "l3") else None
    now = gw.clock()
    window = gw.settings.routing.at_risk_window

    def read(tx: Tx) -> tuple[list[dict[str, Any]], dict[str, int]]:
        rows = read_view(
            tx,
            user=user,
            level=level,
            view=view,
            sort=sort,
            filters=filters,
            team_first=team,
            now=now,
            limit=QUEUE_LIMIT,
        )
        extras = row_extras(tx, user, rows)
        shown = [queue_view(r, queue_contact(r), now, window, extras[int(r["id"])]) for r in rows]
        return shown, view_counts(tx, user=user, level=level, filters=filters, now=now)

    rows, counts = await gw.store.read(read)
    return {
        "level": level,
        "filters": filters,
        "view": view,
        "views": VIEWS,
        "counts": counts,
        "sort": sort,
        "sorts": SORTS,
        "rows": rows,
        "unread": sum(1 for r in rows if r["unread"]),
        "lines": sorted(gw.settings.routing.lines),
        "countries": gw.texts.country_names("es"),
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
    """GET /agent/fragments/queue: the queue's table rows, for live refresh; the views'
    counts ride along in `X-Queue-Counts` (JSON) for the tabs."""
    user = await current_user(request)
    data = await _queue_data(request, user)
    resp = render("_queue_rows.html", **page_context(request, user), **data)
    resp.headers["X-Queue-Counts"] = json.dumps(data["counts"])
    return resp


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
    names = gw.settings.incidents.category_names
    countries = gw.texts.country_names("es")

    def seen(tx: Tx) -> str | None:
        """The agent looked at it now (the queue's unread mark); their time zone."""
        mark_seen(tx, user.id, int(visible_incident(tx, user, tracking)["id"]), now)
        return agent_timezone(tx, user.id)

    tz = await gw.store.transact(seen) or line_zone(gw, incident["country"])
    return {
        "incident": incident,
        "timeline": timeline(incident, countries, names, tz),
        "audit": [
            {**e, "text": event_text(e["kind"], e["detail"], countries, names, tz)}
            for e in incident["events"]
        ],
        "tz": tz,
        "tz_label": zone_label(tz, zone_names(gw), now),
        "country_name": countries.get(incident["country"], incident["country"]),
        "reasons": [routing_reason(r, countries) for r in incident["routing"].get("reasons", [])],
        "category_label": category_name(incident["category"], names),
        "category_names": {c: category_name(c, names) for c in gw.settings.incidents.categories},
        "canned": await canned_for(gw, incident),
        "mine": incident["claimed_by"] == user.name,
        "categories": gw.settings.incidents.categories,
        "severities": SEVERITIES,
        "teams": [{"name": t.name, "level": t.level} for t in teams.values()],
        "attention_s": None
        if incident["sla"]["attended_at"]
        else seconds_until(incident["sla"]["attention_due"], now),
        "solution_s": seconds_until(incident["sla"]["solution_due"], now),
    }


async def incident_page(
    request: web.Request,
    *,
    error: str | None = None,
    status: int = 200,
    action: str | None = None,
    draft: dict[str, Any] | None = None,
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
    # A refused reply keeps what the agent wrote.
    draft_reply = (draft or {}).get("text") if action == "reply" else None
    return render(
        "incident.html",
        status=status,
        **ctx,
        **data,
        error=error,
        done=done,
        action=action,
        draft_reply=draft_reply,
    )


async def timeline_fragment(request: web.Request) -> web.Response:
    """GET /agent/fragments/incidents/{tracking}: the conversation, for live refresh."""
    user = await current_user(request)
    data = await incident_data(request, user)
    return render("_timeline.html", **page_context(request, user), **data)


async def find_page(request: web.Request) -> web.Response:
    """GET /agent/buscar?q=...: a tracking number opens its incident (access checked there);
    anything else lists the incidents whose contact or text matches."""
    user = await page_user(request)
    query = (request.query.get("q") or request.query.get("tracking") or "").strip()
    tracking = parse_tracking(query.upper())
    if tracking is not None:
        raise web.HTTPSeeOther(f"/agent/incidents/{tracking}")
    if query.upper().startswith("CMW-"):  # meant as a number: never taken for another one
        message = "Ese no es un número de seguimiento válido (p. ej. CMW-0000042-7)."
        return render("error.html", status=400, user=user, message=message)
    from gateway.workspace.noc_pages import search_results  # the NOC pages build on these

    return await search_results(request, user, query)


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
