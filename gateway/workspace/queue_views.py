"""The queue's views (mine, unassigned, all open, waiting on the customer, resolved and closed),
their counts, the sort orders, and what each row shows: the customer's wait counted in the
right state, and the unread mark (the customer wrote since this agent last looked).

Reads only, through `Tx`, in SQL both databases run; the default view keeps the core's
index-ordered queue read (`gateway.web.api.queue_rows`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway.core.auth import User
from gateway.core.timeutil import iso
from gateway.store.tx import Row, Tx
from gateway.web.api import queue_rows
from gateway.workspace.desk import conversation_facts

OPEN = "i.status IN ('new', 'in_progress', 'waiting_customer')"
DONE = "i.status IN ('resolved', 'closed')"
DONE_WINDOW = timedelta(days=30)  # the resolved/closed view: the last month's
# The same columns as the core's queue read (`queue_contact` reads them).
SELECT = (
    "SELECT i.*, c.name AS contact_name, c.email AS contact_email, c.phone AS contact_phone,"
    " c.telegram_chat_id AS contact_telegram_chat_id"
    " FROM incidents i JOIN contacts c ON c.id = i.contact_id WHERE i.level = ?"
)


@dataclass(frozen=True)
class View:
    """One tab of the queue."""

    key: str
    label: str
    condition: str  # SQL over incidents `i`; "?" takes the agent's name


VIEWS = (
    View("mios", "Míos", f"{OPEN} AND i.claimed_by = ?"),
    View("sin-asignar", "Sin asignar", f"{OPEN} AND i.claimed_by IS NULL"),
    View("abiertos", "Todos los abiertos", OPEN),
    View("esperando", "Esperando al cliente", "i.status = 'waiting_customer'"),
    View("resueltos", "Resueltos y cerrados", f"{DONE} AND i.updated_at >= ?"),
)
VIEW_BY_KEY = {v.key: v for v in VIEWS}
DEFAULT_VIEW = "abiertos"
SORTS = {
    "urgencia": ("Urgencia (SLA)", "i.urgent_due, i.id"),
    "antiguos": ("Más antiguos primero", "i.registered_at, i.id"),
    "recientes": ("Más recientes primero", "i.registered_at DESC, i.id DESC"),
    "severidad": ("Severidad", "i.severity, i.urgent_due, i.id"),
}
DONE_ORDER = "i.updated_at DESC, i.id DESC"


def _where(filters: Mapping[str, str]) -> tuple[str, list[Any]]:
    sql, params = "", []
    for column, value in filters.items():
        sql += f" AND i.{column} = ?"
        params.append(value)
    return sql, params


def _view_params(view: View, user: User, now: datetime) -> list[Any]:
    if view.key == "mios":
        return [user.name]
    if view.key == "resueltos":
        return [iso(now - DONE_WINDOW)]
    return []


def read_view(
    tx: Tx,
    *,
    user: User,
    level: str,
    view: str,
    sort: str,
    filters: Mapping[str, str],
    team_first: str | None,
    now: datetime,
    limit: int,
) -> list[Row]:
    """The rows of one view (with their contact columns), in the chosen order."""
    chosen = VIEW_BY_KEY[view]
    if view == DEFAULT_VIEW and sort == "urgencia":
        return queue_rows(
            tx, level=level, team_first=team_first, filters=dict(filters), limit=limit
        )
    extra, params = _where(filters)
    order = DONE_ORDER if view == "resueltos" else SORTS[sort][1]
    sql = f"{SELECT} AND {chosen.condition}{extra} ORDER BY {order} LIMIT ?"
    return tx.raw(sql, (level, *_view_params(chosen, user, now), *params, limit))


def view_counts(
    tx: Tx, *, user: User, level: str, filters: Mapping[str, str], now: datetime
) -> dict[str, int]:
    """How many incidents each view holds (the same filters applied)."""
    extra, params = _where(filters)
    counts = dict.fromkeys(VIEW_BY_KEY, 0)
    for row in tx.all(
        "SELECT i.status, i.claimed_by, count(*) AS n FROM incidents i"
        f" WHERE i.level = ? AND {OPEN}{extra} GROUP BY i.status, i.claimed_by",
        (level, *params),
    ):
        n = int(row["n"])
        counts["abiertos"] += n
        if row["claimed_by"] is None:
            counts["sin-asignar"] += n
        elif row["claimed_by"] == user.name:
            counts["mios"] += n
        if row["status"] == "waiting_customer":
            counts["esperando"] += n
    done = tx.one(
        f"SELECT count(*) AS n FROM incidents i WHERE i.level = ? AND {DONE}"
        f" AND i.updated_at >= ?{extra}",
        (level, iso(now - DONE_WINDOW), *params),
    )
    counts["resueltos"] = int(done["n"]) if done else 0
    return counts


def row_extras(tx: Tx, user: User, rows: list[Row]) -> dict[int, dict[str, Any]]:
    """Per row id: `unread` and `waiting` (since when, and whose turn it is)."""
    facts = conversation_facts(tx, user.id, [int(r["id"]) for r in rows])
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        f = facts.get(int(row["id"]), {})
        unread = f.get("last_in_id", 0) > f.get("seen_id", 0)
        out[int(row["id"])] = {"unread": unread, **waiting(row, f)}
    return out


def waiting(row: Row, facts: Mapping[str, Any]) -> dict[str, Any]:
    """Whose turn it is and since when: the customer waits on us until we answer their last
    message; while we wait on them (or after resolving) their clock is not running."""
    status = row["status"]
    if status in ("resolved", "closed"):
        return {"turn": "done", "since": None}
    if status == "waiting_customer":
        return {"turn": "customer", "since": facts.get("last_out")}
    if facts.get("first_unanswered"):
        return {"turn": "agent", "since": facts["first_unanswered"]}
    if not facts.get("last_out_id"):
        return {"turn": "agent", "since": row["registered_at"]}
    return {"turn": "answered", "since": facts.get("last_out")}
