"""TwiML building blocks of the phone lines and callbacks (pure: no I/O, no clock, no store).

Speech comes from customer templates rendered by the caller; this module only chooses the
<Say> voice, spells tracking numbers digit by digit, connects to a line's L1 destination and
records voicemail, with callback URLs under GATEWAY_PUBLIC_URL (what Twilio signs).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from config.settings import Settings
from routing.model import Line
from routing.phone import normalize_phone

VOICE_PATH = "/webhooks/twilio/voice"
TRACKING_RE = re.compile(r"CMW-[0-9]{7,}-[0-9]")
# Twilio's status values of a <Dial>/<Enqueue> that reached an agent (TwiML <Dial> "action"
# DialCallStatus; <Enqueue> "action" QueueResult).
CONNECTED = frozenset({"completed", "answered", "bridged", "redirected"})


def spoken_tracking(tracking: str) -> str:
    """'CMW-0000042-7' → 'C M W, 0 0 0 0 0 4 2, 7' so text-to-speech reads each digit."""
    prefix, digits, check = tracking.split("-")
    return f"{' '.join(prefix)}, {' '.join(digits)}, {check}"


def say_options(settings: Settings, language: str) -> dict[str, str]:
    """<Say> voice and language for a customer language ('es' or 'en')."""
    v = settings.voice
    if language == "en":
        return {"voice": v.voice_en, "language": v.language_en}
    return {"voice": v.voice, "language": v.language}


def line_by_number(settings: Settings, number: str | None) -> Line | None:
    """The configured line whose number is `number` (any format), if any."""
    e164 = normalize_phone(number) if number else None
    if e164 is None:
        return None
    for line in settings.routing.lines.values():
        if normalize_phone(line.number) == e164:
            return line
    return None


def callback_url(settings: Settings, path: str, **query: Any) -> str:
    """An absolute URL of ours for Twilio to call back (signed by Twilio against this URL)."""
    params = {k: str(v) for k, v in query.items() if v is not None}
    return settings.public_url + path + (f"?{urlencode(params)}" if params else "")


def connect_to_l1(
    resp: VoiceResponse, settings: Settings, line: Line, *, tracking: str | None, language: str
) -> bool:
    """Append the line's L1 destination (<Enqueue>, <Dial><Sip> or <Dial><Number>); False if none.

    The <Dial>/<Enqueue> `action` posts the outcome (DialCallStatus / QueueResult) back to us.
    """
    target = (line.l1_destination or "").strip()
    if not target:
        return False
    action = callback_url(
        settings, f"{VOICE_PATH}/dial-status", tracking=tracking, lang=language, line=line.code
    )
    if target.startswith("queue:"):
        resp.enqueue(target[len("queue:") :], action=action, method="POST")
        return True
    dial = resp.dial(action=action, method="POST", timeout=settings.voice.dial_timeout)
    if target.startswith("sip:"):
        dial.sip(target)
    else:
        dial.number(target)
    return True


def record_voicemail(
    resp: VoiceResponse, settings: Settings, *, tracking: str, language: str
) -> None:
    """Append a <Record> whose recording and transcription come back to our callbacks."""
    query = {"tracking": tracking, "lang": language}
    resp.record(
        max_length=settings.voice.max_voicemail_seconds,
        play_beep=True,
        action=callback_url(settings, f"{VOICE_PATH}/voicemail", **query),
        method="POST",
        recording_status_callback=callback_url(settings, f"{VOICE_PATH}/recording", **query),
        recording_status_callback_method="POST",
        transcribe=True,
        transcribe_callback=callback_url(settings, f"{VOICE_PATH}/transcription", **query),
    )


def twiml_response(resp: VoiceResponse) -> web.Response:
    """The HTTP answer Twilio expects: TwiML as text/xml."""
    return web.Response(text=str(resp), content_type="text/xml", charset="utf-8")


def tracking_param(value: str | None) -> str | None:
    """A tracking number from one of our signed callback URLs, or None if absent or malformed."""
    return value if value and TRACKING_RE.fullmatch(value) else None
