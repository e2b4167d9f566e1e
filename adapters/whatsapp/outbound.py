"""WhatsApp out: the outbox sender (Twilio Messages API) and the 24-hour-window reply guard.

The sender only translates an outbox row into `messages.create_async` and Twilio's errors into
`SendError` (429/5xx/timeouts retry; other 4xx are permanent with Twilio's code in the reason).
The guard refuses free text outside WhatsApp's customer-service window unless an approved
template (ContentSid) is configured. Neither touches routing or the incident's life cycle.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from twilio.base.exceptions import TwilioRestException

from adapters.twilio.client import TWILIO_CLIENT
from config.settings import Settings
from gateway.core.errors import Conflict
from gateway.core.model import OutboundItem, SendError
from gateway.core.replies import ReplyGuard
from gateway.core.timeutil import parse_iso
from gateway.store.tx import Row, Tx

if TYPE_CHECKING:
    from gateway.core.services import Gateway

STATUS_PATH = "/webhooks/twilio/status"
UNCONFIGURED_RETRY = 300.0  # seconds: an operator has to set the credentials first


def last_inbound_at(tx: Tx, incident_id: int) -> datetime | None:
    """When the customer last wrote on this incident through WhatsApp."""
    row = tx.one(
        "SELECT max(at) AS at FROM messages WHERE incident_id = ? AND direction = 'in'"
        " AND channel = 'whatsapp'",
        (incident_id,),
    )
    return parse_iso(row["at"]) if row else None


def make_reply_guard(settings: Settings) -> ReplyGuard:
    """gw.reply_guards["whatsapp"]: free text inside the window, the template outside it."""

    def guard(tx: Tx, incident: Row, contact: Row, now: datetime) -> dict[str, Any]:
        last = last_inbound_at(tx, incident["id"])
        window = settings.whatsapp.session_window
        # WhatsApp Business policy: free-form messages only within 24 h of the customer's last
        # message; after that only an approved template may open the conversation again.
        if last is not None and now - last < window:
            return {}
        content_sid = settings.whatsapp.template_content_sid
        if not content_sid:
            hours = int(window.total_seconds() // 3600)
            raise Conflict(
                f"El cliente no escribe por WhatsApp desde hace más de {hours} horas: WhatsApp "
                "no permite enviarle texto libre fuera de esa ventana y no hay una plantilla "
                "aprobada configurada (whatsapp.template_content_sid). Contacte al cliente por "
                "otro canal o espere a que vuelva a escribir.",
                field="text",
            )
        tx.insert_event(
            incident["id"],
            now,
            "system",
            "whatsapp_template_used",
            {"content_sid": content_sid, "reason": "fuera de la ventana de 24 horas"},
        )
        return {
            "content_sid": content_sid,
            "content_variables": json.dumps({"1": incident["tracking"]}),
        }

    return guard


def send_error(exc: TwilioRestException) -> SendError:
    """Twilio REST failure → retryable (429, 5xx) or permanent (other 4xx) with its code."""
    reason = f"Twilio {exc.status} error {exc.code}: {exc.msg}"[:500]
    if exc.status == 429 or exc.status >= 500:
        return SendError(reason, retry_after=30.0 if exc.status == 429 else None)
    return SendError(reason, permanent=True)


def make_sender(gw: Gateway) -> Callable[[OutboundItem], Awaitable[str | None]]:
    """The outbox sender for channel "whatsapp" (kinds "ack", "reply" and any text row)."""
    settings = gw.settings

    async def send(item: OutboundItem) -> str | None:
        client = gw.extras.get(TWILIO_CLIENT)
        if client is None:
            raise SendError("Twilio is not configured", retry_after=UNCONFIGURED_RETRY)
        kwargs: dict[str, Any] = {
            "from_": f"whatsapp:{settings.whatsapp.number}",
            "to": f"whatsapp:{item.recipient}",
            "status_callback": settings.public_url + STATUS_PATH,
        }
        if item.payload.get("content_sid"):
            kwargs["content_sid"] = item.payload["content_sid"]
            kwargs["content_variables"] = item.payload.get("content_variables")
        else:
            text = str(item.payload.get("text") or "").strip()
            if not text:
                raise SendError(f"outbox row {item.id} has no text to send", permanent=True)
            kwargs["body"] = text
        try:
            message = await client.messages.create_async(**kwargs)
        except TwilioRestException as exc:
            raise send_error(exc) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SendError(f"Twilio unreachable: {type(exc).__name__}: {exc}"[:500]) from None
        return str(message.sid)

    return send
