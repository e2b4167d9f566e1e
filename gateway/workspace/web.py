"""HTML plumbing of the agent pages: the autoescaping jinja2 environment and security headers.

Every agent page goes through `render`, which sets a strict Content-Security-Policy (scripts and
styles only from /static/agent/, no inline code, no remote images) and no-store caching. It never
marks customer text safe: templates get plain strings and jinja2 escapes them (checklist A4).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from yarl import URL

from gateway.core.timeutil import parse_iso
from gateway.workspace.labels import actor_name, delivery_state, local_when, registered_by

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC = Path(__file__).resolve().parent / "static"

# 'self' only: no inline script or style, no remote images (mail trackers), no framing of the
# workspace (clickjacking); frames only for sandboxed srcdoc HTML mail (which inherits this CSP).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make browsers send Origin: null
    "Cache-Control": "no-store",
}

STATUS_ES = {
    "new": "nuevo",
    "in_progress": "en curso",
    "waiting_customer": "esperando al cliente",
    "resolved": "resuelto",
    "closed": "cerrado",
}
CHANNEL_ES = {
    "email": "correo",
    "whatsapp": "WhatsApp",
    "webchat": "chat web",
    "click2call": "Click2Call",
    "voice": "teléfono",
    "telegram": "Telegram",
}


def _when(value: str | None, tz: str | None = None) -> str:
    """An ISO time in the agent's zone `tz` ('30/11/2026 09:05'), else in UTC."""
    if tz:
        return local_when(value, tz)
    moment = parse_iso(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def _span(seconds: float) -> str:
    minutes = int(seconds // 60)
    hours, minutes = divmod(minutes, 60)
    if hours >= 24:
        days, hours = divmod(hours, 24)
        return f"{days} d {hours} h"
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def _duration(seconds: float | None) -> str:
    """Seconds as '1 h 05 min' / '12 min'; overdue as 'vencido hace 3 min' (never '-0 min')."""
    if seconds is None:
        return "—"
    if seconds < 0:
        return f"vencido hace {_span(max(-seconds, 60))}"
    return _span(seconds)


def environment() -> jinja2.Environment:
    """The agent pages' jinja2 environment; autoescape is on for every template."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["duration"] = _duration
    env.filters["actor"] = actor_name
    env.filters["delivery"] = delivery_state
    env.filters["registered_by"] = registered_by
    env.globals["STATUS_ES"] = STATUS_ES
    env.globals["CHANNEL_ES"] = CHANNEL_ES
    return env


_ENV = environment()


def render(template: str, *, status: int = 200, **ctx: Any) -> web.Response:
    """A page rendered from templates/agent/ with the security headers."""
    html = _ENV.get_template(template).render(**ctx)
    return web.Response(
        text=html, status=status, content_type="text/html", headers=SECURITY_HEADERS
    )


def seconds_until(value: str | None, now: datetime) -> float | None:
    """Seconds from `now` to an ISO time (negative when past)."""
    moment = parse_iso(value)
    return (moment - now).total_seconds() if moment else None


def same_origin(request: web.Request, public_url: str) -> bool:
    """The request's Origin (if any) is this gateway: its public URL or the Host it was sent to."""
    origin = request.headers.get("Origin")
    if origin is None:
        # Browsers omit Origin on same-origin GETs; a cross-site form POST always carries it
        # (Fetch standard, "append a request Origin header"), so absence is not a forgery.
        return request.headers.get("Sec-Fetch-Site", "same-origin") in ("same-origin", "none")
    own = f"{request.scheme}://{request.host}"
    return origin in (own, str(URL(public_url).origin()))
