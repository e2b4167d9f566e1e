"""Sign-in pages: /agent/login, /agent/logout, /agent/password (Spanish, CSRF on every form).

Before a session exists the login form is protected by a double-submit token (a random cookie
echoed in the form) plus the Origin check; after, forms carry the session-bound CSRF token.
"""

from __future__ import annotations

import secrets

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from gateway.core.services import gw_of
from gateway.web.http import same_secret
from gateway.workspace import sessions
from gateway.workspace.pages import page_context, page_user
from gateway.workspace.web import render, same_origin


def _login_form(
    request: web.Request, *, error: str | None = None, status: int = 200, name: str = ""
) -> web.Response:
    token = request.cookies.get(sessions.LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(16)
    response = render("login.html", status=status, csrf=token, error=error, name=name)
    gw = gw_of(request)
    response.set_cookie(
        sessions.LOGIN_CSRF_COOKIE,
        token,
        path="/agent/login",
        httponly=True,
        samesite="Strict",
        secure=gw.settings.public_url.startswith("https://"),
    )
    return response


async def login_page(request: web.Request) -> web.Response:
    """GET /agent/login."""
    return _login_form(request)


async def login_submit(request: web.Request) -> web.Response:
    """POST /agent/login: check the password (throttled), then start a session."""
    gw = gw_of(request)
    form = await request.post()
    name = str(form.get("name", ""))[:100]
    password = str(form.get("password", ""))[:1000]
    cookie = request.cookies.get(sessions.LOGIN_CSRF_COOKIE, "")
    supplied = str(form.get("csrf", ""))
    if (
        not same_origin(request, gw.settings.public_url)
        or not cookie
        or not same_secret(supplied, cookie)
    ):
        return _login_form(
            request, error="El formulario caducó; intente otra vez.", status=403, name=name
        )
    if not name.strip() or not password:
        return _login_form(request, error="Escriba usuario y contraseña.", status=400, name=name)
    try:
        user = await sessions.login(request, name, password)
    except sessions.LoginThrottled as exc:
        minutes = max(1, exc.retry_after // 60)
        response = _login_form(
            request,
            error=f"Demasiados intentos fallidos. Espere {minutes} minutos e intente de nuevo.",
            status=429,
            name=name,
        )
        response.headers["Retry-After"] = str(exc.retry_after)
        return response
    if user is None:
        return _login_form(
            request, error="Usuario o contraseña incorrectos.", status=401, name=name
        )
    response = web.HTTPSeeOther("/agent/")
    sessions.set_session_cookie(request, response, user)
    response.del_cookie(sessions.LOGIN_CSRF_COOKIE, path="/agent/login")
    raise response


async def _trusted_form(request: web.Request) -> MultiDictProxy[str | bytes | FileField] | None:
    """The posted form if it comes from our own pages (same origin and a valid CSRF token)."""
    form = await request.post()
    csrf = form.get("csrf")
    gw = gw_of(request)
    if not same_origin(request, gw.settings.public_url) or not sessions.check_csrf(
        request, csrf if isinstance(csrf, str) else None
    ):
        return None
    return form


async def logout_submit(request: web.Request) -> web.Response:
    """POST /agent/logout: end the user's sessions."""
    user = await page_user(request)
    form = await _trusted_form(request)
    if form is None:
        return render("error.html", status=403, user=user, message="Formulario no válido.")
    await sessions.logout(request, user)
    response = web.HTTPSeeOther("/agent/login")
    sessions.clear_session_cookie(response)
    raise response


async def password_page(request: web.Request) -> web.Response:
    """GET /agent/password: the password change form."""
    user = await page_user(request)
    done = request.query.get("hecho") == "1"
    return render("password.html", **page_context(request, user), error=None, done=done)


async def password_submit(request: web.Request) -> web.Response:
    """POST /agent/password: change it; every other session of the user ends."""
    user = await page_user(request)
    form = await _trusted_form(request)
    if form is None:
        return render("error.html", status=403, user=user, message="Formulario no válido.")
    current = str(form.get("current", ""))
    new = str(form.get("new", ""))
    if new != str(form.get("confirm", "")):
        error = "La contraseña nueva y su confirmación no coinciden."
        ctx = page_context(request, user)
        return render("password.html", status=400, **ctx, error=error, done=False)
    try:
        fresh = await sessions.change_password(request, user, current, new)
    except ValueError as exc:
        ctx = page_context(request, user)
        return render("password.html", status=400, **ctx, error=str(exc), done=False)
    response = web.HTTPSeeOther("/agent/password?hecho=1")
    sessions.set_session_cookie(request, response, fresh)  # this browser stays signed in
    raise response


def setup(app: web.Application) -> None:
    """Register the sign-in routes."""
    app.router.add_get("/agent/login", login_page)
    app.router.add_post("/agent/login", login_submit)
    app.router.add_post("/agent/logout", logout_submit)
    app.router.add_get("/agent/password", password_page)
    app.router.add_post("/agent/password", password_submit)
