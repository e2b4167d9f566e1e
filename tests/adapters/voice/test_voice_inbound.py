"""Calls to the country lines through signed Twilio voice webhooks, TwiML asserted as XML."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from multidict import MultiDict

from tests.adapters.twilio.voice_kit import (
    PUBLIC_URL,
    VOICE_ADAPTERS,
    event,
    get_incident,
    kinds,
    post_signed,
    sign,
    twiml,
    voice_form,
)
from tests.conftest import CLOSED_TIME

MX_LINE = "+525541708422"
US_LINE = "+13056445335"
CALLER = "+50688887777"
SPOKEN = re.compile(r"C M W, ((?:[0-9] ){6,}[0-9]), ([0-9])")


def tracking_in(say_text: str) -> str:
    """The tracking number a <Say> spells digit by digit."""
    match = SPOKEN.search(say_text)
    assert match, say_text
    return f"CMW-{match.group(1).replace(' ', '')}-{match.group(2)}"


async def call(client: Any, sid: str, caller: str = CALLER, line: str = MX_LINE) -> Any:
    resp = await post_signed(client, "/webhooks/twilio/voice", voice_form(sid, caller, line))
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/xml"
    return twiml(await resp.text())


async def test_call_in_hours_is_registered_then_queued_for_l1(
    start_app: Any, voice_settings: Any, agent_token: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    root = await call(client, "CA" + "1" * 32)
    say, enqueue = list(root)
    assert say.tag == "Say" and say.get("language") == "es-MX" and say.get("voice") == "Polly.Mia"
    tracking = tracking_in(say.text or "")
    assert "Soporte CallMyWay" in (say.text or "")
    assert enqueue.tag == "Enqueue" and enqueue.text == "L1-MX"
    action = enqueue.get("action") or ""
    assert action.startswith(f"{PUBLIC_URL}/webhooks/twilio/voice/dial-status?")
    assert f"tracking={tracking}" in action
    # Registered before the TwiML was returned.
    incident = await get_incident(client, await agent_token(gw), tracking)
    assert incident["channel"] == "voice" and incident["country"] == "MX"
    assert incident["line"] == MX_LINE and incident["contact"]["phone"] == CALLER
    assert incident["messages"][0]["body"] == (
        f"Llamada entrante de {CALLER} a la línea México ({MX_LINE})."
    )
    assert incident["after_hours"] is False


async def test_english_line_speaks_english(start_app: Any, voice_settings: Any) -> None:
    client, _ = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    root = await call(client, "CA" + "2" * 32, caller="+13055550123", line=US_LINE)
    say = root.find("Say")
    assert say is not None and say.get("language") == "en-US"
    assert say.get("voice") == "Polly.Joanna"
    assert (say.text or "").startswith("Thank you for calling CallMyWay Support.")
    assert root.find("Enqueue") is not None and root.find("Enqueue").text == "L1-US"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("destination", "child"),
    [("sip:l1@pbx.callmyway.test", "Sip"), ("+525511112222", "Number")],
)
async def test_dial_to_sip_or_number_destination(
    start_app: Any, voice_settings: Any, destination: str, child: str
) -> None:
    settings = voice_settings({"lines": {"MX": {"l1_destination": destination}}})
    client, _ = await start_app(settings, adapters=VOICE_ADAPTERS)
    root = await call(client, "CA" + "3" * 32)
    dial = root.find("Dial")
    assert dial is not None and dial.get("timeout") == "30"
    assert (dial.get("action") or "").startswith(f"{PUBLIC_URL}/webhooks/twilio/voice/dial-status")
    target = dial.find(child)
    assert target is not None and target.text == destination


async def test_dial_outcome_becomes_an_event_and_no_answer_offers_voicemail(
    start_app: Any, voice_settings: Any, agent_token: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    sid = "CA" + "4" * 32
    tracking = tracking_in((await call(client, sid)).find("Say").text or "")  # type: ignore[union-attr]
    path = f"/webhooks/twilio/voice/dial-status?tracking={tracking}&lang=es&line=MX"
    form = voice_form(
        sid,
        CALLER,
        MX_LINE,
        CallStatus="in-progress",
        QueueResult="hangup",
        QueueSid="QU" + "0" * 32,
        QueueTime="12",
    )
    resp = await post_signed(client, path, form)
    root = twiml(await resp.text())
    assert [c.tag for c in root] == ["Hangup"]
    form = voice_form(
        sid,
        CALLER,
        MX_LINE,
        CallStatus="in-progress",
        DialCallStatus="no-answer",
        DialCallSid="CA" + "5" * 32,
        DialCallDuration="0",
    )
    root = twiml(await (await post_signed(client, path, form)).text())
    assert [c.tag for c in root] == ["Say", "Record", "Hangup"]
    assert "no hay agentes disponibles" in (root[0].text or "")
    incident = await get_incident(client, await agent_token(gw), tracking)
    outcomes = [e["detail"]["status"] for e in incident["events"] if e["kind"] == "l1_call"]
    assert outcomes == ["hangup", "no-answer"]
    assert event(incident, "l1_call")["dial_call_sid"] == "CA" + "5" * 32


async def test_after_hours_voicemail_recording_and_transcription(
    start_app: Any, voice_settings: Any, agent_token: Any, clock: Any
) -> None:
    clock.set(CLOSED_TIME)  # Sunday 23:00 in Mexico City too
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    sid = "CA" + "6" * 32
    root = await call(client, sid)
    assert [c.tag for c in root] == ["Say", "Record", "Say", "Hangup"]
    text = root[0].text or ""
    tracking = tracking_in(text)
    assert "fuera de horario" in text and "lunes a viernes de 06:00 a 21:00" in text
    assert "Abrimos el lunes 30/11/2026 a las 06:00, hora de México" in text
    record = root[1]
    assert record.get("maxLength") == "120" and record.get("transcribe") == "true"
    query = f"tracking={tracking}&lang=es"
    assert record.get("recordingStatusCallback") == (
        f"{PUBLIC_URL}/webhooks/twilio/voice/recording?{query}"
    )
    assert record.get("transcribeCallback") == (
        f"{PUBLIC_URL}/webhooks/twilio/voice/transcription?{query}"
    )
    # Twilio's recordingStatusCallback parameters.
    url = f"https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE{'a' * 32}"
    rec = MultiDict(
        AccountSid="AC1",
        CallSid=sid,
        RecordingSid="RE" + "a" * 32,
        RecordingUrl=url,
        RecordingStatus="completed",
        RecordingDuration="17",
        RecordingChannels="1",
        RecordingSource="RecordVerb",
    )
    path = f"/webhooks/twilio/voice/recording?{query}"
    assert (await post_signed(client, path, rec)).status == 204
    assert (await post_signed(client, path, rec)).status == 204  # Twilio retried
    action = await post_signed(
        client,
        f"/webhooks/twilio/voice/voicemail?{query}",
        voice_form(sid, CALLER, MX_LINE, RecordingUrl=url, RecordingDuration="17", Digits="hangup"),
    )
    assert "Gracias, recibimos su mensaje" in (twiml(await action.text())[0].text or "")
    tr = voice_form(
        sid,
        CALLER,
        MX_LINE,
        TranscriptionSid="TR" + "b" * 32,
        TranscriptionText="Hola, no tengo tono en la central desde las ocho.",
        TranscriptionStatus="completed",
        TranscriptionType="fast",
        TranscriptionUrl=url + "/Transcriptions/TR1",
        RecordingSid="RE" + "a" * 32,
        RecordingUrl=url,
    )
    path = f"/webhooks/twilio/voice/transcription?{query}"
    assert (await post_signed(client, path, tr)).status == 204
    assert (await post_signed(client, path, tr)).status == 204
    incident = await get_incident(client, await agent_token(gw), tracking)
    assert incident["after_hours"] is True
    first, second = incident["messages"]
    assert [a["content_type"] for a in first["attachments"]] == ["audio/mpeg"]
    voicemail = event(incident, "voicemail")
    assert voicemail["url"] == url + ".mp3" and voicemail["seconds"] == "17"
    assert kinds(incident).count("voicemail") == 1
    assert second["body"] == (
        "Transcripción del mensaje de voz: Hola, no tengo tono en la central desde las ocho."
    )


async def test_forged_or_tampered_signature_is_refused(start_app: Any, voice_settings: Any) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    form = voice_form("CA" + "7" * 32, CALLER, MX_LINE)
    path = "/webhooks/twilio/voice"
    assert (await client.post(path, data=form)).status == 403
    bad = {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}
    assert (await client.post(path, data=form, headers=bad)).status == 403
    signature = sign(path, form)
    tampered = form.copy()
    tampered["From"] = "+50688880000"
    resp = await client.post(path, data=tampered, headers={"X-Twilio-Signature": signature})
    assert resp.status == 403
    added = form.copy()
    added.add("Digits", "1")
    resp = await client.post(path, data=added, headers={"X-Twilio-Signature": signature})
    assert resp.status == 403
    count = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents"))
    assert count["n"] == 0


async def test_same_callsid_twice_is_one_incident(start_app: Any, voice_settings: Any) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    sid, other = "CA" + "8" * 32, "CA" + "9" * 32
    first = await call(client, sid)
    again = await call(client, sid)
    together = await asyncio.gather(*(call(client, other, caller="+50688886666") for _ in range(3)))
    assert tracking_in(first[0].text or "") == tracking_in(again[0].text or "")
    assert len({tracking_in(r[0].text or "") for r in together}) == 1
    rows = await gw.store.read(
        lambda tx: tx.all(
            "SELECT r.provider_id, count(m.id) AS n FROM receipts r"
            " JOIN messages m ON m.incident_id = r.incident_id WHERE r.channel = 'voice'"
            " GROUP BY r.provider_id ORDER BY r.provider_id"
        )
    )
    assert [(r["provider_id"], r["n"]) for r in rows] == [(sid, 1), (other, 1)]


async def test_a_second_call_joins_the_callers_open_incident(
    start_app: Any, voice_settings: Any, agent_token: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    first = tracking_in((await call(client, "CA" + "a" * 32))[0].text or "")
    second = tracking_in((await call(client, "CA" + "b" * 32))[0].text or "")
    assert first == second  # the caller hears the same tracking number again
    incident = await get_incident(client, await agent_token(gw), first)
    assert [m["direction"] for m in incident["messages"]] == ["in", "in"]


async def test_withheld_caller_still_registered(start_app: Any, voice_settings: Any) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    root = await call(client, "CA" + "c" * 32, caller="+266696687")
    tracking = tracking_in(root[0].text or "")
    row = await gw.store.read(lambda tx: tx.incident_by_tracking(tracking))
    assert row["description"].startswith("Llamada entrante de un número oculto")


async def test_unconfigured_twilio_answers_503(start_app: Any, make_settings: Any) -> None:
    client, _ = await start_app(make_settings(), adapters=VOICE_ADAPTERS)
    form = voice_form("CA" + "d" * 32, CALLER, MX_LINE)
    resp = await client.post("/webhooks/twilio/voice", data=form)
    assert resp.status == 503
