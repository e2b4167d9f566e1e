"""Incidents as the API returns them (CONTRACT "Incidents"): rows in, JSON-ready dicts out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from gateway.core.timeutil import parse_iso
from gateway.store.tx import Row, Tx
from routing.sla import sla_state

ACCESS_FIELDS = ("id", "level", "team", "status")


def _bool(value: Any) -> bool:
    return bool(value)


def sla_json(row: Row, now: datetime, at_risk_window: Any) -> dict[str, Any]:
    """The `sla` object: stored due times, plus breach and at-risk as of `now`."""
    attention_due = parse_iso(row["attention_due"])
    solution_due = parse_iso(row["solution_due"])
    attended = parse_iso(row["attended_at"])
    resolved = parse_iso(row["resolved_at"])
    assert attention_due and solution_due
    state = sla_state(
        attention_due,
        solution_due,
        attended,
        resolved,
        now,
        at_risk_window,
        paused=row["status"] == "waiting_customer",
    )
    return {
        "attention_due": row["attention_due"],
        "solution_due": row["solution_due"],
        "attended_at": row["attended_at"],
        "resolved_at": row["resolved_at"],
        "attention_breached": _bool(row["attention_breached"]) or state.attention_breached,
        "solution_breached": _bool(row["solution_breached"]) or state.solution_breached,
        "attention_at_risk": state.attention_at_risk,
        "solution_at_risk": state.solution_at_risk,
        "paused": row["status"] == "waiting_customer",
    }


CLAIMABLE = ("name", "email", "phone")


def contact_json(contact: Row | None, claims: str | None) -> dict[str, Any]:
    """The `contact` object: what the channel proved, completed by what the customer typed.

    Fields taken from the customer's own words are listed in `claimed` (shown to agents as
    "dato declarado, no verificado"): usable to call or write back, but proof of nothing.
    """
    out: dict[str, Any] = {
        key: contact[key] if contact else None
        for key in ("name", "email", "phone", "telegram_chat_id")
    }
    typed = orjson.loads(claims) if claims else {}
    claimed = []
    for key in CLAIMABLE:
        if not out[key] and typed.get(key):
            out[key] = typed[key]
            claimed.append(key)
    out["claimed"] = claimed
    return out


def summary_json(row: Row, contact: Row | None, now: datetime, at_risk_window: Any) -> dict:
    """The fields of an incident without its messages and events (queue rows)."""
    return {
        "tracking": row["tracking"],
        "channel": row["channel"],
        "country": row["country"],
        "line": row["line"],
        "level": row["level"],
        "team": row["team"],
        "severity": row["severity"],
        "status": row["status"],
        "after_hours": _bool(row["after_hours"]),
        "opens_at": row["opens_at"],
        "subject": row["subject"],
        "description": row["description"],
        "contact": contact_json(contact, row.get("claims")),
        "occurred_at": row["occurred_at"],
        "registered_at": row["registered_at"],
        "registered_by": row["registered_by"],
        "updated_at": row["updated_at"],
        "claimed_by": row["claimed_by"],
        "language": row["language"],
        "sla": sla_json(row, now, at_risk_window),
        "category": row["category"],
        "resolution": row["resolution"],
        "csat": row.get("csat"),  # the customer's 1-5 answer to the resolution notice
        "routing": orjson.loads(row["routing"] or "{}"),
        "flags": orjson.loads(row["flags"] or "[]"),
    }


def incident_json(tx: Tx, row: Row, now: datetime, at_risk_window: Any) -> dict[str, Any]:
    """One incident, whole: summary, messages with attachments, events."""
    out = summary_json(row, tx.contact(row["contact_id"]), now, at_risk_window)
    messages = tx.messages(row["id"])
    attachments: dict[int, list[dict[str, Any]]] = {}
    for att in tx.attachments_of([m["id"] for m in messages]):
        attachments.setdefault(att["message_id"], []).append(
            {
                "filename": att["filename"],
                "content_type": att["content_type"],
                "size": att["size"],
                "url": f"/api/v1/attachments/{att['token']}",
                "state": att["state"],
            }
        )
    out["messages"] = [
        {
            "id": m["id"],
            "direction": m["direction"],
            "channel": m["channel"],
            "author": m["author"],
            "body": m["body"],
            "at": m["at"],
            "delivery_status": m["delivery_status"],
            "delivery_error": m["delivery_error"],
            "attachments": attachments.get(m["id"], []),
        }
        for m in messages
    ]
    out["events"] = [
        {"at": e["at"], "actor": e["actor"], "kind": e["kind"], "detail": orjson.loads(e["detail"])}
        for e in tx.events(row["id"])
    ]
    return out
