"""A call arriving while the store cannot commit is still connected, and registered later."""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

from adapters.voice import webhook as voice_twilio
from gateway.app import create_app
from gateway.core.services import GW
from tests.adapters.twilio.voice_kit import (
    ACCOUNT_SID,
    VOICE_ADAPTERS,
    event,
    get_incident,
    kinds,
    post_signed,
    twiml,
    voice_form,
)
from tests.faults import Outage, make_store_with

T = TypeVar("T")
SID = "CA" + "e" * 32
CALLER = "+50688881234"
CR_LINE = "+50640004000"


def status_form(status: str = "completed", duration: str = "95") -> Any:
    """Twilio's call status callback for the end of the inbound call."""
    form = voice_form(
        SID,
        CALLER,
        CR_LINE,
        CallStatus=status,
        CallDuration=duration,
        Duration="2",
        Timestamp="Mon, 30 Nov 2026 15:02:00 +0000",
        CallbackSource="call-progress-events",
        SequenceNumber="0",
    )
    form["AccountSid"] = ACCOUNT_SID
    return form


async def test_store_outage_connects_caller_and_registers_from_status_callback(
    aiohttp_client: Any, voice_settings: Any, clock: Any, agent_token: Any
) -> None:
    settings = voice_settings()
    store = make_store_with(settings, Outage)
    app = create_app(settings, clock=clock, store=store, adapters=VOICE_ADAPTERS)
    client = await aiohttp_client(app)
    gw = app[GW]
    store.down = True
    resp = await post_signed(client, "/webhooks/twilio/voice", voice_form(SID, CALLER, CR_LINE))
    assert resp.status == 200
    root = twiml(await resp.text())
    assert [c.tag for c in root] == ["Say", "Enqueue"]
    assert "no podemos darle un número de seguimiento" in (root[0].text or "")
    assert "C M W" not in (root[0].text or "")
    assert root[1].text == "L1-CR"
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_voice_unregistered_calls_total{line="CR"} 1.0' in metrics
    store.down = False
    # The call ends: Twilio posts its status callback; the incident is registered now.
    resp = await post_signed(client, "/webhooks/twilio/status", status_form())
    assert resp.status == 200, await resp.text()
    resp = await post_signed(client, "/webhooks/twilio/status", status_form())  # repeated
    assert resp.status == 200
    rows = await gw.store.read(lambda tx: tx.all("SELECT tracking FROM incidents"))
    assert len(rows) == 1
    incident = await get_incident(client, await agent_token(gw), rows[0]["tracking"])
    assert incident["channel"] == "voice" and incident["contact"]["phone"] == CALLER
    assert "registered_late" in kinds(incident)
    assert kinds(incident).count("call_ended") == 1
    assert event(incident, "call_ended")["duration"] == "95"


async def test_dial_outcome_of_an_unregistered_call_registers_it(
    aiohttp_client: Any, voice_settings: Any, clock: Any
) -> None:
    settings = voice_settings()
    store = make_store_with(settings, Outage)
    app = create_app(settings, clock=clock, store=store, adapters=VOICE_ADAPTERS)
    client = await aiohttp_client(app)
    store.down = True
    root = twiml(
        await (
            await post_signed(client, "/webhooks/twilio/voice", voice_form(SID, CALLER, CR_LINE))
        ).text()
    )
    action = root[1].get("action") or ""
    assert "tracking=" not in action
    store.down = False
    path = action.split("gw.callmyway.test", 1)[1]
    form = voice_form(
        SID, CALLER, CR_LINE, CallStatus="completed", QueueResult="bridged", QueueTime="40"
    )
    resp = await post_signed(client, path, form)
    assert [c.tag for c in twiml(await resp.text())] == ["Hangup"]
    kinds_ = await store.read(lambda tx: tx.all("SELECT kind FROM events ORDER BY id"))
    assert [r["kind"] for r in kinds_][-2:] == ["registered_late", "l1_call"]


async def test_slow_store_still_answers_twiml_within_budget(
    aiohttp_client: Any, voice_settings: Any, clock: Any
) -> None:
    settings = voice_settings()
    store = make_store_with(settings, Outage)
    app = create_app(settings, clock=clock, store=store, adapters=VOICE_ADAPTERS)
    client = await aiohttp_client(app)
    app[GW].extras[voice_twilio.BUDGET] = 0.2  # production: 8 s, inside Twilio's 15 s
    store.stalled = asyncio.Event()
    resp = await post_signed(client, "/webhooks/twilio/voice", voice_form(SID, CALLER, CR_LINE))
    root = twiml(await resp.text())
    assert [c.tag for c in root] == ["Say", "Enqueue"]
    store.stalled = None
    assert (await post_signed(client, "/webhooks/twilio/status", status_form())).status == 200
    rows = await store.read(lambda tx: tx.all("SELECT channel FROM incidents"))
    assert [r["channel"] for r in rows] == ["voice"]
