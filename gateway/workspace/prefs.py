"""The agent's preferences page (their time zone) and the composer's typing signal.

GET/POST /agent/preferencias: the zone the agent reads times in — by default each incident's
line's own zone. POST /agent/typing/{tracking} (CSRF header): while an agent writes to a web
chat customer, the visitor's chat shows "<agent> is typing"; the signal is a `typing` chat frame
handed to the chat sockets through the bus (and the store's broadcast, for other instances).
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.core.replies import reply_recipient
from gateway.core.services import gw_of
from gateway.store.tx import Tx
from gateway.web.api import visible_incident
from gateway.workspace.api import acting_user
from gateway.workspace.desk import agent_timezone, set_agent_timezone
from gateway.workspace.labels import offset_label, zone
from gateway.workspace.sessions import check_csrf
from gateway.workspace.web import render, same_origin

EXTRA_ZONES = ("UTC",)


def zone_choices(gw: Any) -> list[tuple[str, str]]:
    """(zone, label) for each line's zone, then UTC."""
    from gateway.workspace.pages import zone_names

    now = gw.clock()
    names = zone_names(gw)
    choices = sorted(names.items(), key=lambda item: item[1])
    out = [(tz, f"Hora de {name} ({offset_label(tz, now)})") for tz, name in choices]
    return out + [(tz, f"{tz} (UTC)") for tz in EXTRA_ZONES]


async def prefs_page(request: web.Request) -> web.Response:
    """GET or POST /agent/preferencias."""
    from gateway.workspace.pages import page_context, page_user

    user = await page_user(request)
    gw = gw_of(request)
    choices = zone_choices(gw)
    error = None
    done = False
    if request.method == "POST":
        form = await request.post()
        csrf = form.get("csrf")
        chosen = str(form.get("timezone") or "")
        if not same_origin(request, gw.settings.public_url) or not check_csrf(
            request, csrf if isinstance(csrf, str) else None
        ):
            error = "El formulario caducó; recargue la página."
        elif chosen and (zone(chosen) is None or chosen not in dict(choices)):
            error = "Elija una zona horaria de la lista."
        else:
            now = gw.clock()
            await gw.store.transact(lambda tx: set_agent_timezone(tx, user.id, chosen or None, now))
            done = True
    current = await gw.store.read(lambda tx: agent_timezone(tx, user.id))
    return render(
        "preferences.html",
        status=403 if error and "caducó" in error else (400 if error else 200),
        **page_context(request, user),
        choices=choices,
        current=current or "",
        error=error,
        done=done,
    )


async def typing(request: web.Request) -> web.Response:
    """POST /agent/typing/{tracking}: tell a web chat customer the agent is writing."""
    user = await acting_user(request)
    gw = gw_of(request)
    tracking = request.match_info["tracking"]

    def visitor_of(tx: Tx) -> str | None:
        row = visible_incident(tx, user, tracking)
        if row["channel"] != "webchat":
            return None
        return reply_recipient("webchat", tx.contact(row["contact_id"]) or {})

    visitor = await gw.store.read(visitor_of)
    if visitor:
        frame = {"type": "typing", "from": "agent", "author": user.name, "tracking": tracking}
        notice = {"type": "chat", "visitor": visitor, "data": json.dumps(frame)}
        gw.bus.publish(notice)  # this instance's sockets
        await gw.store.broadcast(notice)  # the other instances' (PostgreSQL)
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    """Register the preferences page and the typing signal."""
    app.router.add_get("/agent/preferencias", prefs_page)
    app.router.add_post("/agent/preferencias", prefs_page)
    app.router.add_post("/agent/typing/{tracking}", typing)
