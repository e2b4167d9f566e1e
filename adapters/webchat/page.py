"""HTTP side of the web chat: GET /chat (jinja2 page, also the widget's frame), GET /chat/widget.js
and the page's static files, plus the widget's texts rendered from the customer templates.

Every string a customer reads comes from `customer/<lang>/webchat_*.txt`; the page is autoescaped
and its script reads texts from a JSON data block, so nothing here builds HTML from input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from gateway.core.texts import LANGUAGES

if TYPE_CHECKING:
    from gateway.core.services import Gateway

_HERE = Path(__file__).parent
_STATIC = _HERE / "static"
_FILES = {  # the only files served under /chat/static/
    "chat.js": "text/javascript",
    "chat.css": "text/css",
    "widget.css": "text/css",
}
_WIDGET_KEYS = (
    "launcher_label",
    "launcher_open",
    "launcher_close",
    "panel_title",
    "new_message",
    "unread",
)


def normalize_origin(value: str) -> str | None:
    """'HTTPS://Example.com:443' -> 'https://example.com'; None if it is not an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    default = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default else "")


def allowed_origins(gw: Gateway) -> frozenset[str]:
    """Configured embedding origins plus GATEWAY_PUBLIC_URL's own origin (CONTRACT)."""
    items = [*gw.settings.webchat.allowed_origins, gw.settings.public_url]
    return frozenset(o for o in (normalize_origin(i) for i in items) if o)


def ui_texts(gw: Gateway, lang: str) -> dict[str, str]:
    """The widget's UI strings in `lang`, parsed from the `webchat_ui` template (cached)."""
    cache: dict[str, dict[str, str]] = gw.extras.setdefault("webchat_ui", {})
    if lang not in cache:
        texts: dict[str, str] = {}
        for line in gw.texts.render("webchat_ui", lang).splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip().isidentifier():
                texts[key.strip()] = value.strip()
        cache[lang] = texts
    return cache[lang]


def _lang(request: web.Request) -> str:
    lang = request.query.get("lang", "es")
    return lang if lang in LANGUAGES else "es"


class ChatPages:
    """Handlers of the page, the widget script and the static files."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
            autoescape=True,  # checklist A4: every value in the page is escaped
            undefined=jinja2.StrictUndefined,
        )
        self.files = {name: (_STATIC / name).read_bytes() for name in _FILES}
        self.widget = (_STATIC / "widget.js").read_text(encoding="utf-8")

    def _csp(self) -> str:
        # frame-ancestors is what lets (only) the allowed websites embed the chat frame.
        ancestors = " ".join(sorted(allowed_origins(self.gw)))
        return (
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
            # blob: shows the customer's own image before it is sent (never a remote image).
            "img-src 'self' blob:; base-uri 'none'; form-action 'none'; "
            f"frame-ancestors 'self' {ancestors}"
        )

    async def page(self, request: web.Request) -> web.Response:
        """GET /chat: the standalone chat page (`?embed=1` inside the widget's frame)."""
        lang = _lang(request)
        lines = self.gw.settings.routing.lines
        country = request.query.get("country", "").upper()
        host = normalize_origin(request.query.get("host", ""))
        config: dict[str, Any] = {
            "lang": lang,
            "lang_explicit": "lang" in request.query,
            "country": country if country in lines else None,
            "embedded": request.query.get("embed") == "1",
            # The embedding site, to which the frame posts its storage; only allowed origins.
            "host": host if host in allowed_origins(self.gw) else None,
            "texts": ui_texts(self.gw, lang),
        }
        html = self.env.get_template("chat.html").render(
            lang=lang,
            ui=config["texts"],
            lines=sorted(
                (
                    {"code": line.code, "name": self.gw.texts.country(line, lang)}
                    for line in lines.values()
                ),
                key=lambda line: line["name"],
            ),
            country=config["country"],
            embedded=config["embedded"],
            config=config,
        )
        headers = {
            "Content-Security-Policy": self._csp(),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        }
        return web.Response(text=html, content_type="text/html", headers=headers)

    async def widget_js(self, request: web.Request) -> web.Response:
        """GET /chat/widget.js: the embeddable script, with its launcher texts in es and en."""
        texts = {lang: {k: ui_texts(self.gw, lang)[k] for k in _WIDGET_KEYS} for lang in LANGUAGES}
        body = self.widget.replace("/*__TEXTS__*/null", json.dumps(texts, ensure_ascii=True))
        headers = {
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "public, max-age=300",
            # Any website may load the script; what it may then embed is limited by the
            # frame's CSP frame-ancestors and the socket's Origin check.
            "Access-Control-Allow-Origin": "*",
        }
        return web.Response(
            text=body, content_type="text/javascript", charset="utf-8", headers=headers
        )

    async def static(self, request: web.Request) -> web.Response:
        """GET /chat/static/{name}: the page's own script and styles."""
        name = request.match_info["name"]
        if name not in self.files:
            raise web.HTTPNotFound()
        headers = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=300"}
        return web.Response(
            body=self.files[name], content_type=_FILES[name], charset="utf-8", headers=headers
        )

    def add_routes(self, app: web.Application) -> None:
        """Register the three GET routes (the socket is added by `ws`)."""
        app.router.add_get("/chat", self.page)
        app.router.add_get("/chat/widget.js", self.widget_js)
        app.router.add_get("/chat/static/{name}", self.static)
