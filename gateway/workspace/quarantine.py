"""The quarantine for supervisors: `GET /api/v1/quarantine`, release and discard (API and the
Spanish page `/agent/cuarentena`).

Releasing hands the kept item to the intake as a normal contact (a duplicate-safe call: the
item's receipt makes a second release answer the same incident), then marks it released with
the tracking number it became; discarding only marks it. Supervisors and admins only.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.core import quarantine
from gateway.core.auth import User
from gateway.core.errors import Forbidden, NotFound
from gateway.core.model import inbound_from_json
from gateway.core.services import Gateway, gw_of
from gateway.web.api import current_user
from gateway.workspace.api import acting_user
from gateway.workspace.sessions import check_csrf
from gateway.workspace.web import render, same_origin

MANAGERS = ("supervisor", "admin")
CHANNELS = {
    "email": "Correo",
    "whatsapp": "WhatsApp",
    "voice": "Teléfono",
    "telegram": "Telegram",
    "webchat": "Chat web",
    "click2call": "Click2Call",
}


def _manager(user: User) -> User:
    if user.role not in MANAGERS:
        raise Forbidden("the quarantine is for supervisors")
    return user


async def release(gw: Gateway, item_id: int, who: str) -> str:
    """Process a held item as a normal contact; its tracking number."""
    row = await gw.store.read(
        lambda tx: tx.one("SELECT item FROM quarantine WHERE id = ? AND state = 'held'", (item_id,))
    )
    if row is None:
        raise NotFound(f"no held quarantine item {item_id}")
    msg = inbound_from_json(row["item"])
    receipt = await gw.intake.accept(msg)
    now = gw.clock()

    def mark(tx: Any) -> None:
        quarantine.take(tx, item_id, quarantine.RELEASED, who, now)
        quarantine.set_tracking(tx, item_id, receipt.tracking)

    await gw.store.transact(mark)
    gw.after_commit({"type": "incident", "event": "message", "tracking": receipt.tracking})
    return receipt.tracking


async def discard(gw: Gateway, item_id: int, who: str) -> None:
    """Drop a held item (kept in the table as discarded, for the record)."""
    now = gw.clock()
    taken = await gw.store.transact(
        lambda tx: quarantine.take(tx, item_id, quarantine.DISCARDED, who, now)
    )
    if taken is None:
        raise NotFound(f"no held quarantine item {item_id}")


async def api_list(request: web.Request) -> web.Response:
    """GET /api/v1/quarantine → {"items": [...]} (supervisors)."""
    _manager(await current_user(request))
    items = await gw_of(request).store.read(quarantine.list_held)
    return web.json_response({"items": items})


def _item_id(request: web.Request) -> int:
    text = request.match_info["id"]
    if not text.isdigit() or len(text) > 18:
        raise NotFound(f"no quarantine item {text!r}")
    return int(text)


async def api_release(request: web.Request) -> web.Response:
    """POST /api/v1/quarantine/{id}/release → {"id", "state": "released", "tracking"}."""
    user = _manager(await acting_user(request))
    item_id = _item_id(request)
    tracking = await release(gw_of(request), item_id, user.name)
    return web.json_response({"id": item_id, "state": "released", "tracking": tracking})


async def api_discard(request: web.Request) -> web.Response:
    """POST /api/v1/quarantine/{id}/discard → {"id", "state": "discarded"}."""
    user = _manager(await acting_user(request))
    item_id = _item_id(request)
    await discard(gw_of(request), item_id, user.name)
    return web.json_response({"id": item_id, "state": "discarded"})


async def _page_manager(request: web.Request) -> User:
    from gateway.workspace.pages import manager_page_user

    return await manager_page_user(
        request, "Solo supervisores y administradores ven la cuarentena."
    )


async def page(
    request: web.Request, *, error: str | None = None, status: int = 200
) -> web.Response:
    """GET /agent/cuarentena: what is held, with its reason, and the two buttons."""
    from gateway.workspace.pages import page_context

    user = await _page_manager(request)
    gw = gw_of(request)
    items = await gw.store.read(quarantine.list_held)
    for item in items:
        item["reason_label"] = quarantine.reason_label(item["reason"])
        item["channel_label"] = CHANNELS.get(item["channel"], item["channel"])
    done = request.query.get("hecho", "")
    notice = {
        "liberado": f"Elemento liberado como {request.query.get('seguimiento', '')}.",
        "descartado": "Elemento descartado.",
    }.get(done)
    return render(
        "quarantine.html",
        status=status,
        **page_context(request, user),
        items=items,
        notice=notice,
        error=error,
    )


async def page_action(request: web.Request) -> web.Response:
    """POST /agent/cuarentena/{id}: `accion` = liberar | descartar (with the CSRF token)."""
    user = await _page_manager(request)
    gw = gw_of(request)
    form = await request.post()
    csrf = form.get("csrf")
    if not same_origin(request, gw.settings.public_url) or not check_csrf(
        request, csrf if isinstance(csrf, str) else None
    ):
        return await page(request, error="El formulario caducó; recargue.", status=403)
    item_id = _item_id(request)
    try:
        if form.get("accion") == "liberar":
            tracking = await release(gw, item_id, user.name)
            raise web.HTTPSeeOther(f"/agent/cuarentena?hecho=liberado&seguimiento={tracking}")
        if form.get("accion") == "descartar":
            await discard(gw, item_id, user.name)
            raise web.HTTPSeeOther("/agent/cuarentena?hecho=descartado")
    except NotFound:
        return await page(request, error="Ese elemento ya no está en cuarentena.", status=404)
    return await page(request, error="Elija liberar o descartar.", status=400)


def setup(app: web.Application) -> None:
    """Register the quarantine's API and page."""
    app.router.add_get("/api/v1/quarantine", api_list)
    app.router.add_post("/api/v1/quarantine/{id}/release", api_release)
    app.router.add_post("/api/v1/quarantine/{id}/discard", api_discard)
    app.router.add_get("/agent/cuarentena", page)
    app.router.add_post("/agent/cuarentena/{id}", page_action)
