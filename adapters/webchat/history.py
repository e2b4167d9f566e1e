"""What the chat shows: a visitor's replayed messages, each line's open/closed state, tickets.

`replay_rows` runs in the store's reader thread and finds a visitor's incidents only through the
receipts of frames that visitor's token sent (never through an email or phone); it writes
nothing. Line status texts come from the customer templates.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from gateway.core.model import Receipt
from gateway.core.timeutil import iso
from gateway.store.tx import Row, Tx
from routing.schedule import is_open, next_opening

if TYPE_CHECKING:
    from gateway.core.services import Gateway

REPLAY_LIMIT = 200  # the newest messages replayed on hello; older ones stay with the agents


def replay_rows(tx: Tx, visitor: str) -> list[Row]:
    """The visitor's chat messages (in and out), oldest first, with tracking and status."""
    # provider_id is "<visitor>:<client_id>": a range over the unique (channel, provider_id)
    # index finds exactly this visitor's frames ("-" and "_" sort below ":"'s successor ";").
    receipts = tx.all(
        "SELECT incident_id, message_id, provider_id FROM receipts WHERE channel = 'webchat'"
        " AND provider_id >= ? AND provider_id < ? AND incident_id IS NOT NULL",
        (f"{visitor}:", f"{visitor};"),
    )
    if not receipts:
        return []
    client_ids = {r["message_id"]: r["provider_id"] for r in receipts if r["message_id"]}
    incidents = sorted({int(r["incident_id"]) for r in receipts})
    marks = ", ".join("?" * len(incidents))
    rows = tx.all(
        "SELECT m.id, m.direction, m.body, m.at, m.author, i.tracking, i.status, i.country,"
        " i.language"
        " FROM messages m JOIN incidents i ON i.id = m.incident_id"
        f" WHERE m.incident_id IN ({marks}) AND m.direction IN ('in', 'out')"
        " AND m.channel = 'webchat' ORDER BY m.id DESC LIMIT ?",
        (*incidents, REPLAY_LIMIT),
    )
    rows.reverse()
    for row in rows:
        row["provider_id"] = client_ids.get(row["id"])
    return rows


def line_status(gw: Gateway, country: str, lang: str, now: datetime) -> dict[str, Any]:
    """`open`, `hours`, `opens_at` and, when closed, the `notice` of one country line."""
    routing = gw.settings.routing
    line = routing.lines.get(country, routing.default_line)
    status: dict[str, Any] = {
        "open": is_open(line, now),
        "hours": gw.texts.hours(line, lang),
        "opens_at": None,
        "notice": None,
    }
    if not status["open"]:
        opens_at = next_opening(line, now)
        status["opens_at"] = iso(opens_at)
        country = gw.texts.country(line, lang)
        status["notice"] = gw.texts.render(
            "webchat_closed", lang, line=line, opens_at=opens_at, country=country
        )
        status["opening"] = gw.texts.opening(line, opens_at, lang)  # for the offline form
    return status


def welcome_lines(gw: Gateway, lang: str, now: datetime) -> dict[str, dict[str, Any]]:
    """Every line's status, so the form can say "closed" as soon as a country is chosen."""
    # One computation per language and minute: thousands of hellos share it.
    key = (lang, now.replace(second=0, microsecond=0))
    cache: dict[Any, Any] = gw.extras.setdefault("webchat_lines", {})
    if key not in cache:
        for stale in [k for k in cache if k[1] != key[1]]:
            del cache[stale]
        cache[key] = {
            code: {
                "name": line.name,
                "country_name": gw.texts.country(line, lang),  # "Estados Unidos", not "Miami"
                **line_status(gw, code, lang, now),
            }
            for code, line in gw.settings.routing.lines.items()
        }
    return cache[key]  # type: ignore[no-any-return]


def message_frame(row: Row) -> dict[str, Any]:
    """A replayed message as the socket sends it (with its client_id when the visitor sent it)."""
    frame: dict[str, Any] = {
        "type": "message",
        "from": "customer" if row["direction"] == "in" else "agent",
        "text": row["body"],
        "at": row["at"],
        "id": row["id"],
        "tracking": row["tracking"],
    }
    if row["direction"] == "out" and row.get("author"):
        frame["author"] = row["author"]  # the agent's name on their replies
    provider_id = row.get("provider_id")
    if provider_id and ":" in provider_id:
        frame["client_id"] = provider_id.split(":", 1)[1]
    return frame


def ticket_frame(
    gw: Gateway, receipt: Receipt, email: str | None, confirmed: bool = False
) -> dict[str, Any]:
    """The `ticket` frame: tracking number, after-hours state and the notice to show (with the
    typed email: a confirmation link was sent to it, or it is confirmed already)."""
    line = gw.settings.routing.lines.get(receipt.country)
    notice = gw.texts.render(
        "webchat_ticket",
        receipt.language,
        tracking=receipt.tracking,
        after_hours=receipt.after_hours,
        opens_at=receipt.opens_at,
        line=line,
        email=email,
        confirmed=confirmed,
    )
    return {
        "type": "ticket",
        "tracking": receipt.tracking,
        "after_hours": receipt.after_hours,
        "opens_at": iso(receipt.opens_at),
        "notice": notice,
    }
