"""An agent's reply to a phone or Click2Call incident is read to the customer in a call."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from multidict import MultiDict

from tests.adapters.twilio.voice_kit import (
    ACCOUNT_SID,
    PUBLIC_URL,
    VOICE_ADAPTERS,
    event,
    get_incident,
    post_signed,
    twiml,
    voice_form,
    wait_until,
)

US_LINE = "+13056445335"
CALLER = "+13055550123"


async def reply(client: Any, token: str, tracking: str, text: str) -> None:
    resp = await client.post(
        f"/api/v1/incidents/{tracking}/reply",
        json={"text": text},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 200, await resp.text()


async def sent(gw: Any) -> bool:
    row = await gw.store.read(
        lambda tx: tx.one(
            "SELECT count(*) AS n FROM outbox WHERE kind = 'reply' AND status = 'sent'"
        )
    )
    return bool(row["n"])


async def test_agent_reply_to_a_call_is_a_call_from_the_line(
    start_app: Any, voice_settings: Any, fake_twilio: Any, agent_token: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    token = await agent_token(gw)
    sid = "CA" + "f" * 32
    root = twiml(
        await (
            await post_signed(client, "/webhooks/twilio/voice", voice_form(sid, CALLER, US_LINE))
        ).text()
    )
    tracking = (await gw.store.read(lambda tx: tx.one("SELECT tracking FROM incidents")))[
        "tracking"
    ]
    assert root[0].get("language") == "en-US"
    await reply(client, token, tracking, "Your trunk is back online; please test a call.")
    await gw.outbox.drain_once()
    await wait_until(lambda: sent(gw), "the reply call")
    [request] = fake_twilio.requests
    assert request["To"] == CALLER and request["From"] == US_LINE
    assert request["StatusCallback"] == f"{PUBLIC_URL}/webhooks/twilio/status"
    say = ET.fromstring(request["Twiml"]).find("Say")
    assert say is not None and say.get("language") == "en-US"
    assert "Your trunk is back online; please test a call." in (say.text or "")
    incident = await get_incident(client, token, tracking)
    out = [m for m in incident["messages"] if m["direction"] == "out"]
    assert out[0]["delivery_status"] == "sent"
    # Twilio reports how the reply call ended.
    call = fake_twilio.calls[0]
    form = MultiDict(
        AccountSid=ACCOUNT_SID,
        CallSid=call["sid"],
        CallStatus="no-answer",
        CallDuration="0",
        Direction="outbound-api",
        From=US_LINE,
        To=CALLER,
        ApiVersion="2010-04-01",
    )
    assert (await post_signed(client, "/webhooks/twilio/status", form)).status == 200
    incident = await get_incident(client, token, tracking)
    assert event(incident, "reply_call_ended")["status"] == "no-answer"


async def test_agent_reply_to_click2call_speaks_spanish(
    start_app: Any, voice_settings: Any, fake_twilio: Any, agent_token: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    token = await agent_token(gw)
    resp = await client.post(
        "/api/v1/click2call",
        json={"name": "Ana", "phone": "+50688887777"},
        headers={"Origin": "https://www.callmyway.com"},
    )
    tracking = (await resp.json())["tracking"]
    await reply(client, token, tracking, "Ya reiniciamos su central.")
    await gw.outbox.drain_once()
    await wait_until(lambda: sent(gw), "the reply call")
    request = fake_twilio.requests[-1]
    assert request["From"] == "+50640004000" and request["To"] == "+50688887777"
    say = ET.fromstring(request["Twiml"]).find("Say")
    assert say is not None and say.get("language") == "es-MX"
    assert "Mensaje de su agente: Ya reiniciamos su central." in (say.text or "")


async def test_a_reply_call_whose_answer_was_lost_is_reconciled_never_rung_twice(
    start_app: Any, voice_settings: Any, fake_twilio: Any, agent_token: Any, clock: Any
) -> None:
    """Checklist T12 for agents' phone replies: Twilio created the call but its answer never
    came back; the retry looks the call up by its marker (to, from, since) and places none."""
    from adapters.twilio.calls import CALL_API, CallApi

    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    gw.extras[CALL_API] = CallApi(gw, timeout=0.5)  # give up on the lost answer quickly
    token = await agent_token(gw)
    await post_signed(
        client, "/webhooks/twilio/voice", voice_form("CA" + "e" * 32, CALLER, US_LINE)
    )
    tracking = (await gw.store.read(lambda tx: tx.one("SELECT tracking FROM incidents")))[
        "tracking"
    ]
    fake_twilio.mode = "timeout"
    await reply(client, token, tracking, "Ya quedó su línea; pruebe por favor.")

    async def reply_row() -> Any:
        return await gw.store.read(lambda tx: tx.one("SELECT * FROM outbox WHERE kind = 'reply'"))

    async def failed_once() -> bool:
        row = await reply_row()
        return row["status"] == "pending" and row["attempts"] == 1

    await wait_until(failed_once, "the first attempt to time out")
    row = await reply_row()
    assert "no answer from Twilio" in row["last_error"]
    assert len(fake_twilio.calls) == 1  # the customer's phone rang once already
    fake_twilio.mode = "ok"
    fake_twilio.release.set()
    clock.advance(minutes=30)
    gw.outbox.wake()
    await wait_until(lambda: sent(gw), "the reply to be reconciled")
    row = await reply_row()
    assert row["status"] == "sent" and row["provider_id"] == fake_twilio.calls[0]["sid"]
    assert len(fake_twilio.requests) == 1 and len(fake_twilio.calls) == 1  # never rung twice
