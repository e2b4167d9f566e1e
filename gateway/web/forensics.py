"""Forensics and search: incidents by name, email, phone or text; the event history by tracking
number, contact, channel, time range and kind (keyset-paginated); one incident's whole record.

Every query is limited to the levels the caller works (supervisors: all). Text matching is
`LIKE ... ESCAPE` on SQLite (case-insensitive for ASCII; a scan of the matching columns, fine at
one site's size) and `ILIKE` on PostgreSQL, served by pg_trgm GIN indexes when the extension is
available; these indexes are migration component "forensics".
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
from aiohttp import web

from gateway.core.auth import User
from gateway.core.errors import Forbidden, Rejected
from gateway.core.model import CHANNELS
from gateway.core.noc import episode_json, list_episodes
from gateway.core.services import Gateway, gw_of
from gateway.core.timeutil import iso, parse_iso
from gateway.core.tracking import parse_tracking
from gateway.store.migration import Migration
from gateway.store.tx import Row, Tx
from gateway.web.api import current_user, json_body, queue_contact, visible_incident
from gateway.web.views import incident_json, summary_json

MAX_PAGE = 100
MIGRATIONS: list[Migration] = [
    Migration(
        1,
        """
        CREATE INDEX events_kind ON events(kind, id);
        CREATE INDEX events_at ON events(at, id);
        CREATE INDEX IF NOT EXISTS incidents_contact ON incidents(contact_id);
        CREATE INDEX outbox_incident ON outbox(incident_id) WHERE incident_id IS NOT NULL;
        """,
        """
        CREATE INDEX events_kind ON events(kind, id);
        CREATE INDEX events_at ON events(at, id);
        CREATE INDEX outbox_incident ON outbox(incident_id) WHERE incident_id IS NOT NULL;
        -- Substring search (ILIKE '%...%') through trigram indexes when pg_trgm can be had;
        -- without it (no privilege to create the extension) the search still works, by scan.
        DO $$
        BEGIN
            BEGIN
                CREATE EXTENSION IF NOT EXISTS pg_trgm;
            EXCEPTION WHEN OTHERS THEN
                RAISE NOTICE 'pg_trgm unavailable: search scans (%)', SQLERRM;
            END;
            IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
                CREATE INDEX contacts_name_trgm ON contacts USING gin (name gin_trgm_ops);
                CREATE INDEX contacts_email_trgm ON contacts USING gin (email gin_trgm_ops);
                CREATE INDEX contacts_phone_trgm ON contacts USING gin (phone gin_trgm_ops);
                CREATE INDEX incidents_subject_trgm ON incidents USING gin (subject gin_trgm_ops);
                CREATE INDEX incidents_description_trgm
                    ON incidents USING gin (description gin_trgm_ops);
                CREATE INDEX messages_body_trgm ON messages USING gin (body gin_trgm_ops);
            END IF;
        END
        $$;
        """,
    ),
    Migration(
        2,
        # Issue 19: a GIN index also keeps an entry for a NULL, so every new contact wrote to
        # all three contact trigram indexes (a WhatsApp sender has no email, a Telegram one
        # no email or phone) and every incident to the subject one. Partial indexes skip the
        # NULLs; `col ILIKE ?` (and `LIKE`) is strict, so the planner still proves
        # `col IS NOT NULL` and uses them. Measured on bench/intake.py's pipeline: GIN WAL
        # records per contact 6 -> 4. The rebuild holds writes to contacts and incidents for
        # as long as the four indexes take to build: on a large installation, upgrade in a
        # quiet hour.
        "SELECT 1;",
        """
        DO $$
        BEGIN
            IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
                DROP INDEX IF EXISTS contacts_name_trgm;
                DROP INDEX IF EXISTS contacts_email_trgm;
                DROP INDEX IF EXISTS contacts_phone_trgm;
                DROP INDEX IF EXISTS incidents_subject_trgm;
                CREATE INDEX contacts_name_trgm ON contacts USING gin (name gin_trgm_ops)
                    WHERE name IS NOT NULL;
                CREATE INDEX contacts_email_trgm ON contacts USING gin (email gin_trgm_ops)
                    WHERE email IS NOT NULL;
                CREATE INDEX contacts_phone_trgm ON contacts USING gin (phone gin_trgm_ops)
                    WHERE phone IS NOT NULL;
                CREATE INDEX incidents_subject_trgm ON incidents USING gin (subject gin_trgm_ops)
                    WHERE subject IS NOT NULL;
            END IF;
        END
        $$;
        """,
    ),
]
CONTACT_COLUMNS = (
    "c.name AS contact_name, c.email AS contact_email, c.phone AS contact_phone,"
    " c.telegram_chat_id AS contact_telegram_chat_id"
)


def like_pattern(text: str) -> str:
    """'50%_off' -> '%50\\%\\_off%' (the user's % and _ are literal)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def phone_digits(text: str) -> str | None:
    """The digits of something that looks like a phone number (6 or more), else None."""
    if not re.fullmatch(r"[+\d\s().\-/]+", text):
        return None
    digits = re.sub(r"\D", "", text)
    return digits if len(digits) >= 6 else None


def _like(tx: Tx) -> str:
    """`ILIKE` on PostgreSQL (backslash is its default escape, and a bare `col ILIKE $1` is
    what the trigram indexes serve); `LIKE ... ESCAPE` on SQLite, which has no default escape."""
    return "ILIKE" if tx.dialect == "postgresql" else "LIKE"


def _escape(tx: Tx) -> str:
    return "" if tx.dialect == "postgresql" else " ESCAPE '\\'"


def contact_ids_sql(tx: Tx, q: str) -> tuple[str, list[Any]]:
    """A subquery of the ids of contacts whose name, email or phone contains `q`."""
    like, esc = _like(tx), _escape(tx)
    digits = phone_digits(q)
    if digits:
        return f"SELECT id FROM contacts WHERE phone LIKE ?{esc}", [like_pattern(digits)]
    pattern = like_pattern(q)
    return (
        f"SELECT id FROM contacts WHERE name {like} ?{esc} OR email {like} ?{esc}",
        [pattern, pattern],
    )


def matching_ids_sql(tx: Tx, q: str) -> tuple[str, list[Any]]:
    """A subquery of the ids of incidents matching `q`: its contact, subject, description or any
    message body (each arm can use its own index)."""
    like, esc = _like(tx), _escape(tx)
    contacts, params = contact_ids_sql(tx, q)
    pattern = like_pattern(q)
    sql = (
        f"SELECT id FROM incidents WHERE contact_id IN ({contacts})"
        f" UNION SELECT id FROM incidents WHERE subject {like} ?{esc}"
        f" UNION SELECT id FROM incidents WHERE description {like} ?{esc}"
        f" UNION SELECT incident_id FROM messages WHERE body {like} ?{esc}"
    )
    return sql, [*params, pattern, pattern, pattern]


def search_terms(q: str) -> list[str]:
    """What must each match: a phone number whole, else each word of 2+ characters (at most 5;
    the whole text when it has none)."""
    if phone_digits(q):
        return [q]
    words = [w for w in q.split() if len(w) >= 2][:5]
    return words or [q]


def _levels_sql(levels: tuple[str, ...]) -> str:
    return "(" + ", ".join("?" * len(levels)) + ")"


def search_incidents(
    tx: Tx, q: str, levels: tuple[str, ...], before: int | None, limit: int
) -> list[Row]:
    """Incidents matching `q` (a tracking number exactly; else contact or text), newest first,
    keyset-paginated on the id; one more row than `limit` says there is a next page."""
    base = (
        f"SELECT i.*, {CONTACT_COLUMNS} FROM incidents i JOIN contacts c ON c.id = i.contact_id"
        f" WHERE i.level IN {_levels_sql(levels)}"
    )
    params: list[Any] = list(levels)
    tracking = parse_tracking(q.upper())
    if tracking:
        base += " AND i.tracking = ?"
        params.append(tracking)
    else:
        for term in search_terms(q):  # every word somewhere: "luis factura" narrows down
            sub, sub_params = matching_ids_sql(tx, term)
            base += f" AND i.id IN ({sub})"
            params += sub_params
    if before is not None:
        base += " AND i.id < ?"
        params.append(before)
    return tx.raw(base + " ORDER BY i.id DESC LIMIT ?", (*params, limit + 1))


def parse_when(text: str, field: str, *, end: bool = False) -> datetime:
    """'2026-11-30' (a whole UTC day) or an ISO date-time with offset; Rejected otherwise."""
    text = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            moment = datetime.combine(date.fromisoformat(text), time(), tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        message = f"{field} must be a date (YYYY-MM-DD) or an ISO date-time"
        raise Rejected(message, field=field) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def event_filters(query: Any, lines: tuple[str, ...]) -> dict[str, Any]:
    """The forensic search's filters from a query string; Rejected names the bad field."""
    out: dict[str, Any] = {}
    tracking = (query.get("tracking") or "").strip()
    if tracking:
        canonical = parse_tracking(tracking.upper())
        if canonical is None:
            raise Rejected("tracking is not a valid tracking number", field="tracking")
        out["tracking"] = canonical
    contact = (query.get("contact") or "").strip()
    if contact:
        if len(contact) < 3:
            raise Rejected("contact needs at least 3 characters", field="contact")
        out["contact"] = contact[:200]
    channel = (query.get("channel") or "").strip()
    if channel:
        if channel not in CHANNELS:
            raise Rejected(f"channel must be one of: {', '.join(CHANNELS)}", field="channel")
        out["channel"] = channel
    kind = (query.get("kind") or "").strip()
    if kind:
        if not re.fullmatch(r"[a-z_]{1,60}", kind):
            raise Rejected("kind must be an event kind such as status_changed", field="kind")
        out["kind"] = kind
    if (query.get("from") or "").strip():
        out["from"] = parse_when(query["from"], "from")
    if (query.get("to") or "").strip():
        out["to"] = parse_when(query["to"], "to", end=True)
    if "from" in out and "to" in out and out["from"] >= out["to"]:
        raise Rejected("from must be before to", field="from")
    return out


def search_events(
    tx: Tx, filters: dict[str, Any], levels: tuple[str, ...], before: int | None, limit: int
) -> list[Row]:
    """Events matching the filters, newest first, keyset-paginated on the event id."""
    sql = (
        "SELECT e.id, e.at, e.actor, e.kind, e.detail, i.tracking, i.channel, i.level,"
        f" i.country, {CONTACT_COLUMNS}"
        " FROM events e JOIN incidents i ON i.id = e.incident_id"
        " JOIN contacts c ON c.id = i.contact_id"
        f" WHERE i.level IN {_levels_sql(levels)}"
    )
    params: list[Any] = list(levels)
    if "tracking" in filters:
        sql += " AND i.tracking = ?"
        params.append(filters["tracking"])
    if "contact" in filters:
        sub, sub_params = contact_ids_sql(tx, filters["contact"])
        sql += f" AND i.contact_id IN ({sub})"
        params += sub_params
    if "channel" in filters:
        sql += " AND i.channel = ?"
        params.append(filters["channel"])
    if "kind" in filters:
        sql += " AND e.kind = ?"
        params.append(filters["kind"])
    if "from" in filters:
        sql += " AND e.at >= ?"
        params.append(iso(filters["from"]))
    if "to" in filters:
        sql += " AND e.at < ?"
        params.append(iso(filters["to"]))
    if before is not None:
        sql += " AND e.id < ?"
        params.append(before)
    return tx.raw(sql + " ORDER BY e.id DESC LIMIT ?", (*params, limit + 1))


def event_json(row: Row) -> dict[str, Any]:
    """One event of the forensic search, with its incident and contact."""
    detail = row["detail"]
    return {
        "id": row["id"],
        "at": _iso(row["at"]),
        "actor": row["actor"],
        "kind": row["kind"],
        "detail": orjson.loads(detail) if isinstance(detail, str | bytes) else detail,
        "tracking": row["tracking"],
        "channel": row["channel"],
        "level": row["level"],
        "country": row["country"],
        "contact": queue_contact(row),
    }


def _iso(value: Any) -> str | None:
    return iso(parse_iso(value) if isinstance(value, str) else value)


def page_args(query: Any) -> tuple[int | None, int]:
    """(cursor, limit) of a paginated request; Rejected for bad values."""
    cursor = (query.get("cursor") or "").strip()
    if cursor and not cursor.isdigit():
        raise Rejected("cursor must be the `next` value of the previous page", field="cursor")
    raw = (query.get("limit") or "50").strip()
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise Rejected(f"limit must be a whole number between 1 and {MAX_PAGE}", field="limit")
    return (int(cursor) if cursor else None), int(raw)


def paged(rows: list[Row], limit: int) -> tuple[list[Row], str | None]:
    """The page's rows and the cursor of the next page (None on the last)."""
    if len(rows) > limit:
        return rows[:limit], str(rows[limit - 1]["id"])
    return rows, None


def record_json(tx: Tx, row: Row, now: datetime, window: Any) -> dict[str, Any]:
    """One incident's complete record: the incident whole plus every delivery attempt."""
    out = incident_json(tx, row, now, window)
    outbox = tx.all("SELECT * FROM outbox WHERE incident_id = ? ORDER BY id", (row["id"],))
    attempts: dict[int, list[dict[str, Any]]] = {}
    if outbox:
        marks = ", ".join("?" * len(outbox))
        for a in tx.all(
            f"SELECT * FROM outbox_attempts WHERE outbox_id IN ({marks}) ORDER BY id",
            [o["id"] for o in outbox],
        ):
            attempts.setdefault(a["outbox_id"], []).append(
                {"at": _iso(a["at"]), "ok": bool(a["ok"]), "error": a["error"]}
            )
    out["deliveries"] = [
        {
            "id": o["id"],
            "channel": o["channel"],
            "kind": o["kind"],
            "recipient": o["recipient"],
            "status": o["status"],
            "attempts": o["attempts"],
            "created_at": _iso(o["created_at"]),
            "sent_at": _iso(o["sent_at"]),
            "last_error": o["last_error"],
            "provider_id": o["provider_id"],
            "tries": attempts.get(o["id"], []),
        }
        for o in outbox
    ]
    out["exported_at"] = iso(now)
    return out


async def incidents(request: web.Request) -> web.Response:
    """GET /api/v1/incidents?q=...: incidents by tracking number, name, email, phone or text."""
    user = await current_user(request)
    gw = gw_of(request)
    q = (request.query.get("q") or "").strip()
    if len(q) < 3:
        raise Rejected("q needs at least 3 characters", field="q")
    before, limit = page_args(request.query)
    now, window = gw.clock(), gw.settings.routing.at_risk_window
    rows = await gw.store.read(lambda tx: search_incidents(tx, q[:200], user.levels, before, limit))
    rows, cursor = paged(rows, limit)
    found = [summary_json(r, queue_contact(r), now, window) for r in rows]
    return json_body({"q": q, "incidents": found, "next": cursor})


async def events(request: web.Request) -> web.Response:
    """GET /api/v1/events?...: the event history, newest first, keyset-paginated."""
    user = await current_user(request)
    gw = gw_of(request)
    filters = event_filters(request.query, tuple(gw.settings.routing.lines))
    before, limit = page_args(request.query)
    rows = await gw.store.read(lambda tx: search_events(tx, filters, user.levels, before, limit))
    rows, cursor = paged(rows, limit)
    return json_body({"events": [event_json(r) for r in rows], "next": cursor})


async def read_record(gw: Gateway, user: User, tracking: str) -> dict[str, Any]:
    """One incident's complete record as `user` may see it (NotFound otherwise): for the API
    and the printable page alike."""
    now, window = gw.clock(), gw.settings.routing.at_risk_window

    def read(tx: Tx) -> dict[str, Any]:
        return record_json(tx, visible_incident(tx, user, tracking), now, window)

    return await gw.store.read(read)


async def record(request: web.Request) -> web.Response:
    """GET /api/v1/incidents/{tracking}/record: the complete record, for an investigation."""
    user = await current_user(request)
    data = await read_record(gw_of(request), user, request.match_info["tracking"])
    resp = json_body(data)
    resp.headers["Content-Disposition"] = f'attachment; filename="{data["tracking"]}.json"'
    return resp


def require_noc(user: Any) -> None:
    """Alarms are for supervisors and admins."""
    if user.role not in ("supervisor", "admin"):
        raise Forbidden("alarms are for supervisors and admins")


async def alarms(request: web.Request) -> web.Response:
    """GET /api/v1/alarms[?state=open][&cursor][&limit]: alarm episodes, newest first."""
    user = await current_user(request)
    require_noc(user)
    gw = gw_of(request)
    state = request.query.get("state", "all")
    if state not in ("all", "open"):
        raise Rejected("state must be open or all", field="state")
    before, limit = page_args(request.query)
    rows = await gw.store.read(
        lambda tx: list_episodes(tx, open_only=state == "open", before=before, limit=limit + 1)
    )
    rows, cursor = paged(rows, limit)
    return json_body({"alarms": [episode_json(r) for r in rows], "next": cursor})


def setup(app: web.Application) -> None:
    """Register the search, forensics and alarm routes."""
    app.router.add_get("/api/v1/incidents", incidents)
    app.router.add_get("/api/v1/events", events)
    app.router.add_get("/api/v1/incidents/{tracking}/record", record)
    app.router.add_get("/api/v1/alarms", alarms)
