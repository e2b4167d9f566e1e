"""POST /webhooks/twilio/status: Twilio status callbacks for messages and calls (signed forms).

Message callbacks (MessageSid + MessageStatus) move `messages.delivery_status` forward only:
queued < sent < delivered < read; failed/undelivered store Twilio's ErrorCode in `delivery_error`
and add a `delivery_failed` event agents see. Unknown sids: 200, a warning, and one persisted
second look 30 s later (Twilio may call back before the outbox has stored the SID). Call callbacks
(CallSid + CallStatus, no MessageSid) go to `gw.extras["twilio_call_status_handlers"]`, a list of
`async fn(form: MultiDictProxy[str]) -> None` the voice adapter appends to (see
`register_call_status_handler`); each is awaited in order before the 200.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import MultiDictProxy

from adapters.twilio.signature import verified_form
from gateway.core.errors import Rejected
from gateway.core.scheduler import schedule_job
from gateway.core.services import gw_of
from gateway.store.tx import Tx

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
STATUS_PATH = "/webhooks/twilio/status"
CALL_HANDLERS = "twilio_call_status_handlers"
STATUS_JOB = "twilio_message_status"
STATUS_RETRY = timedelta(seconds=30)
CallStatusHandler = Callable[[MultiDictProxy[str]], Awaitable[None]]
# Twilio's message status lifecycle (docs: "Message resource", Status values). A status only
# replaces a lower one, so late or repeated callbacks never move a message backwards.
RANK = {
    "accepted": 0,
    "scheduled": 0,
    "queued": 1,
    "sending": 1,
    "sent": 2,
    "failed": 3,
    "undelivered": 3,
    "delivered": 3,
    "read": 4,
}
FAILED = ("failed", "undelivered")
# Agent-facing explanations of frequent WhatsApp error codes (Twilio error dictionary).
KNOWN_ERRORS = {
    "63016": "fuera de la ventana de 24 horas de WhatsApp: solo una plantilla aprobada",
    "63003": "el número de destino no es válido en WhatsApp",
    "63024": "destinatario no válido para WhatsApp",
    "63049": "Meta decidió no entregar el mensaje",
    "30003": "el teléfono del cliente no está disponible",
    "30005": "número desconocido o inexistente",
    "30006": "el número es fijo o no puede recibir mensajes",
    "30008": "error desconocido del operador",
}


def register_call_status_handler(gw: Gateway, handler: CallStatusHandler) -> None:
    """Have call status callbacks (CallSid + CallStatus) passed to `handler`."""
    gw.extras.setdefault(CALL_HANDLERS, []).append(handler)


def error_text(code: str, message: str) -> str:
    """'Twilio 63016: <explanation>' as stored in messages.delivery_error."""
    explanation = message or KNOWN_ERRORS.get(code, "")
    return f"Twilio {code or '?'}: {explanation}".strip().rstrip(":")[:500]


def apply_message_status(
    tx: Tx, sid: str, status: str, code: str, error: str, now: datetime
) -> dict[str, Any] | None:
    """Move the outbound message forward; None when the sid is unknown (runs in the DB thread)."""
    row = tx.one(
        "SELECT m.id, m.incident_id, m.delivery_status, i.tracking FROM messages m"
        " JOIN incidents i ON i.id = m.incident_id"
        " WHERE m.external_ref = ? AND m.direction = 'out' ORDER BY m.id DESC LIMIT 1",
        (sid,),
    )
    if row is None:
        return None
    current = RANK.get(row["delivery_status"] or "", -1)
    if RANK[status] <= current:
        return {**row, "changed": False}
    if status in FAILED:
        text = error_text(code, error)
        tx.execute(
            "UPDATE messages SET delivery_status = ?, delivery_error = ? WHERE id = ?",
            (status, text, row["id"]),
        )
        detail = {"channel": "whatsapp", "message_sid": sid, "status": status, "error_code": code}
        tx.insert_event(
            row["incident_id"], now, "system", "delivery_failed", {**detail, "reason": text}
        )
    else:
        tx.execute("UPDATE messages SET delivery_status = ? WHERE id = ?", (status, row["id"]))
    return {**row, "changed": True}


def _apply_or_defer(tx: Tx, update: dict[str, str], now: datetime, defer: bool) -> Any:
    result = apply_message_status(
        tx, update["sid"], update["status"], update["code"], update["error"], now
    )
    if result is None and defer:
        # Twilio can call back before the outbox has recorded the SID create() returned: look
        # again once, a little later (persisted, so a restart does not lose it).
        key = f"{update['sid']}:{update['status']}"
        schedule_job(tx, STATUS_JOB, key, now + STATUS_RETRY, update)
    return result


async def _apply(gw: Gateway, update: dict[str, str], *, defer: bool) -> None:
    now = gw.clock()
    result = await gw.store.transact(lambda tx: _apply_or_defer(tx, update, now, defer))
    if result is None:
        later = "; looking again later" if defer else ""
        log.warning("status %s for unknown message %s%s", update["status"], update["sid"], later)
    elif result["changed"]:
        status = update["status"]
        gw.after_commit({"type": "delivery", "tracking": result["tracking"], "status": status})


async def _message_status(gw: Gateway, form: MultiDictProxy[str]) -> None:
    sid = form["MessageSid"]
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if status not in RANK:
        log.info("message %s: status %r ignored", sid, status[:30])
        return
    update = {
        "sid": sid[:64],
        "status": status,
        "code": form.get("ErrorCode", "").strip()[:10],
        "error": form.get("ErrorMessage", "").strip()[:300],
    }
    await _apply(gw, update, defer=True)


async def _call_status(gw: Gateway, form: MultiDictProxy[str]) -> None:
    handlers: list[CallStatusHandler] = gw.extras.get(CALL_HANDLERS) or []
    if not handlers:
        log.warning(
            "call status %s for %s: no handler registered", form["CallStatus"], form["CallSid"]
        )
    for handler in handlers:
        await handler(form)


async def status_callback(request: web.Request) -> web.Response:
    """POST /webhooks/twilio/status."""
    gw = gw_of(request)
    form = await verified_form(request, gw.settings)
    if form.get("MessageSid"):
        await _message_status(gw, form)
    elif form.get("CallSid") and form.get("CallStatus"):
        await _call_status(gw, form)
    else:
        raise Rejected(
            "not a status callback: expected MessageSid + MessageStatus or CallSid + CallStatus",
            field="MessageSid",
        )
    return web.Response(status=200)


def setup(gw: Gateway) -> None:
    """Register the status endpoint, the late-status job and the call handler registry."""
    gw.extras.setdefault(CALL_HANDLERS, [])

    async def retry_status(payload: dict[str, Any]) -> None:
        await _apply(gw, {k: str(v) for k, v in payload.items()}, defer=False)

    gw.scheduler.register(STATUS_JOB, retry_status)
    gw.app.router.add_post(STATUS_PATH, status_callback)
