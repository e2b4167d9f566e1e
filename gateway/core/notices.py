"""Notices to the customer when an agent changes an incident's state, queued in the same
transaction as the change: the resolution notice with the 1-5 satisfaction question (in the
incident's own channel), and the chat's live status ("resuelto", "cerrado").

Only channels that carry written messages get a resolution notice; a channel's reply guard may
refuse it (WhatsApp's 24-hour window without a template) — then the agent's action still
succeeds and the incident's audit trail says why the customer was not told.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from config.settings import Settings
from gateway.core.errors import Conflict, Rejected
from gateway.core.replies import ReplyGuard, queue_reply, reply_recipient
from gateway.core.texts import Texts
from gateway.store.tx import Row, Tx

NOTICE_CHANNELS = frozenset({"email", "whatsapp", "telegram", "webchat"})
# Channels with a live view of the conversation that shows the incident's status.
STATUS_CHANNELS = frozenset({"webchat"})


def queue_resolution_notice(
    tx: Tx,
    incident: Row,
    *,
    author: str,
    now: datetime,
    texts: Texts,
    settings: Settings,
    guards: Mapping[str, ReplyGuard],
) -> str | None:
    """Queue the resolution notice; returns the reason when the customer cannot be told."""
    channel = incident["channel"]
    if channel not in NOTICE_CHANNELS:
        reason = "el canal no admite mensajes escritos"
    else:
        contact = tx.contact(incident["contact_id"]) or {}
        reason = None if reply_recipient(channel, contact) else "sin dirección del cliente"
    if reason is None:
        days = max(1, round(settings.incidents.csat_window.total_seconds() / 86400))
        text = texts.render(
            "resolution_notice",
            incident["language"],
            tracking=incident["tracking"],
            name=contact.get("name"),
            days=days,
        )
        try:
            queue_reply(
                tx,
                incident,
                text=text,
                author=author,
                now=now,
                guards=guards,
                kind="notice",
                payload={"status": "resolved", "csat": True},
                flags=("resolution_notice",),
            )
        except (Rejected, Conflict) as exc:
            reason = exc.message
    if reason is not None:
        tx.insert_event(
            incident["id"], now, "system", "resolution_notice_skipped", {"reason": reason}
        )
        return reason
    tx.insert_event(incident["id"], now, "system", "resolution_notice_queued", {"channel": channel})
    return None


def queue_status(tx: Tx, incident: Row, status: str, now: datetime) -> None:
    """Tell a live chat the incident's new status (closed, reopened); other channels: nothing."""
    if incident["channel"] not in STATUS_CHANNELS:
        return
    recipient = reply_recipient(incident["channel"], tx.contact(incident["contact_id"]) or {})
    if not recipient:
        return
    tx.insert_outbox(
        channel=incident["channel"],
        kind="status",
        recipient=recipient,
        at=now,
        payload={"status": status, "tracking": incident["tracking"]},
        incident_id=incident["id"],
    )
