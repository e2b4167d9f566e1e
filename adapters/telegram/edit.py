"""Edited Telegram messages (`edited_message` updates) reach their incident as edits.

Runs inside one store transaction: the message the customer edited is found by its receipt
(`bot:chat:message_id`), its text replaced, and a `message_edited` event (before and after)
recorded on the incident, so agents see it as an edit of that message. Each edit is kept
once (receipt `bot:chat:message_id:edit:<edit_date>`). An edit of a message the gateway never
received returns None: the caller takes it as a new message.
"""

from __future__ import annotations

from datetime import datetime

from gateway.core.model import receipt_key
from gateway.core.timeutil import iso
from gateway.store.tx import Tx


def apply_edit(
    tx: Tx, original_key: str, edit_key: str, text: str, raw: bytes, now: datetime
) -> tuple[str, bool] | None:
    """(tracking, fresh) of the incident whose message was edited, or None if unknown."""
    tx.lock_key(receipt_key("telegram", original_key))
    done = tx.receipt("telegram", edit_key)
    if done is not None and done["incident_id"] is not None:
        incident = tx.incident(done["incident_id"])
        return (str(incident["tracking"]), False) if incident else None
    original = tx.receipt("telegram", original_key)
    if original is None or original["message_id"] is None:
        return None
    message = tx.one(
        "SELECT id, body, incident_id FROM messages WHERE id = ?", (original["message_id"],)
    )
    if message is None:
        return None
    incident = tx.incident(message["incident_id"])
    assert incident is not None
    tx.execute("UPDATE messages SET body = ? WHERE id = ?", (text, message["id"]))
    tx.insert_event(
        incident["id"],
        now,
        "customer",
        "message_edited",
        {"message_id": message["id"], "before": message["body"], "text": text},
    )
    tx.update_incident(incident["id"], {"updated_at": iso(now)})
    tx.insert_receipt(
        "telegram", edit_key, now, incident_id=incident["id"], message_id=None, raw=raw
    )
    return str(incident["tracking"]), True
