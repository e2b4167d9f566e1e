"""Form handlers of the incident page: POST /agent/incidents/{tracking}/{action}.

Each form carries the session's CSRF token and must come from this origin; the action runs
through the same `run_action` as the API. Success redirects back (303, post/redirect/get); a
refusal re-renders the page with the reason in Spanish and the API's status code.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.core.errors import Conflict, GatewayError, NotFound
from gateway.core.services import gw_of
from gateway.web.api import can_see
from gateway.web.http import status_of
from gateway.workspace.actions import ACTIONS
from gateway.workspace.api import run_action
from gateway.workspace.pages import incident_page, page_user
from gateway.workspace.sessions import check_csrf
from gateway.workspace.web import render, same_origin

CONFLICT_ES = {
    "claim": "Solo se puede tomar un incidente abierto.",
    "reply": "Solo se puede responder a un incidente abierto; reábralo primero.",
    "note": "No se pudo guardar la nota.",
    "severity": "La severidad ya es esa, o el incidente está cerrado.",
    "escalate": "Solo se puede escalar un incidente abierto, y a un nivel superior al actual.",
    "resolve": "Solo se puede resolver un incidente abierto.",
    "close": "Solo se puede cerrar un incidente resuelto y con categoría.",
    "reopen": "Solo se puede reabrir un incidente resuelto o cerrado.",
}
STALE_FORM = "El formulario caducó o no viene de esta página. Recárguela e intente de nuevo."
FIELD_ES = {
    "text": "Escriba el texto.",
    "reason": "Indique el motivo.",
    "severity": "Elija una severidad entre S1 y S4.",
    "level": "Elija el nivel de destino: L2 o L3.",
    "team": "El equipo elegido no trabaja en el nivel de destino.",
    "category": "Elija una categoría de cierre de la lista.",
    "resolution": "Describa la resolución.",
    "wait_for_customer": "Valor no válido para «esperar al cliente».",
}


def spanish_error(action: str, exc: GatewayError) -> str:
    """The reason an action was refused, for the agent, in Spanish."""
    if isinstance(exc, NotFound):
        return "Ese incidente no existe en sus colas."
    if isinstance(exc, Conflict):
        return CONFLICT_ES.get(action, "La acción no es posible en el estado actual.")
    missing = exc.code == "missing" or "empty" in exc.message
    if exc.field == "text" and action == "reply" and not missing:
        # A channel's guard refused the reply (e.g. no address, WhatsApp's 24-hour window).
        return f"No se puede responder por el canal de origen: {exc.message}"
    if exc.field in FIELD_ES:
        return FIELD_ES[exc.field]
    if status_of(exc) == 503:
        return "La base de datos no está disponible; intente de nuevo en unos segundos."
    return f"La acción fue rechazada: {exc.message}"


def _body(action: str, form: Any) -> dict[str, Any]:
    body = {k: str(v) for k, v in form.items() if k != "csrf" and isinstance(v, str)}
    if action == "reply":
        body["wait_for_customer"] = form.get("wait_for_customer") == "1"
    return {k: v for k, v in body.items() if v != ""}


async def action_form(request: web.Request) -> web.Response:
    """POST /agent/incidents/{tracking}/{action}: run one action from the page."""
    user = await page_user(request)
    gw = gw_of(request)
    action = request.match_info["action"]
    tracking = request.match_info["tracking"]
    if action not in ACTIONS:
        raise web.HTTPNotFound()
    form = await request.post()
    csrf = form.get("csrf")
    if not same_origin(request, gw.settings.public_url) or not check_csrf(
        request, csrf if isinstance(csrf, str) else None
    ):
        return render("error.html", status=403, user=user, message=STALE_FORM)
    body = _body(action, form)
    try:
        outcome = await run_action(gw, user, tracking, action, body)
    except GatewayError as exc:
        if isinstance(exc, NotFound):
            return render("error.html", status=404, user=user, message=spanish_error(action, exc))
        return await incident_page(
            request,
            error=spanish_error(action, exc),
            status=status_of(exc),
            action=action,
            draft=body,
        )
    if not can_see(user, outcome.row):
        raise web.HTTPSeeOther("/agent/?hecho=escalate")
    raise web.HTTPSeeOther(f"/agent/incidents/{outcome.tracking}?hecho={action}")


def setup(app: web.Application) -> None:
    """Register the form routes."""
    app.router.add_post("/agent/incidents/{tracking}/{action}", action_form)
