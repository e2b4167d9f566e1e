"""The agent API's read side, health and metrics (CONTRACT "HTTP").

Every object lookup goes through `visible_incident`, which checks the caller's access: a
tracking number grants nothing by itself (checklist A1).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from gateway.core.auth import User, user_by_token
from gateway.core.errors import Forbidden, NotFound, Rejected
from gateway.core.model import CHANNELS, OPEN_STATUSES
from gateway.core.services import gw_of
from gateway.core.tracking import parse_tracking
from gateway.store.tx import Row, Tx
from gateway.web.views import incident_json, summary_json
from routing.model import LEVELS, SEVERITIES

if TYPE_CHECKING:
    from gateway.core.services import Gateway

MAX_LIMIT = 200
USER_KEY = web.RequestKey("user", User)


async def current_user(request: web.Request) -> User:
    """The authenticated agent (bearer token, else a session), or 401."""
    cached = request.get(USER_KEY)
    if cached is not None:
        return cached
    gw = gw_of(request)
    header = request.headers.get("Authorization", "")
    user: User | None = None
    if header.lower().startswith("bearer "):
        token = header[7:].strip()
        if token:
            user = await _token_user(gw, token)
        if user is None:
            raise web.HTTPUnauthorized(reason="invalid API token")
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


TOKEN_TTL = 10.0  # seconds a resolved API token is trusted without asking the database


async def _token_user(gw: Gateway, token: str) -> User | None:
    """The token's user; cached briefly, since integrations poll the queue many times a second
    and each lookup costs a trip to the database thread. Unknown tokens are never cached."""
    cache: dict[str, tuple[User, float]] = gw.extras.setdefault("token_cache", {})
    now = time.monotonic()
    hit = cache.get(token)
    if hit is not None and hit[1] > now:
        return hit[0]
    user = await gw.store.read(lambda tx: user_by_token(tx, token))
    if user is not None:
        if len(cache) > 10_000:
            cache.clear()
        cache[token] = (user, now + TOKEN_TTL)
    return user


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


def queue_rows(
    tx: Tx, *, level: str, team_first: str | None, filters: dict[str, str], limit: int
) -> list[Row]:
    """Open incidents of one level with their contact, most urgent SLA deadline first.

    One query (contact joined by its key): a queue page is read many times a second.
    """
    sql = QUEUE_SELECT
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
    """GET /healthz: 200 when the database answers, 503 otherwise."""
    gw = gw_of(request)
    if await gw.store.ping():
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "unavailable", "database": "unreachable"}, status=503)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format, gauges refreshed from the database."""
    gw = gw_of(request)
    await gw.scheduler.refresh_gauges()
    return web.Response(
        body=gw.metrics.render(), headers={"Content-Type": "text/plain; version=0.0.4"}
    )


def setup(app: web.Application) -> None:
    """Register the read-side routes."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/queue", queue)
    app.router.add_get("/api/v1/incidents/{tracking}", incident)
    app.router.add_get("/api/v1/attachments/{token}", attachment)
