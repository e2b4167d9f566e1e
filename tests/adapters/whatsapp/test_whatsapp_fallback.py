"""Twilio's Fallback URL (checklist T8): when the store cannot commit, the signed form is kept on
disk, Twilio gets a 200 with a "received" message, and the spool is replayed into an incident
whose tracking number reaches the customer through the outbox once the store is back."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.core.services import GW
from tests.adapters.whatsapp.wa_kit import ADAPTERS, count, inbound_form, post_signed
from tests.faults import Outage, make_store_with, store_with_short_lock_wait, write_lock_held

PATH = "/webhooks/twilio/whatsapp"
FALLBACK = PATH + "/fallback"
TRACKING = re.compile(r"CMW-\d{7}-\d")


@pytest.fixture
async def flaky(aiohttp_client, wa_settings, clock) -> tuple[Any, Any, Any]:
    store = make_store_with(wa_settings, Outage)
    app = create_app(wa_settings, clock=clock, store=store, adapters=ADAPTERS)
    client = await aiohttp_client(app)
    return client, app[GW], store


def spooled(gw: Any) -> list[Path]:
    return [item.path for item in gw.extras["twilio_spool"].items()]


async def drain(gw: Any) -> None:
    for _ in range(5):
        await gw.outbox.drain_once()


async def test_store_down_the_fallback_spools_answers_and_the_replay_acknowledges(
    flaky, twilio_fake
) -> None:
    client, gw, store = flaky
    form = inbound_form("+50688001122", "Hola, no tengo internet desde ayer")
    store.down = True
    assert (await post_signed(client, PATH, form)).status == 503  # Twilio then calls the fallback
    form.add("ErrorCode", "11200")  # what Twilio adds to the fallback request
    form.add("ErrorUrl", "https://soporte.callmyway.test" + PATH)
    resp = await post_signed(client, FALLBACK, form)
    assert resp.status == 200
    text = await resp.text()
    assert "recibimos su mensaje" in text and not TRACKING.search(text)
    [path] = spooled(gw)
    assert path.parent == Path(gw.settings.twilio.spool_dir)
    store.down = False
    assert await count(gw, "receipts") == 0  # nothing was half-written while it was down
    assert await gw.extras["twilio_spool"].replay() == (1, 0)
    assert spooled(gw) == [] and await count(gw, "incidents") == 1
    await drain(gw)
    [sent] = twilio_fake.sent
    assert sent["To"] == "whatsapp:+50688001122" and TRACKING.search(sent["Body"])


async def test_the_fallback_is_the_normal_intake_when_the_store_is_back(wa) -> None:
    client, gw = wa
    resp = await post_signed(client, FALLBACK, inbound_form("+50688001133"))
    assert resp.status == 200 and TRACKING.search(await resp.text())
    assert spooled(gw) == [] and await count(gw, "incidents") == 1


async def test_a_forged_fallback_request_is_refused_and_nothing_kept(flaky) -> None:
    client, gw, store = flaky
    store.down = True
    form = inbound_form("+50688001144")
    resp = await post_signed(client, FALLBACK, form, sign_form=inbound_form("+50688009999"))
    assert resp.status == 403
    assert spooled(gw) == []


async def test_a_message_spooled_and_also_committed_by_a_retry_is_one_incident(
    flaky, twilio_fake
) -> None:
    client, gw, store = flaky
    form = inbound_form("+50688001155")
    store.down = True
    assert (await post_signed(client, FALLBACK, form)).status == 200
    store.down = False
    resp = await post_signed(client, PATH, form)  # the same MessageSid reached us again
    assert resp.status == 200 and TRACKING.search(await resp.text())
    assert await gw.extras["twilio_spool"].replay() == (1, 0)
    await drain(gw)
    assert await count(gw, "incidents") == 1 and await count(gw, "messages") == 1
    assert twilio_fake.sent == []  # the TwiML answer was its acknowledgement: no second one


async def test_the_spool_is_replayed_when_the_gateway_starts(
    aiohttp_client, wa_settings, clock, flaky
) -> None:
    client, gw, store = flaky
    store.down = True
    assert (await post_signed(client, FALLBACK, inbound_form("+50688001166"))).status == 200
    assert len(spooled(gw)) == 1
    # A new process on the same database and spool (the first one died with the outage).
    app = create_app(wa_settings, clock=clock, adapters=ADAPTERS)
    await aiohttp_client(app)
    replayed = app[GW].extras["twilio_spool"]
    for _ in range(100):
        if not replayed.items():
            break
        await asyncio.sleep(0.02)
    assert replayed.items() == [] and await count(app[GW], "incidents") == 1


async def test_a_real_file_lock_held_by_another_process_is_503_then_spool_then_one_incident(
    aiohttp_client, wa_settings, clock, twilio_fake
) -> None:
    """Not a store told to fail: another connection (a backup, a migration, a stuck operator
    shell) holds the database's write lock. The webhook waits the busy timeout, answers 503,
    the fallback keeps the form on disk, readers keep working meanwhile, and once the lock is
    released Twilio's retry and the spool's replay make one incident and one acknowledgement."""
    store = store_with_short_lock_wait(wa_settings, 200)
    app = create_app(wa_settings, clock=clock, store=store, adapters=ADAPTERS)
    client = await aiohttp_client(app)
    gw = app[GW]
    with write_lock_held(wa_settings):  # held across the requests below
        form = inbound_form("+50688001177", "Hola, la central no marca desde las 8")
        resp = await post_signed(client, PATH, form)
        assert resp.status == 503 and resp.headers["Retry-After"] == "5"
        assert (await client.get("/healthz")).status == 200  # reads go on
        resp = await post_signed(client, FALLBACK, form)
        assert resp.status == 200 and "recibimos su mensaje" in await resp.text()
        assert len(spooled(gw)) == 1
        assert await count(gw, "receipts") == 0
    resp = await post_signed(client, PATH, form)  # Twilio's own retry
    assert resp.status == 200 and TRACKING.search(await resp.text())
    assert await gw.extras["twilio_spool"].replay() == (1, 0)
    await drain(gw)
    assert await count(gw, "incidents") == 1 and await count(gw, "messages") == 1
    assert spooled(gw) == [] and twilio_fake.sent == []
