"""Canned replies: supervisors keep Spanish and English reply templates with placeholders;
agents insert them, already filled in for the incident, from the composer.

Placeholders: {nombre} (the customer's name), {seguimiento} (the tracking number), {horario}
(the hours of the incident's line, in the incident's language). The page at /agent/respuestas
(supervisors and admins) lists, creates, edits and deletes them; every form carries the CSRF
token. Filled-in texts reach the page as JSON data, never as HTML.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from gateway.core.services import gw_of
from gateway.store.tx import Tx
from gateway.workspace.desk import canned_replies, delete_canned, save_canned
from gateway.workspace.sessions import check_csrf
from gateway.workspace.web import render, same_origin

PLACEHOLDERS = {
    "nombre": "nombre del cliente",
    "seguimiento": "número de seguimiento",
    "horario": "horario de atención de la línea",
}
_FIELD = re.compile(r"\{([^{}\s]*)\}")
MAX_TITLE, MAX_BODY = 120, 4000


def unknown_placeholders(body: str) -> list[str]:
    """Placeholders in a template that are not ones the gateway fills in."""
    return [name for name in _FIELD.findall(body) if name not in PLACEHOLDERS]


def fill(body: str, values: dict[str, str | None]) -> str:
    """The template with its placeholders replaced; a missing name leaves no gap ("Hola ,")."""

    def one(match: re.Match[str]) -> str:
        return values.get(match.group(1)) or ""

    text = _FIELD.sub(one, body)
    return re.sub(r"[ \t]+([,.;:!?])", r"\1", text).strip()


async def canned_for(gw: Any, incident: dict[str, Any]) -> list[dict[str, Any]]:
    """The canned replies filled in for an incident, its own language's first."""
    rows = await gw.store.read(lambda tx: canned_replies(tx))
    routing = gw.settings.routing
    line = routing.lines.get(incident["country"], routing.default_line)
    language = incident.get("language") or line.language
    out = []
    for row in rows:
        values = {
            "nombre": incident["contact"].get("name"),
            "seguimiento": incident["tracking"],
            "horario": gw.texts.hours(line, row["language"]),
        }
        out.append(
            {
                "id": row["id"],
                "title": row["title"],
                "language": row["language"],
                "text": fill(row["body"], values),
            }
        )
    out.sort(key=lambda r: (r["language"] != language, r["language"], r["title"]))
    return out


async def _manager(request: web.Request) -> Any:
    from gateway.workspace.pages import manager_page_user  # pages imports this module

    return await manager_page_user(
        request, "Solo supervisores y administradores editan respuestas."
    )


async def canned_page(
    request: web.Request, *, error: str | None = None, status: int = 200, draft: Any = None
) -> web.Response:
    """GET /agent/respuestas: the list and the form (a supervisor's)."""
    from gateway.workspace.pages import page_context

    user = await _manager(request)
    gw = gw_of(request)
    rows = await gw.store.read(lambda tx: canned_replies(tx))
    editing = None
    if request.query.get("editar", "").isdigit():
        editing = next((r for r in rows if r["id"] == int(request.query["editar"])), None)
    done = {"guardada": "Respuesta guardada.", "borrada": "Respuesta borrada."}.get(
        request.query.get("hecho", "")
    )
    return render(
        "canned.html",
        status=status,
        **page_context(request, user),
        rows=rows,
        editing=draft or editing,
        placeholders=PLACEHOLDERS,
        error=error,
        done=done,
    )


def _validate(form: Any) -> tuple[dict[str, Any], str | None]:
    title = str(form.get("title") or "").strip()
    body = str(form.get("body") or "").strip()
    language = str(form.get("language") or "")
    draft = {"id": form.get("id") or None, "title": title, "body": body, "language": language}
    if not title or len(title) > MAX_TITLE:
        return draft, f"Escriba un título (hasta {MAX_TITLE} caracteres)."
    if language not in ("es", "en"):
        return draft, "Elija el idioma de la respuesta: español o inglés."
    if not body or len(body) > MAX_BODY:
        return draft, f"Escriba el texto de la respuesta (hasta {MAX_BODY} caracteres)."
    unknown = unknown_placeholders(body)
    if unknown:
        known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        return draft, f"El marcador {{{unknown[0]}}} no existe; use {known}."
    return draft, None


async def canned_save(request: web.Request) -> web.Response:
    """POST /agent/respuestas: create, update (`id`) or delete (`borrar`) a canned reply."""
    user = await _manager(request)
    gw = gw_of(request)
    form = await request.post()
    csrf = form.get("csrf")
    if not same_origin(request, gw.settings.public_url) or not check_csrf(
        request, csrf if isinstance(csrf, str) else None
    ):
        return await canned_page(request, error="El formulario caducó; recargue.", status=403)
    reply_id = int(str(form["id"])) if str(form.get("id") or "").isdigit() else None
    if form.get("borrar") and reply_id is not None:
        await gw.store.transact(lambda tx: delete_canned(tx, reply_id))
        raise web.HTTPSeeOther("/agent/respuestas?hecho=borrada")
    draft, error = _validate(form)
    if error:
        return await canned_page(request, error=error, status=400, draft=draft)
    now = gw.clock()

    def write(tx: Tx) -> int:
        return save_canned(
            tx, reply_id, draft["title"], draft["language"], draft["body"], user.name, now
        )

    await gw.store.transact(write)
    raise web.HTTPSeeOther("/agent/respuestas?hecho=guardada")


def setup(app: web.Application) -> None:
    """Register the canned replies' page."""
    app.router.add_get("/agent/respuestas", canned_page)
    app.router.add_post("/agent/respuestas", canned_save)
