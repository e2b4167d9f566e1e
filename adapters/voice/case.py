"""An unattested caller keys in the tracking number of an existing case (<Gather>).

Caller ID without STIR/SHAKEN attestation A proves nothing, so such a call got a new incident.
The caller may key in an existing case's number; it is linked (and read out) only when that
case is still open and its contact's *proven* phone (WhatsApp, or an attested call) is the
number calling now: a guessed tracking number alone, or a spoofed number alone, reveals nothing.
One attempt per call; a miss says only that no case was found and keeps the new incident.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from adapters.twilio.signature import verified_form
from adapters.twilio.twiml import (
    VOICE_PATH,
    callback_url,
    line_by_number,
    say_options,
    spoken_tracking,
    tracking_param,
    twiml_response,
)
from gateway.core.model import OPEN_STATUSES
from gateway.core.services import GW
from gateway.core.tracking import parse_tracking
from routing.model import Line
from routing.phone import normalize_phone

if TYPE_CHECKING:
    from gateway.core.services import Gateway
    from gateway.store.tx import Tx

PATH = f"{VOICE_PATH}/case"
Continue = Callable[..., None]  # webhook.continue_call(gw, resp, line, tracking=, language=)


def gather(gw: Gateway, resp: VoiceResponse, line: Line, *, tracking: str, language: str) -> None:
    """Ask for an existing case's number; no input falls through to the rest of the TwiML."""
    action = callback_url(gw.settings, PATH, tracking=tracking, lang=language, line=line.code)
    prompt = resp.gather(
        input="dtmf", finish_on_key="#", timeout=6, num_digits=16, action=action, method="POST"
    )
    prompt.say(gw.texts.render("voice_case_prompt", language), **say_options(gw.settings, language))


def keyed_tracking(digits: str) -> str | None:
    """The tracking number the caller keyed ("00000427" or with '*' for the dashes)."""
    digits = re.sub(r"[^0-9]", "", digits)
    if len(digits) < 8:
        return None
    return parse_tracking(f"CMW-{digits[:-1]}-{digits[-1]}")


def link_case(
    tx: Tx, keyed: str | None, new: str, caller: str | None, call_sid: str, now: datetime
) -> bool:
    """Link the call to the keyed case if the caller's number is that case's proven phone."""
    row = tx.incident_by_tracking(new)
    if row is None:
        return False
    target = tx.incident_by_tracking(keyed) if keyed and keyed != new else None
    contact = tx.contact(target["contact_id"]) if target else None
    if (
        target is None
        or target["status"] not in OPEN_STATUSES
        or not caller
        or contact is None
        or contact.get("phone") != caller  # the contact's phone is set only when proven
    ):
        detail: dict[str, Any] = {"call_sid": call_sid, "keyed": keyed, "verified": False}
        tx.insert_event(row["id"], now, "system", "case_not_verified", detail)
        return False
    tx.insert_event(
        target["id"], now, "customer", "call_linked", {"call_sid": call_sid, "tracking": new}
    )
    tx.insert_event(row["id"], now, "system", "case_identified", {"tracking": keyed})
    return True


def keyed(continue_call: Continue) -> Callable[[web.Request], Awaitable[web.Response]]:
    """POST .../voice/case (the <Gather> action): check the keyed case, then carry on."""

    async def handler(request: web.Request) -> web.Response:
        gw: Gateway = request.app[GW]
        form = await verified_form(request, gw.settings)
        new = tracking_param(request.query.get("tracking"))
        lang = "en" if request.query.get("lang") == "en" else "es"
        routing = gw.settings.routing
        line = routing.lines.get(request.query.get("line") or "") or (
            line_by_number(gw.settings, form.get("To")) or routing.default_line
        )
        if new is None:
            raise web.HTTPBadRequest(reason="the tracking parameter is missing")
        number = keyed_tracking(form.get("Digits", ""))
        caller = normalize_phone(form.get("From") or form.get("Caller") or "")
        sid, now = form.get("CallSid", ""), gw.clock()
        linked = await gw.store.transact(lambda tx: link_case(tx, number, new, caller, sid, now))
        gw.after_commit({"type": "incident", "event": "updated", "tracking": new})
        resp = VoiceResponse()
        say = say_options(gw.settings, lang)
        if linked and number is not None:
            gw.after_commit({"type": "incident", "event": "updated", "tracking": number})
            resp.say(
                gw.texts.render("voice_case_linked", lang, spoken=spoken_tracking(number)), **say
            )
            continue_call(gw, resp, line, tracking=number, language=lang)
        else:
            text = gw.texts.render("voice_case_not_found", lang, spoken=spoken_tracking(new))
            resp.say(text, **say)
            continue_call(gw, resp, line, tracking=new, language=lang)
        return twiml_response(resp)

    return handler
