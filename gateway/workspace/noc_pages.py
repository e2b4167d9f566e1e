"""The NOC's agent pages (Spanish): search results, the event history, one incident's printable
record, and the alarm episodes (supervisors). Reads only, through the same queries and access
rules as the API (`gateway.web.forensics`); customer text is only ever autoescaped.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from gateway.core.auth import User
from gateway.core.errors import NotFound, Rejected
from gateway.core.model import CHANNELS
from gateway.core.noc import episode_json, list_episodes
from gateway.core.services import gw_of
from gateway.core.timeutil import iso, parse_iso
from gateway.store.tx import Tx
from gateway.web.api import queue_contact
from gateway.web.forensics import (
    event_filters,
    event_json,
    page_args,
    paged,
    read_record,
    search_events,
    search_incidents,
)
from gateway.web.views import summary_json
from gateway.workspace.pages import line_zone, manager_page_user, page_context, page_user
from gateway.workspace.timeline import EVENT_ES, event_text
from gateway.workspace.web import render

PAGE = 50


def _bad(request: web.Request, user: User, exc: Rejected) -> web.Response:
    return render("error.html", status=400, **page_context(request, user), message=str(exc))


async def search_results(request: web.Request, user: User, q: str) -> web.Response:
    """The workspace search box: incidents by name, email, phone or text, newest first."""
    gw = gw_of(request)
    if len(q) < 3:
        message = "Escriba al menos 3 caracteres: un número CMW-…, un nombre, correo o teléfono."
        return render("error.html", status=400, **page_context(request, user), message=message)
    try:
        before, _ = page_args(request.query)
    except Rejected as exc:
        return _bad(request, user, exc)
    now, window = gw.clock(), gw.settings.routing.at_risk_window
    rows = await gw.store.read(lambda tx: search_incidents(tx, q[:200], user.levels, before, PAGE))
    rows, cursor = paged(rows, PAGE)
    found = [summary_json(r, queue_contact(r), now, window) for r in rows]
    return render(
        "search.html",
        **page_context(request, user),
        q=q,
        found=found,
        cursor=cursor,
        first=not before,
    )


async def events_page(request: web.Request) -> web.Response:
    """GET /agent/eventos: the forensic search of the event history."""
    user = await page_user(request)
    gw = gw_of(request)
    form = {
        k: request.query.get(k, "")
        for k in ("tracking", "contact", "channel", "kind", "from", "to")
    }
    error = None
    shown: list[dict[str, Any]] = []
    cursor = None
    searched = any(form.values())
    if searched:
        try:
            filters = event_filters(request.query, tuple(gw.settings.routing.lines))
            before, _ = page_args(request.query)
        except Rejected as exc:
            error, filters = str(exc), None
        if filters is not None:
            rows = await gw.store.read(
                lambda tx: search_events(tx, filters, user.levels, before, PAGE)
            )
            rows, cursor = paged(rows, PAGE)
            countries = gw.texts.country_names("es")
            for row in rows:
                item = event_json(row)
                item["text"] = event_text(
                    item["kind"],
                    item["detail"] or {},
                    countries,
                    None,
                    line_zone(gw, row["country"]),
                )
                shown.append(item)
    return render(
        "events.html",
        status=400 if error else 200,
        **page_context(request, user),
        form=form,
        error=error,
        events=shown,
        cursor=cursor,
        searched=searched,
        channels=CHANNELS,
        kinds=sorted(EVENT_ES.items(), key=lambda kv: kv[1]),
    )


async def record_page(request: web.Request) -> web.Response:
    """GET /agent/incidents/{tracking}/expediente: the complete record, printable."""
    user = await page_user(request)
    gw = gw_of(request)
    try:
        record = await read_record(gw, user, request.match_info["tracking"])
    except NotFound:
        message = "Ese incidente no existe en sus colas."
        return render("error.html", status=404, **page_context(request, user), message=message)
    countries = gw.texts.country_names("es")
    tz = line_zone(gw, record["country"])
    for e in record["events"]:
        e["text"] = event_text(e["kind"], e["detail"], countries, None, tz)
        e["raw"] = orjson.dumps(e["detail"]).decode()
    return render("record.html", **page_context(request, user), r=record, tz=tz)


async def alarms_page(request: web.Request) -> web.Response:
    """GET /agent/alarmas: alarm episodes, open first (supervisors and admins)."""
    user = await manager_page_user(request, "Las alarmas del NOC son para supervisores.")
    gw = gw_of(request)
    try:
        before, _ = page_args(request.query)
    except Rejected as exc:
        return _bad(request, user, exc)

    def read(tx: Tx) -> tuple[list[Any], list[Any], list[Any]]:
        active = list_episodes(tx, open_only=True, before=None, limit=200)
        history = list_episodes(tx, open_only=False, before=before, limit=PAGE + 1)
        providers = tx.all(
            "SELECT name, max(last_ok_at) AS last_ok, max(last_error_at) AS last_error"
            " FROM alarm_signals WHERE name <> 'intake' GROUP BY name ORDER BY name"
        )
        return active, history, providers

    active, history, providers = await gw.store.read(read)
    history, cursor = paged(history, PAGE)
    return render(
        "alarms.html",
        **page_context(request, user),
        active=[episode_json(r) for r in active],
        history=[episode_json(r) for r in history],
        cursor=cursor,
        th=gw.settings.alarms,
        providers=[{k: iso(_at(v)) if k != "name" else v for k, v in p.items()} for p in providers],
    )


def _at(value: Any) -> Any:
    return parse_iso(value) if isinstance(value, str) else value


def setup(app: web.Application) -> None:
    """Register the NOC pages."""
    app.router.add_get("/agent/eventos", events_page)
    app.router.add_get("/agent/alarmas", alarms_page)
    app.router.add_get("/agent/incidents/{tracking}/expediente", record_page)
