"""Delivery reports (RFC 3464 DSNs) about mail the gateway sent: linked, never a new incident.

`link_bounce` runs inside one store transaction, before the `250`: it finds the outbound mail
the report names (outbox.provider_id or an outbound message's external_ref), records a
`delivery_failed` event on that incident, marks the message failed and flags the address. It
returns None when the report names nothing of ours (the caller then stores it as its own
incident, flagged `bounce`, without acknowledgement). No parsing and no decisions about SMTP.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from gateway.core.timeutil import iso
from gateway.store.tx import Tx

MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        -- Acknowledgements have no message row: a reply (or a DSN) naming their Message-ID is
        -- found through the outbox (gateway.store.tx.Tx.incident_by_message_refs).
        CREATE INDEX IF NOT EXISTS outbox_provider ON outbox(provider_id)
            WHERE provider_id IS NOT NULL;
        -- Messages whose body is still to be extracted (adapters.email.extract).
        CREATE INDEX IF NOT EXISTS email_messages_pending ON messages(incident_id)
            WHERE flags LIKE '%"body_pending"%';
        CREATE INDEX IF NOT EXISTS email_receipts_message ON receipts(message_id)
            WHERE channel = 'email';
        -- Addresses that bounced mail we sent, for agents and the sender.
        CREATE TABLE IF NOT EXISTS email_bounces (
            id INTEGER PRIMARY KEY,
            address TEXT NOT NULL,
            incident_id INTEGER REFERENCES incidents(id),
            at TEXT NOT NULL,
            diagnostic TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX IF NOT EXISTS email_bounces_address ON email_bounces(address, at);
        """,
    ),
]


def _sent_mail(tx: Tx, refs: Sequence[str]) -> dict | None:
    marks = ", ".join("?" * len(refs))
    row = tx.one(
        "SELECT incident_id, recipient, message_id, kind FROM outbox WHERE channel = 'email'"
        f" AND provider_id IN ({marks}) AND incident_id IS NOT NULL ORDER BY id DESC LIMIT 1",
        refs,
    )
    return row or tx.one(
        "SELECT incident_id, NULL AS recipient, id AS message_id, 'reply' AS kind FROM messages"
        f" WHERE direction = 'out' AND external_ref IN ({marks}) ORDER BY id DESC LIMIT 1",
        refs,
    )


def link_bounce(
    tx: Tx,
    *,
    provider_id: str,
    refs: Sequence[str],
    recipients: Sequence[str],
    diagnostic: str,
    raw: bytes,
    now: datetime,
) -> str | None:
    """Record a DSN on the incident whose mail it reports; its tracking number, or None."""
    previous = tx.receipt("email", provider_id)
    if previous is not None and previous["incident_id"] is not None:
        incident = tx.incident(previous["incident_id"])
        return str(incident["tracking"]) if incident else None
    refs = [r for r in dict.fromkeys(refs) if r][:50]
    sent = _sent_mail(tx, refs) if refs else None
    if sent is None:
        return None
    incident = tx.incident(sent["incident_id"])
    assert incident is not None
    addresses = list(recipients) or ([sent["recipient"]] if sent["recipient"] else [])
    tx.insert_event(
        incident["id"],
        now,
        "system",
        "delivery_failed",
        {
            "channel": "email",
            "kind": sent["kind"],
            "reason": diagnostic or "rebote del servidor de correo del destinatario",
            "recipients": addresses,
            "source": "bounce",
        },
    )
    if sent["message_id"]:
        tx.execute(
            "UPDATE messages SET delivery_status = 'failed', delivery_error = ?"
            " WHERE id = ? AND direction = 'out'",
            (diagnostic or "bounced", sent["message_id"]),
        )
    for address in addresses:
        tx.execute(
            "INSERT INTO email_bounces (address, incident_id, at, diagnostic) VALUES (?, ?, ?, ?)",
            (address.lower(), incident["id"], iso(now), diagnostic),
        )
    flags = set(json.loads(incident["flags"] or "[]")) | {"contact_bounced"}
    tx.update_incident(incident["id"], {"flags": json.dumps(sorted(flags)), "updated_at": iso(now)})
    if previous is not None:  # kept earlier by the core (shunted): complete it in place
        tx.execute(
            "UPDATE receipts SET incident_id = ?, state = 'done', error = NULL, raw = ?"
            " WHERE id = ?",
            (incident["id"], raw, previous["id"]),
        )
    else:
        tx.insert_receipt(
            "email", provider_id, now, incident_id=incident["id"], message_id=None, raw=raw
        )
    return str(incident["tracking"])
