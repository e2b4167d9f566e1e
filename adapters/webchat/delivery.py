"""The `webchat` outbox sender: agent messages to the visitor's open sockets, or left for replay.

Delivers to every socket of the visitor: those held by this process (`hub`) directly, those
held by another instance through the store's broadcast (`presence` says where). With no
socket open anywhere the message stays stored (the next `hello` replays it) and, for replies
to a visitor who confirmed an email address (`confirm`), an email copy is queued for the email
channel's sender; a typed, unconfirmed address never gets one (issue #15).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from adapters.webchat.confirm import confirmed_email
from gateway.core.errors import TemporaryFailure
from gateway.core.model import OutboundItem, SendError
from gateway.core.timeutil import iso
from gateway.store.tx import Row, Tx

if TYPE_CHECKING:
    from gateway.core.services import Gateway


def email_guard(tx: Tx, incident: Row, contact: Row, now: datetime) -> dict[str, Any]:
    """Reply guard: carry the visitor's confirmed email so an offline visitor gets a copy."""
    return {"email": confirmed_email(tx, contact.get("visitor_id"))}


def status_frame(tracking: str | None, payload: dict[str, Any]) -> dict[str, Any]:
    """The chat's `status` frame: the conversation's incident is resolved, closed or reopened;
    `csat` asks the visitor for a 1-5 rating (answered as an ordinary message)."""
    frame: dict[str, Any] = {"type": "status", "tracking": tracking, "status": payload["status"]}
    if payload.get("csat"):
        frame["csat"] = True
    return frame


def _queue_email_copy(tx: Tx, item: OutboundItem, email: str, now: datetime) -> int:
    return tx.insert_outbox(
        channel="email",
        kind=item.kind,  # a reply, or the resolution notice
        recipient=email,
        at=now,
        payload=item.payload,
        incident_id=item.incident_id,
    )


class Delivery:
    """Sends outbox rows of channel `webchat` (kinds "reply", "ack", "notice"...)."""

    def __init__(self, gw: Gateway, fan_out: Callable[[str, str], Awaitable[int]]):
        self.gw = gw
        self.fan_out = fan_out  # (visitor, frame) -> sockets reached here, -1 if elsewhere

    async def send(self, item: OutboundItem) -> str | None:
        """Deliver one row; returns "ws:N", "email-fallback" or "stored-for-replay"."""
        frames: list[dict[str, Any]] = []
        if item.kind != "status":
            frames.append(
                {
                    "type": "message",
                    "from": "agent",
                    "text": item.payload.get("text", ""),
                    "at": iso(self.gw.clock()),
                    "id": item.message_id,  # the client drops a replayed copy with the same id
                    "tracking": item.tracking,
                    "author": item.payload.get("author"),  # the agent's name on the reply
                }
            )
        if item.kind in ("notice", "status") and item.payload.get("status"):
            frames.append(status_frame(item.tracking, item.payload))
        delivered = 0
        for frame in frames:
            data = json.dumps(frame, ensure_ascii=False, separators=(",", ":"))
            try:
                delivered = await self.fan_out(item.recipient, data)
            except TemporaryFailure as exc:
                raise SendError("could not reach the other instances", retry_after=5) from exc
        if delivered < 0:
            return "ws:relayed"
        if delivered:
            return f"ws:{delivered}"
        email = item.payload.get("email")
        if item.kind not in ("reply", "notice") or not email:
            return "stored-for-replay"  # replayed from the incident's messages on next hello
        now = self.gw.clock()
        try:
            await self.gw.store.transact(lambda tx: _queue_email_copy(tx, item, email, now))
        except TemporaryFailure as exc:
            raise SendError("could not queue the email copy", retry_after=5) from exc
        self.gw.outbox.wake()
        return "email-fallback"
