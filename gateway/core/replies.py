"""Agent replies leave through the channel the incident came in on, via the outbox.

`queue_reply` stores the outbound message and its outbox row in the caller's transaction; the
channel's sender (registered by its adapter) delivers it. A channel may register a guard that
refuses a reply it cannot deliver (WhatsApp's 24-hour window) or adds to its payload.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from gateway.core.errors import Rejected
from gateway.core.timeutil import iso
from gateway.store.tx import Row, Tx, to_json

# (tx, incident row, contact row, now) -> extra payload, or raise Rejected/Conflict.
ReplyGuard = Callable[[Tx, Row, Row, datetime], dict[str, Any]]

# Where a reply to each channel goes: the contact field that identifies the customer there.
RECIPIENT_FIELD = {
    "email": "email",
    "whatsapp": "phone",
    "telegram": "telegram_chat_id",
    "webchat": "visitor_id",
    "voice": "phone",  # read to the customer in an outbound call
    "click2call": "phone",
}


# Channels whose typed (unverified) address an agent may still use to answer: a Click2Call
# form's phone, the From of mail that failed DMARC, an unattested caller ID. The chat and the
# messaging apps answer only their proven identity.
CLAIM_FALLBACK = frozenset({"email", "voice", "click2call"})


def reply_recipient(channel: str, contact: Row, claims: str | None = None) -> str | None:
    """The customer's address on `channel`: proven, else (where allowed) the one they typed."""
    field = RECIPIENT_FIELD.get(channel)
    if not field:
        return None
    if contact.get(field):
        return str(contact[field])
    if channel in CLAIM_FALLBACK and claims:
        value = json.loads(claims).get(field)
        return str(value) if value else None
    return None


def queue_reply(
    tx: Tx,
    incident: Row,
    *,
    text: str,
    author: str,
    now: datetime,
    guards: Mapping[str, ReplyGuard] | None = None,
    kind: str = "reply",
    payload: Mapping[str, Any] | None = None,
    flags: tuple[str, ...] = (),
) -> int:
    """Store an agent's reply (or a notice of `kind`) and queue its delivery; returns its id."""
    if not text or not text.strip():
        raise Rejected("the reply text is empty", field="text")
    contact = tx.contact(incident["contact_id"]) or {}
    channel = incident["channel"]
    recipient = reply_recipient(channel, contact, incident.get("claims"))
    if not recipient:
        raise Rejected(f"the customer has no {channel} address to reply to", field="text")
    extra: dict[str, Any] = {}
    guard = (guards or {}).get(channel)
    if guard is not None:
        extra = guard(tx, incident, contact, now)
    last_in = tx.one(
        "SELECT external_ref FROM messages WHERE incident_id = ? AND direction = 'in'"
        " AND external_ref IS NOT NULL ORDER BY id DESC LIMIT 1",
        (incident["id"],),
    )
    refs = [
        r["external_ref"]
        for r in tx.all(
            "SELECT external_ref FROM messages WHERE incident_id = ? AND external_ref IS NOT NULL"
            " ORDER BY id",
            (incident["id"],),
        )
    ]
    message_id = tx.insert_message(
        {
            "incident_id": incident["id"],
            "direction": "out",
            "channel": channel,
            "author": author,
            "sender": None,
            "body": text.strip(),
            "at": iso(now),
            "delivery_status": "queued",
            **({"flags": to_json(list(flags))} if flags else {}),
        }
    )
    body = {
        "text": text.strip(),
        "tracking": incident["tracking"],
        "language": incident["language"],
        "subject": incident["subject"],
        "name": contact.get("name"),
        "in_reply_to": last_in["external_ref"] if last_in else None,
        "references": refs[-20:],
        "author": author,
        **(payload or {}),
        **extra,
    }
    tx.insert_outbox(
        channel=channel,
        kind=kind,
        recipient=recipient,
        at=now,
        payload=body,
        incident_id=incident["id"],
        message_id=message_id,
    )
    return message_id
