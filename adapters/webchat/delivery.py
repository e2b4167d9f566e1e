"""The `webchat` outbox sender: agent messages to the visitor's open sockets, or left for replay.

Delivers to every socket of the visitor held by *this* process (`hub`). With no
socket open the message stays stored (the next `hello` replays it) and, for replies to a
contact who gave an email, an email copy is queued for the email channel's sender. Limitation:
a multi-instance gateway only reaches sockets on the instance whose outbox worker takes the row;
the others see it on replay (a bus shared between instances would lift this).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from adapters.webchat.hub import Hub
from gateway.core.errors import TemporaryFailure
from gateway.core.model import OutboundItem, SendError
from gateway.core.timeutil import iso
from gateway.store.tx import Row, Tx

if TYPE_CHECKING:
    from gateway.core.services import Gateway


def email_guard(tx: Tx, incident: Row, contact: Row, now: datetime) -> dict[str, Any]:
    """Reply guard: carry the contact's email so an offline visitor gets a copy by mail."""
    return {"email": contact.get("email")}


def _queue_email_copy(tx: Tx, item: OutboundItem, email: str, now: datetime) -> int:
    return tx.insert_outbox(
        channel="email",
        kind="reply",
        recipient=email,
        at=now,
        payload=item.payload,
        incident_id=item.incident_id,
    )


class Delivery:
    """Sends outbox rows of channel `webchat` (kinds "reply", "ack", "notice"...)."""

    def __init__(self, gw: Gateway, hub: Hub):
        self.gw = gw
        self.hub = hub

    async def send(self, item: OutboundItem) -> str | None:
        """Deliver one row; returns "ws:N", "email-fallback" or "stored-for-replay"."""
        frame = {
            "type": "message",
            "from": "agent",
            "text": item.payload.get("text", ""),
            "at": iso(self.gw.clock()),
            "id": item.message_id,  # the client drops a replayed copy with the same id
            "tracking": item.tracking,
        }
        data = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
        delivered = await self.hub.send(item.recipient, data)
        if delivered:
            return f"ws:{delivered}"
        email = item.payload.get("email")
        if item.kind != "reply" or not email:
            return "stored-for-replay"  # replayed from the incident's messages on next hello
        now = self.gw.clock()
        try:
            await self.gw.store.transact(lambda tx: _queue_email_copy(tx, item, email, now))
        except TemporaryFailure as exc:
            raise SendError("could not queue the email copy", retry_after=5) from exc
        self.gw.outbox.wake()
        return "email-fallback"
