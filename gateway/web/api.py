"""The agent API's read side, health and metrics (CONTRACT "HTTP").

Every object lookup goes through `visible_incident`, which checks the caller's access: a
tracking number grants nothing by itself (checklist A1).
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from gateway.core.auth import User, user_by_token
from gateway.core.errors import Forbidden, NotFound, Rejected
from gateway.core.health import DOWN, OK, database_state
from gateway.core.model import CHANNELS, OPEN_STATUSES
from gateway.core.services import gw_of
from gateway.core.tracking import parse_tracking
from gateway.store.tx import Row, Tx
from gateway.web.http import client_address
from gateway.web.views import incident_json, summary_json
from routing.model import LEVELS, SEVERITIES

if TYPE_CHECKING:
    from gateway.core.services import Gateway

MAX_LIMIT = 200
USER_KEY = web.RequestKey("user", User)
BEARER_KEY = web.RequestKey("by_bearer_token", bool)


async def current_user(request: web.Request) -> User:
    """The authenticated agent (bearer token, else a session), or 401."""
    cached = request.get(USER_KEY)
    if cached is not None:
        return cached
    gw = gw_of(request)
    token = bearer_token(request)
    user: User | None = None
    if token is not None:
        user = await _token_user(gw, token) if token else None
        if user is None:
            raise web.HTTPUnauthorized(reason="invalid, expired or revoked API token")
        request[BEARER_KEY] = True
    else:
        for authenticate in gw.authenticators:
            user = await authenticate(request)
            if user is not None:
                break
    if user is None:
        raise web.HTTPUnauthorized(
            reason="authentication required: Authorization: Bearer TOKEN",
            headers={"WWW-Authenticate": 'Bearer realm="callmyway"'},
        )
    request[USER_KEY] = user
    return user


def bearer_token(request: web.Request) -> str | None:
    """The token of an `Authorization: Bearer` header ("" if empty), None without one."""
    header = request.headers.get("Authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    return header[7:].strip()


def by_bearer_token(request: web.Request) -> bool:
    """The request's user was authenticated by a valid API token (not by a cookie): a
    cross-site page cannot make a browser send one, so it needs no CSRF token."""
    return bool(request.get(BEARER_KEY))


async def _token_user(gw: Gateway, token: str) -> User | None:
    """The token's user, asked of the database on every request: a revoked or expired token
    stops working at once, on every instance (no cache could know of a revocation made by
    `python -m gateway token revoke` in another process)."""
    now = gw.clock()
    lifetime = gw.settings.agents.token_lifetime
    return await gw.store.read(lambda tx: user_by_token(tx, token, now, lifetime))


def json_body(data: Any, status: int = 200) -> web.Response:
    """A JSON response serialised with orjson (several times faster than json for queues)."""
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def can_see(user: User, row: Row) -> bool:
    """Whether the user may read this incident: its level is one the user works."""
    return row["level"] in user.levels


def visible_incident(tx: Tx, user: User, tracking: str) -> Row:
    """The incident row if it exists and the user may see it; 404 otherwise (no oracle)."""
    canonical = parse_tracking(tracking)
    row = tx.incident_by_tracking(canonical) if canonical else None
    if row is None or not can_see(user, row):
        raise NotFound(f"no incident {tracking} in your queues")
    return row


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    value = value.upper() if name in ("level", "country", "severity") else value
    if value not in allowed:
        raise Rejected(f"{name} must be one of: {', '.join(allowed)}", field=name)
    return value


QUEUE_SELECT = (
    "SELECT i.*, c.name AS contact_name, c.email AS contact_email, c.phone AS contact_phone,"
    " c.telegram_chat_id AS contact_telegram_chat_id"
    " FROM incidents i JOIN contacts c ON c.id = i.contact_id WHERE i.level = ?"
    # The open-status condition is written literally so SQLite picks the partial index.
    " AND i.status IN ('new', 'in_progress', 'waiting_customer')"
)
# SQLite's planner, once statistics exist, may prefer the counting index incidents_open_depth
# (status, level, country) and sort every open incident of the level for each page (150 ms at
# 1 M incidents); the queue index gives the rows already in order. PostgreSQL plans it right.
QUEUE_SELECT_SQLITE = QUEUE_SELECT.replace(
    "FROM incidents i ", "FROM incidents i INDEXED BY incidents_queue ", 1
)


def queue_rows(
    tx: Tx, *, level: str, team_first: str | None, filters: dict[str, str], limit: int
) -> list[Row]:
    """Open incidents of one level with their contact, most urgent SLA deadline first.

    One query (contact joined by its key): a queue page is read many times a second.
    """
    sql = QUEUE_SELECT_SQLITE if tx.dialect == "sqlite" else QUEUE_SELECT
    params: list[Any] = [level]
    for column, value in filters.items():
        sql += f" AND i.{column} = ?"
        params.append(value)
    order = " ORDER BY i.urgent_due, i.id LIMIT ?"
    if not team_first:
        return tx.raw(sql + order, (*params, limit))
    # Team first as two index-ordered reads: sorting on (team IS ?) would sort every open
    # incident of the level in a temporary B-tree on each request.
    mine = tx.raw(sql + " AND i.team = ?" + order, (*params, team_first, limit))
    if len(mine) >= limit:
        return mine
    rest = tx.raw(
        sql + " AND (i.team IS NULL OR i.team <> ?)" + order,
        (*params, team_first, limit - len(mine)),
    )
    return mine + rest


def queue_contact(row: Row) -> dict[str, Any]:
    """The contact columns a queue row carries."""
    return {
        "name": row["contact_name"],
        "email": row["contact_email"],
        "phone": row["contact_phone"],
        "telegram_chat_id": row["contact_telegram_chat_id"],
    }


async def queue(request: web.Request) -> web.Response:
    """GET /api/v1/queue: open incidents of a level, most urgent first."""
    user = await current_user(request)
    gw = gw_of(request)
    level = _choice(request, "level", LEVELS) or user.levels[0]
    if level not in user.levels:
        raise Forbidden(f"your role ({user.role}) does not work the {level} queue", field="level")
    lines = tuple(gw.settings.routing.lines)
    filters = {
        k: v
        for k, v in {
            "country": _choice(request, "country", lines),
            "status": _choice(request, "status", OPEN_STATUSES),
            "channel": _choice(request, "channel", CHANNELS),
            "severity": _choice(request, "severity", SEVERITIES),
        }.items()
        if v
    }
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        raise Rejected("limit must be a whole number", field="limit") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise Rejected(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    team = user.team if user.role in ("l2", "l3") else None
    now = gw.clock()
    window = gw.settings.routing.at_risk_window

    def read(tx: Tx) -> list[dict[str, Any]]:
        rows = queue_rows(tx, level=level, team_first=team, filters=filters, limit=limit)
        return [summary_json(r, queue_contact(r), now, window) for r in rows]

    incidents = await gw.store.read(read)
    return json_body({"level": level, "incidents": incidents})


async def incident(request: web.Request) -> web.Response:
    """GET /api/v1/incidents/{tracking}: one incident, whole."""
    user = await current_user(request)
    gw = gw_of(request)
    tracking = request.match_info["tracking"]
    now = gw.clock()
    window = gw.settings.routing.at_risk_window

    def read(tx: Tx) -> dict[str, Any]:
        return incident_json(tx, visible_incident(tx, user, tracking), now, window)

    return json_body(await gw.store.read(read))


async def attachment(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/attachments/{token}: a download, never rendered inline."""
    user = await current_user(request)
    gw = gw_of(request)
    token = request.match_info["token"]

    def read(tx: Tx) -> Row:
        row = tx.one(
            "SELECT a.*, i.level, i.team, i.status FROM attachments a"
            " JOIN messages m ON m.id = a.message_id JOIN incidents i ON i.id = m.incident_id"
            " WHERE a.token = ?",
            (token,),
        )
        if row is None or not can_see(user, row):
            raise NotFound("no such attachment")
        if row["data"] is None and not _provider_media(row["url"]):
            raise NotFound("the attachment has not been fetched yet")
        return row

    row = await gw.store.read(read)
    if row["data"] is None:
        # Kept at the provider (a Twilio voicemail recording): send the agent there.
        raise web.HTTPFound(row["url"])
    filename = "".join(c for c in row["filename"] if c.isprintable() and c not in '"\\') or "file"
    preview = request.query.get("preview") == "1" and raster_image(row["content_type"], row["data"])
    disposition = "inline" if preview else "attachment"
    return web.Response(
        body=row["data"],
        headers={
            # A preview is only ever a raster image whose bytes are what its type says; anything
            # else (SVG, HTML, a PNG that is not one) stays an opaque download.
            "Content-Type": row["content_type"] if preview else "application/octet-stream",
            "Content-Disposition": f'{disposition}; filename="{filename}"',
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "Cache-Control": "private, max-age=3600",
        },
    )


# The image types a browser shows in <img>, by the bytes each format starts with.
_RASTER_MAGIC = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}


def raster_image(content_type: str | None, data: bytes | None) -> bool:
    """The stored bytes are a PNG, JPEG, GIF or WebP image, as their declared type says."""
    magic = _RASTER_MAGIC.get((content_type or "").lower())
    if not magic or not data:
        return False
    if content_type == "image/webp" and data[8:12] != b"WEBP":
        return False
    return data.startswith(magic)


def _provider_media(url: str | None) -> bool:
    """Only https URLs of Twilio's own hosts are followed for remote attachments."""
    if not url:
        return False
    parsed = urlsplit(url)
    host = (parsed.hostname or "").lower()
    return parsed.scheme == "https" and (host == "twilio.com" or host.endswith(".twilio.com"))


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz → {"status": "ok"|"degraded", "instance", "database": "ok"|"read_only"|"down"};
    503 only when the database cannot be reached at all (CONTRACT "Several instances")."""
    gw = gw_of(request)
    state = await database_state(gw.store, gw.settings.instance, gw.clock())
    body = {
        "status": "ok" if state == OK else "degraded",
        "instance": gw.settings.instance,
        "database": state,
    }
    return web.json_response(body, status=503 if state == DOWN else 200)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format, gauges refreshed from the database.

    Readable from `[gateway] metrics_networks` (loopback by default: the scraper beside the
    gateway) or with a valid API token; queue sizes and failure counts help an attacker time
    an attack, so nobody else reads them.
    """
    gw = gw_of(request)
    address = client_address(request, gw.settings.trusted_proxies)
    if not _in_networks(address, gw.settings.metrics_networks):
        if bearer_token(request) is None:
            raise Forbidden(
                "/metrics is readable only from [gateway] metrics_networks or with an API token"
            )
        await current_user(request)
    await gw.scheduler.refresh_gauges()
    return web.Response(
        body=gw.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"}
    )


def _in_networks(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(net, strict=False) for net in networks)


def setup(app: web.Application) -> None:
    """Register the read-side routes."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/queue", queue)
    app.router.add_get("/api/v1/incidents/{tracking}", incident)
    app.router.add_get("/api/v1/attachments/{token}", attachment)
