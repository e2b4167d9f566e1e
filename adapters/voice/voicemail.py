"""Voicemail of the phone lines: the <Record> action, the recording and transcription callbacks.

The recording (URL and duration) is attached to the call's message with an event; a
transcription, when Twilio sends one, joins the incident as the customer's message through the
intake. Every callback is signature-verified; none answers before its write has committed.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web
from twilio.twiml.voice_response import VoiceResponse

from adapters.twilio.signature import verified_form
from adapters.twilio.twiml import VOICE_PATH, say_options, tracking_param, twiml_response
from gateway.core.model import Contact, Inbound
from gateway.core.services import GW
from routing.phone import normalize_phone

if TYPE_CHECKING:
    from gateway.store.tx import Row, Tx

log = logging.getLogger(__name__)


def _lang(request: web.Request) -> str:
    return "en" if request.query.get("lang") == "en" else "es"


async def voicemail_done(request: web.Request) -> web.Response:
    """POST .../voice/voicemail (<Record action>): thank the caller and hang up."""
    gw = request.app[GW]
    await verified_form(request, gw.settings)
    lang = _lang(request)
    resp = VoiceResponse()
    resp.say(gw.texts.render("voice_voicemail_thanks", lang), **say_options(gw.settings, lang))
    resp.hangup()
    return twiml_response(resp)


def _incident_of_call(tx: Tx, tracking: str | None, call_sid: str) -> tuple[Row | None, int | None]:
    """The incident of a call and the message the call's media belongs to."""
    receipt = tx.receipt("voice", call_sid) if call_sid else None
    row = tx.incident_by_tracking(tracking) if tracking else None
    if row is None and receipt is not None and receipt["incident_id"] is not None:
        row = tx.incident(receipt["incident_id"])
    if row is None:
        return None, None
    if receipt is not None and receipt["incident_id"] == row["id"] and receipt["message_id"]:
        return row, int(receipt["message_id"])
    last = tx.one(
        "SELECT max(id) AS id FROM messages WHERE incident_id = ? AND direction = 'in'",
        (row["id"],),
    )
    return row, (int(last["id"]) if last and last["id"] else None)


async def recording(request: web.Request) -> web.Response:
    """POST .../voice/recording (recordingStatusCallback): attach the recording to the call."""
    gw = request.app[GW]
    form = await verified_form(request, gw.settings)
    tracking = tracking_param(request.query.get("tracking"))
    call_sid = form.get("CallSid", "")
    status = form.get("RecordingStatus", "completed")
    url = form.get("RecordingUrl", "")
    sid = form.get("RecordingSid", "")
    detail: dict[str, Any] = {
        "call_sid": call_sid,
        "recording_sid": sid,
        "duration": form.get("RecordingDuration"),
        "status": status,
    }
    now = gw.clock()

    def write(tx: Tx) -> str | None:
        row, message_id = _incident_of_call(tx, tracking, call_sid)
        if row is None:
            return None
        if status != "completed" or not url.startswith("https://") or message_id is None:
            detail["error_code"] = form.get("ErrorCode")
            tx.insert_event(row["id"], now, "system", "voicemail_failed", detail)
            return str(row["tracking"])
        # Twilio serves the recording as MP3 when ".mp3" is appended to RecordingUrl.
        media = url + ".mp3"
        if tx.one("SELECT 1 FROM attachments WHERE url = ?", (media,)):
            return None  # a repeated callback
        seconds = form.get("RecordingDuration", "0")
        tx.insert_attachment(
            message_id,
            filename=f"mensaje-de-voz-{sid or 'llamada'}.mp3",
            content_type="audio/mpeg",
            size=0,  # not downloaded: the recording stays at Twilio
            data=None,
            url=media,
            state="remote",
        )
        tx.insert_event(
            row["id"], now, "customer", "voicemail", {**detail, "url": media, "seconds": seconds}
        )
        return str(row["tracking"])

    found = await gw.store.transact(write)
    if found is None:
        log.warning("recording %s of call %s: no incident or already attached", sid, call_sid)
    else:
        gw.after_commit({"type": "incident", "event": "updated", "tracking": found})
    return web.Response(status=204)


async def transcription(request: web.Request) -> web.Response:
    """POST .../voice/transcription (transcribeCallback): the text joins the incident."""
    gw = request.app[GW]
    form = await verified_form(request, gw.settings)
    tracking = tracking_param(request.query.get("tracking"))
    lang = _lang(request)
    call_sid = form.get("CallSid", "")
    text = (form.get("TranscriptionText") or "").strip()
    if form.get("TranscriptionStatus") == "completed" and text and form.get("TranscriptionSid"):
        phone = normalize_phone(form.get("From", "")) or None
        await gw.intake.accept(
            Inbound(
                channel="voice",
                provider_id=form["TranscriptionSid"],  # Twilio's retry is stored once
                # Joins the call by its CallSid; the caller ID proves nothing here (the call's
                # attestation is not repeated in this callback): a claim, never an identity.
                contact=Contact(),
                claims={"phone": phone} if phone else {},
                text=gw.texts.render("voice_transcription", lang, text=text),
                received_at=gw.clock(),
                references=(call_sid,) if call_sid else (),
                tracking_hints=(tracking,) if tracking else (),
                acknowledge=False,
                language=lang,
                author=phone,
                flags=("voicemail_transcription",),
            )
        )
        return web.Response(status=204)
    now = gw.clock()
    detail = {"call_sid": call_sid, "status": form.get("TranscriptionStatus")}

    def write(tx: Tx) -> str | None:
        row, _ = _incident_of_call(tx, tracking, call_sid)
        if row is not None:
            tx.insert_event(row["id"], now, "system", "transcription_failed", detail)
        return str(row["tracking"]) if row else None

    if (found := await gw.store.transact(write)) is not None:
        gw.after_commit({"type": "incident", "event": "updated", "tracking": found})
    return web.Response(status=204)


def add_routes(router: web.UrlDispatcher) -> None:
    """The voicemail callbacks under /webhooks/twilio/voice/."""
    router.add_post(f"{VOICE_PATH}/voicemail", voicemail_done)
    router.add_post(f"{VOICE_PATH}/recording", recording)
    router.add_post(f"{VOICE_PATH}/transcription", transcription)
