"""Phone lines: Twilio Programmable Voice webhooks for calls to the country lines.

A call becomes an incident (dedupe on CallSid) before its TwiML is returned: in hours the caller
hears the tracking number and is connected to the line's L1 destination; after hours, the hours
and a voicemail (see `voicemail`). If the store cannot commit in time, the caller is still
connected and the call is registered later from its status callback. No slow work in a webhook.
Caller ID is not identity: only a number with STIR/SHAKEN attestation A joins its open incident;
any other caller gets a new one and may key in an existing case's number (see `case`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiDictProxy
from prometheus_client import Counter
from twilio.twiml.voice_response import VoiceResponse

from adapters.twilio.calls import add_event, reply_sender
from adapters.twilio.client import install_client
from adapters.twilio.signature import verified_form
from adapters.twilio.twiml import (
    CONNECTED,
    VOICE_PATH,
    connect_to_l1,
    line_by_number,
    record_voicemail,
    say_options,
    spoken_tracking,
    tracking_param,
    twiml_response,
)
from adapters.voice import case
from adapters.voice import voicemail as voice_voicemail
from gateway.core.errors import Rejected, TemporaryFailure
from gateway.core.model import Contact, Inbound, Receipt
from gateway.core.services import GW
from routing.model import Line
from routing.phone import normalize_phone
from routing.schedule import is_open, next_opening

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
INTAKE_BUDGET = 8.0  # seconds: Twilio gives up on a webhook after 15 s
BUDGET = "voice_intake_budget"  # key in gw.extras: overrides INTAKE_BUDGET (tests)
FAILURES = "voice_unregistered_calls"  # key in gw.extras
# Caller IDs Twilio uses for withheld numbers (Twilio docs, "anonymous caller ID").
ANONYMOUS = frozenset({"+266696687", "+7378742833", "+2562533", "+8656696", "+86282452253"})
FINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
# Twilio's `StirVerstat` for a number the originating carrier fully attested (STIR/SHAKEN "A":
# it knows the caller and that the caller may use this number). B, C, failures or no value at
# all (most international calls) prove nothing about who is calling.
ATTESTED = "TN-Validation-Passed-A"


def attested(form: MultiDictProxy[str]) -> bool:
    """The caller's number is certified by STIR/SHAKEN attestation A."""
    return form.get("StirVerstat", "").strip() == ATTESTED


def required(form: MultiDictProxy[str], name: str) -> str:
    """A parameter Twilio always sends; 400 naming it when absent."""
    value = form.get(name, "").strip()
    if not value:
        raise Rejected(f"the Twilio parameter {name} is missing", field=name)
    return value


def caller_phone(form: MultiDictProxy[str]) -> str | None:
    """The caller's E.164 number, or None when withheld or unparsable."""
    raw = form.get("From") or form.get("Caller") or ""
    phone = normalize_phone(raw)
    return None if phone is None or phone in ANONYMOUS else phone


def called_line(gw: Gateway, form: MultiDictProxy[str]) -> Line:
    """The country line that was called (`To`), the default line if `To` is not one of ours."""
    called = form.get("To") or form.get("Called")
    return line_by_number(gw.settings, called) or gw.settings.routing.default_line


def call_inbound(gw: Gateway, form: MultiDictProxy[str], line: Line) -> Inbound:
    """The channel-neutral inbound item of a call to `line`."""
    sid = required(form, "CallSid")
    phone = caller_phone(form)
    proven = phone if attested(form) else None
    name = (form.get("CallerName") or "").strip() or None
    return Inbound(
        channel="voice",
        provider_id=sid,
        # An unattested caller ID can be spoofed: it is kept as a claim, usable to call back.
        contact=Contact(name=name, phone=proven),
        claims={"phone": phone} if phone and not proven else {},
        text=gw.texts.render("voice_incoming", line.language, caller=phone, line=line),
        received_at=gw.clock(),
        called=form.get("To") or form.get("Called"),
        message_ref=sid,  # voicemail transcriptions thread into the call by its CallSid
        thread_by_contact=proven is not None,  # an attested caller's open case takes the call
        acknowledge=False,  # the TwiML itself tells the caller the tracking number
        language=line.language,
        author=phone,
        raw=urlencode(list(form.items())).encode(),
    )


def answer_twiml(gw: Gateway, receipt: Receipt, *, ask_case: bool = False) -> VoiceResponse:
    """TwiML for a registered call: tracking number, then L1 in hours or voicemail after.

    With `ask_case` (a caller ID without attestation A) the caller may first key in the
    tracking number of an existing case (`case.gather`).
    """
    settings = gw.settings
    line = settings.routing.lines.get(receipt.country, settings.routing.default_line)
    lang, tracking, now = receipt.language, receipt.tracking, gw.clock()
    say, spoken = say_options(settings, lang), spoken_tracking(tracking)
    resp = VoiceResponse()
    if is_open(line, now):
        resp.say(gw.texts.render("voice_welcome", lang, spoken=spoken), **say)
    else:
        opens_at = next_opening(line, now)
        text = gw.texts.render(
            "voice_after_hours", lang, spoken=spoken, line=line, opens_at=opens_at
        )
        resp.say(text, **say)
    if ask_case:
        case.gather(gw, resp, line, tracking=tracking, language=lang)
    continue_call(gw, resp, line, tracking=tracking, language=lang)
    return resp


def continue_call(
    gw: Gateway, resp: VoiceResponse, line: Line, *, tracking: str, language: str
) -> None:
    """After the greeting: L1 in hours (voicemail if it has no destination), else voicemail."""
    settings = gw.settings
    say, spoken = say_options(settings, language), spoken_tracking(tracking)
    if is_open(line, gw.clock()):
        if connect_to_l1(resp, settings, line, tracking=tracking, language=language):
            return
        resp.say(gw.texts.render("voice_no_agent", language, spoken=spoken), **say)
    record_voicemail(resp, settings, tracking=tracking, language=language)
    # Reached only when the caller left no message (<Record> timed out on silence).
    resp.say(gw.texts.render("voice_voicemail_empty", language, spoken=spoken), **say)
    resp.hangup()


async def incoming(request: web.Request) -> web.Response:
    """POST /webhooks/twilio/voice: register the call, then answer with TwiML."""
    gw = request.app[GW]
    form = await verified_form(request, gw.settings)
    line = called_line(gw, form)
    msg = call_inbound(gw, form, line)
    try:
        budget = float(gw.extras.get(BUDGET, INTAKE_BUDGET))
        receipt = await asyncio.wait_for(gw.intake.accept(msg), budget)
    except (TemporaryFailure, TimeoutError) as exc:
        # The call is the contact: never drop it. Connect it and register it from its status
        # callback once the store is back (checklist T13).
        gw.extras[FAILURES].labels(line.code).inc()
        log.error(
            "call %s to line %s not registered (%s); connecting it to L1 anyway",
            msg.provider_id,
            line.code,
            type(exc).__name__,
        )
        resp = VoiceResponse()
        say = say_options(gw.settings, line.language)
        resp.say(gw.texts.render("voice_unavailable", line.language), **say)
        connect_to_l1(resp, gw.settings, line, tracking=None, language=line.language)
        return twiml_response(resp)
    ask_case = msg.contact.phone is None and bool(msg.claims.get("phone"))
    return twiml_response(answer_twiml(gw, receipt, ask_case=ask_case))


async def locate_call(
    gw: Gateway, tracking: str | None, form: MultiDictProxy[str]
) -> tuple[int, str]:
    """(incident id, tracking) of a call; registers the call now if that never happened."""
    sid = required(form, "CallSid")

    def find(tx: Any) -> tuple[int, str] | None:
        row = tx.incident_by_tracking(tracking) if tracking else None
        receipt = None if row else tx.receipt("voice", sid)
        if receipt is not None and receipt["incident_id"] is not None:
            row = tx.incident(receipt["incident_id"])
        return (int(row["id"]), row["tracking"]) if row else None

    found = await gw.store.read(find)
    if found is not None:
        return found
    receipt = await gw.intake.accept(call_inbound(gw, form, called_line(gw, form)))
    if not receipt.duplicate:  # a concurrent callback may have registered it a moment ago
        detail = {"call_sid": sid, "reason": "the store was unavailable when the call arrived"}
        await add_event(gw, receipt.incident_id, receipt.tracking, "registered_late", detail)
        log.info("call %s registered late as %s", sid, receipt.tracking)
    return receipt.incident_id, receipt.tracking


async def dial_status(request: web.Request) -> web.Response:
    """POST .../voice/dial-status: the <Dial>/<Enqueue> outcome becomes an incident event."""
    gw = request.app[GW]
    form = await verified_form(request, gw.settings)
    tracking = tracking_param(request.query.get("tracking"))
    lang = "en" if request.query.get("lang") == "en" else "es"
    status = form.get("DialCallStatus") or form.get("QueueResult") or "unknown"
    detail = {
        "status": status,
        "duration": form.get("DialCallDuration") or form.get("QueueTime"),
        "dial_call_sid": form.get("DialCallSid"),
        "call_sid": form.get("CallSid"),
        "destination": "queue" if "QueueResult" in form else "dial",
    }
    try:
        incident_id, tracking = await locate_call(gw, tracking, form)
        await add_event(gw, incident_id, tracking, "l1_call", detail)
    except TemporaryFailure:
        log.error(
            "dial outcome %s of call %s not recorded: store unavailable",
            status,
            form.get("CallSid"),
        )
    resp = VoiceResponse()
    if status not in CONNECTED and status != "hangup" and tracking:
        say = say_options(gw.settings, lang)
        resp.say(gw.texts.render("voice_no_agent", lang, spoken=spoken_tracking(tracking)), **say)
        record_voicemail(resp, gw.settings, tracking=tracking, language=lang)
    resp.hangup()
    return twiml_response(resp)


async def on_call_status(gw: Gateway, form: MultiDictProxy[str]) -> None:
    """Call status callback: late registration of inbound calls; outcome of reply calls."""
    sid, status = form.get("CallSid", ""), form.get("CallStatus", "")
    if not sid or status not in FINAL_CALL_STATUSES:
        return
    if form.get("Direction") == "inbound":
        incident_id, tracking = await locate_call(gw, None, form)
        kind = "call_ended"
    else:
        row = await gw.store.read(
            lambda tx: tx.one(
                "SELECT o.incident_id, i.tracking FROM outbox o JOIN incidents i"
                " ON i.id = o.incident_id WHERE o.provider_id = ? AND o.kind = 'reply'"
                " AND o.channel IN ('voice', 'click2call')",
                (sid,),
            )
        )
        if row is None:
            return  # not a reply call of ours (Click2Call has its own handler)
        incident_id, tracking, kind = row["incident_id"], row["tracking"], "reply_call_ended"
    detail = {"call_sid": sid, "status": status, "duration": form.get("CallDuration")}
    now = gw.clock()

    def write(tx: Any) -> bool:
        # Twilio may repeat a callback: one event per call and kind.
        seen = tx.one(
            "SELECT 1 FROM events WHERE incident_id = ? AND kind = ?"
            f" AND {tx.json_field('detail', 'call_sid')} = ?",
            (incident_id, kind, sid),
        )
        if seen is None:
            tx.insert_event(incident_id, now, "system", kind, detail)
        return seen is None

    if await gw.store.transact(write):
        gw.after_commit({"type": "incident", "event": "updated", "tracking": tracking})


def setup(gw: Gateway) -> None:
    """Routes of the phone lines, the reply sender, the call-status handler and a counter."""
    install_client(gw)
    router = gw.app.router
    router.add_post(VOICE_PATH, incoming)
    router.add_post(f"{VOICE_PATH}/dial-status", dial_status)
    voice_voicemail.add_routes(router)
    router.add_post(case.PATH, case.keyed(continue_call))
    gw.outbox.register("voice", reply_sender(gw))
    gw.extras[FAILURES] = Counter(
        "gateway_voice_unregistered_calls_total",
        "Calls connected to L1 without a tracking number because the store could not commit",
        ["line"],
        registry=gw.metrics.registry,
    )

    async def handler(form: MultiDictProxy[str]) -> None:
        await on_call_status(gw, form)

    gw.extras.setdefault("twilio_call_status_handlers", []).append(handler)
