"""Click2Call call-backs: placing each attempt once, the answer TwiML, and the call outcomes.

An attempt is marked 'placing' before Calls.create; a lost answer (timeout, 5xx) leaves it
'unknown', and it is reconciled by listing the calls to that number before any new call. A
call-back that did not reach the customer is retried once after click2call.retry_delay (at the
line's next opening if it is closed then), then left in the queue with the reason.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import MultiDictProxy
from twilio.twiml.voice_response import VoiceResponse

from adapters.click2call import ledger as ledger
from adapters.twilio.calls import STATUS_PATH, CallFailed, call_api
from adapters.twilio.signature import verified_form
from adapters.twilio.twiml import (
    callback_url,
    connect_to_l1,
    line_by_number,
    record_voicemail,
    say_options,
    spoken_tracking,
    tracking_param,
    twiml_response,
)
from gateway.core.errors import Rejected, TemporaryFailure
from gateway.core.services import GW
from gateway.core.timeutil import iso, parse_iso
from gateway.store.tx import Tx
from routing.phone import normalize_phone
from routing.schedule import is_open, next_opening

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
ANSWER_PATH = "/webhooks/twilio/click2call/answer"
PLACING_STALE = timedelta(seconds=60)  # a 'placing' mark older than this is a lost attempt
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


def _move(
    tracking: str,
    attempt: int,
    from_states: tuple[str, ...],
    to_state: str,
    event: str,
    detail: dict[str, Any],
    now: datetime,
    **fields: Any,
) -> Any:
    def write(tx: Tx) -> bool:
        moved = ledger.transition(tx, tracking, attempt, from_states, to_state, **fields)
        att = ledger.attempt_of(tx, tracking, attempt)
        if moved and att is not None and event:
            tx.insert_event(
                att["incident_id"], now, "system", event, {"attempt": attempt, **detail}
            )
        return moved

    return write


async def run_attempt(gw: Gateway, tracking: str, attempt: int) -> str:
    """Place one call-back attempt unless it exists; 'placed', 'failed', 'unknown', 'busy'..."""
    att = await gw.store.read(lambda tx: ledger.attempt_of(tx, tracking, attempt))
    if att is None:
        log.warning("call-back %s attempt %d: no such attempt", tracking, attempt)
        return "missing"
    if att["call_sid"] or att["state"] in ledger.FINAL_STATES:
        return "done"
    cfg = gw.settings.routing
    line = cfg.lines.get(att["line"], cfg.default_line)
    api, now, state = call_api(gw), gw.clock(), att["state"]
    if state in ("placing", "unknown"):
        marked = parse_iso(att["marked_at"]) or now
        if state == "placing" and now - marked < PLACING_STALE:
            return "busy"  # being placed right now by another worker
        others = await gw.store.read(
            lambda tx: tx.all(
                "SELECT call_sid FROM click2call_attempts WHERE tracking = ?"
                " AND call_sid IS NOT NULL",
                (tracking,),
            )
        )
        try:
            sid = await api.find(
                to=att["phone"],
                from_=line.number,
                since=marked,
                exclude={r["call_sid"] for r in others},
            )
        except Exception as exc:  # the lookup failed: still unknown, never call blindly
            log.warning("call-back %s: reconciliation failed: %s", tracking, type(exc).__name__)
            return "unknown"
        if sid is not None:
            await gw.store.transact(
                _move(
                    tracking,
                    attempt,
                    (state,),
                    "placed",
                    "callback_call_reconciled",
                    {"call_sid": sid},
                    now,
                    call_sid=sid,
                )
            )
            return "placed"
    if not await gw.store.transact(
        lambda tx: ledger.transition(tx, tracking, attempt, (state,), "placing", marked_at=iso(now))
    ):
        return "busy"
    try:
        sid = await api.create(
            to=att["phone"],
            from_=line.number,  # caller ID: the customer's country line
            url=callback_url(gw.settings, ANSWER_PATH, tracking=tracking, attempt=attempt),
            method="POST",
            status_callback=gw.settings.public_url + STATUS_PATH,
            status_callback_method="POST",
        )
    except CallFailed as exc:
        done = gw.clock()
        to_state, event = (
            ("unknown", "callback_call_uncertain")
            if exc.created_unknown
            else ("failed", "callback_call_failed")
        )
        await gw.store.transact(
            _move(
                tracking,
                attempt,
                ("placing",),
                to_state,
                event,
                {"reason": exc.reason},
                done,
                error=exc.reason,
            )
        )
        gw.after_commit({"type": "incident", "event": "updated", "tracking": tracking})
        log.warning("call-back %s attempt %d: %s", tracking, attempt, exc.reason)
        return to_state
    await gw.store.transact(
        _move(
            tracking,
            attempt,
            ("placing", "unknown"),
            "placed",
            "callback_call_placed",
            {"call_sid": sid},
            gw.clock(),
            call_sid=sid,
        )
    )
    gw.after_commit({"type": "incident", "event": "updated", "tracking": tracking})
    return "placed"


def job_handler(gw: Gateway) -> Any:
    """Scheduler handler of `click2call_callback`: an unresolved outcome is retried later."""

    async def handle(payload: dict[str, Any]) -> None:
        tracking, attempt = str(payload["tracking"]), int(payload.get("attempt", 1))
        outcome = await run_attempt(gw, tracking, attempt)
        if outcome in ("unknown", "busy"):
            # Raising makes the scheduler run the job again later, which reconciles first.
            raise RuntimeError(f"call-back {tracking} attempt {attempt} is {outcome}")

    return handle


async def answer(request: web.Request) -> web.Response:
    """POST /webhooks/twilio/click2call/answer: the customer answered; connect them to L1."""
    gw = request.app[GW]
    form = await verified_form(request, gw.settings)
    tracking = tracking_param(request.query.get("tracking"))
    if tracking is None:
        raise Rejected("tracking is missing or malformed", field="tracking")
    line = line_by_number(gw.settings, form.get("From")) or gw.settings.routing.default_line
    try:
        req = await gw.store.read(
            lambda tx: tx.one(
                "SELECT name, language FROM click2call_requests WHERE tracking = ?", (tracking,)
            )
        )
    except TemporaryFailure:
        req = None  # still connect the customer: the call is already happening
    lang = req["language"] if req else line.language
    say, spoken = say_options(gw.settings, lang), spoken_tracking(tracking)
    resp = VoiceResponse()
    name = req["name"] if req else None
    resp.say(gw.texts.render("voice_callback_answer", lang, name=name, spoken=spoken), **say)
    if not connect_to_l1(resp, gw.settings, line, tracking=tracking, language=lang):
        resp.say(gw.texts.render("voice_no_agent", lang, spoken=spoken), **say)
        record_voicemail(resp, gw.settings, tracking=tracking, language=lang)
        resp.hangup()
    return twiml_response(resp)


async def on_call_status(gw: Gateway, form: MultiDictProxy[str]) -> None:
    """Call status callback of a call-back: event, and one retry when nobody answered."""
    sid, status = form.get("CallSid", ""), form.get("CallStatus", "")
    if not sid or status not in FINAL_CALL_STATUSES or form.get("Direction") == "inbound":
        return
    raw_duration = form.get("CallDuration", "")
    duration = int(raw_duration) if raw_duration.isdigit() else None
    now = gw.clock()
    cfg = gw.settings.routing
    delay = gw.settings.click2call.retry_delay

    def retry_at(code: str) -> datetime:
        line = cfg.lines.get(code, cfg.default_line)
        at = now + delay
        return at if is_open(line, at) else next_opening(line, at)

    att = await gw.store.transact(
        lambda tx: ledger.record_outcome(
            tx,
            sid=sid,
            to=normalize_phone(form.get("To", "")),
            from_line=form.get("From"),
            status=status,
            duration=duration,
            now=now,
            retry_at=retry_at,
        )
    )
    if att is not None:
        gw.after_commit({"type": "incident", "event": "updated", "tracking": att["tracking"]})
        gw.scheduler.wake()
