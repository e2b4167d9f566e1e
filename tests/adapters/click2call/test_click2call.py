"""Click2Call through real HTTP, placing calls on a loopback fake of Twilio's Calls API."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest
from multidict import MultiDict

from adapters.twilio.calls import call_api
from tests.adapters.twilio.voice_kit import (
    ACCOUNT_SID,
    PUBLIC_URL,
    VOICE_ADAPTERS,
    event,
    get_incident,
    kinds,
    post_signed,
    twiml,
    wait_until,
)
from tests.conftest import CLOSED_TIME

CUSTOMER = "+50688887777"  # Costa Rica mobile
CR_LINE = "+50640004000"
MX_CUSTOMER = "+525512345678"
MX_LINE = "+525541708422"
# Monday 2026-11-30 06:00 in Costa Rica: the line's next opening after CLOSED_TIME.
CR_OPENS = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


async def ask(
    client: Any,
    phone: str = CUSTOMER,
    key: str | None = None,
    forwarded_for: str | None = None,
    **fields: Any,
) -> Any:
    body = {"name": "Ana Solís", "phone": phone, **fields}
    # The website's pages send their Origin ([click2call] allowed_origins).
    headers = {"Origin": "https://www.callmyway.com"}
    if key:
        headers["Idempotency-Key"] = key
    if forwarded_for:
        headers["X-Forwarded-For"] = forwarded_for
    return await client.post("/api/v1/click2call", json=body, headers=headers)


async def attempt(gw: Any, tracking: str, number: int = 1) -> dict[str, Any]:
    return dict(
        await gw.store.read(
            lambda tx: tx.one(
                "SELECT * FROM click2call_attempts WHERE tracking = ? AND attempt = ?",
                (tracking, number),
            )
        )
    )


def call_status(call: dict[str, Any], status: str, duration: str = "0") -> MultiDict[str]:
    """Twilio's status callback for an outbound-api call reaching its final state."""
    return MultiDict(
        AccountSid=ACCOUNT_SID,
        ApiVersion="2010-04-01",
        CallSid=call["sid"],
        CallStatus=status,
        CallDuration=duration,
        Called=call["to"],
        Caller=call["from"],
        Direction="outbound-api",
        From=call["from"],
        To=call["to"],
        Duration="1",
        SequenceNumber="0",
        Timestamp="Mon, 30 Nov 2026 15:01:00 +0000",
    )


async def test_in_hours_the_customer_is_called_from_their_country_line(
    start_app: Any, voice_settings: Any, fake_twilio: Any, agent_token: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    token = await agent_token(gw)
    resp = await ask(
        client,
        MX_CUSTOMER,
        country="CR",
        email="ana@example.com",
        description="Sin tono en la troncal SIP",
    )
    assert resp.status == 202, await resp.text()
    body = await resp.json()
    assert body["status"] == "calling" and body["scheduled_for"] is None
    tracking = body["tracking"]
    [request] = fake_twilio.requests
    assert request["To"] == MX_CUSTOMER and request["From"] == MX_LINE
    assert request["Url"] == (
        f"{PUBLIC_URL}/webhooks/twilio/click2call/answer?tracking={tracking}&attempt=1"
    )
    assert request["StatusCallback"] == f"{PUBLIC_URL}/webhooks/twilio/status"
    incident = await get_incident(client, token, tracking)
    assert incident["channel"] == "click2call" and incident["country"] == "MX"
    assert incident["contact"] == {
        "name": "Ana Solís",
        "email": "ana@example.com",
        "phone": MX_CUSTOMER,
        "telegram_chat_id": None,
        # A website form proves nothing: everything it says is a claim (issue #15).
        "claimed": ["name", "email", "phone"],
    }
    assert "Sin tono en la troncal SIP" in incident["messages"][0]["body"]
    assert event(incident, "callback_call_placed")["call_sid"] == fake_twilio.calls[0]["sid"]
    # The customer answers: Twilio fetches the answer URL.
    call = fake_twilio.calls[0]
    form = MultiDict(
        AccountSid=ACCOUNT_SID,
        CallSid=call["sid"],
        CallStatus="in-progress",
        Direction="outbound-api",
        From=MX_LINE,
        To=MX_CUSTOMER,
        ApiVersion="2010-04-01",
        Called=MX_CUSTOMER,
        Caller=MX_LINE,
    )
    answer = await post_signed(client, request["Url"].removeprefix(PUBLIC_URL), form)
    root = twiml(await answer.text())
    assert [c.tag for c in root] == ["Say", "Enqueue"]
    assert "Hola Ana Solís" in (root[0].text or "")
    spoken = "C M W, " + " ".join(tracking[4:-2]) + ", " + tracking[-1]
    assert spoken in (root[0].text or "")
    assert root[1].text == "L1-MX"
    # The call ends normally: an event, no retry.
    resp = await post_signed(
        client, "/webhooks/twilio/status", call_status(call, "completed", "64")
    )
    assert resp.status == 200
    incident = await get_incident(client, token, tracking)
    assert event(incident, "callback_completed")["duration"] == 64
    assert "callback_retry_scheduled" not in kinds(incident)


async def test_after_hours_the_call_is_scheduled_for_the_opening(
    start_app: Any, voice_settings: Any, fake_twilio: Any, clock: Any
) -> None:
    clock.set(CLOSED_TIME)
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    resp = await ask(client)
    assert resp.status == 202
    body = await resp.json()
    assert body["status"] == "scheduled"
    assert datetime.fromisoformat(body["scheduled_for"]) == CR_OPENS
    assert await gw.scheduler.run_due_jobs() == 0
    assert fake_twilio.requests == []
    clock.set(CR_OPENS)
    await gw.scheduler.run_due_jobs()
    await wait_until(lambda: _placed(gw, body["tracking"]), "the scheduled call")
    await gw.scheduler.run_due_jobs()
    assert [r["To"] for r in fake_twilio.requests] == [CUSTOMER]
    assert fake_twilio.requests[0]["From"] == CR_LINE


async def _placed(gw: Any, tracking: str) -> bool:
    return (await attempt(gw, tracking))["call_sid"] is not None


async def test_a_scheduled_call_survives_a_restart_and_is_placed_once(
    start_app: Any, voice_settings: Any, fake_twilio: Any, clock: Any
) -> None:
    clock.set(CLOSED_TIME)
    settings = voice_settings()
    first, _ = await start_app(settings, adapters=VOICE_ADAPTERS)
    tracking = (await (await ask(first, key="k-restart")).json())["tracking"]
    await first.close()
    client, gw = await start_app(settings, adapters=VOICE_ADAPTERS)
    # The idempotency key survived the restart too.
    again = await ask(client, key="k-restart")
    assert (await again.json())["tracking"] == tracking
    clock.set(CR_OPENS)
    await gw.scheduler.run_due_jobs()
    await wait_until(lambda: _placed(gw, tracking), "the scheduled call")
    await gw.scheduler.run_due_jobs()
    assert len(fake_twilio.requests) == 1


async def test_rate_limits_per_number_and_per_address(
    start_app: Any, voice_settings: Any, fake_twilio: Any, clock: Any
) -> None:
    settings = voice_settings({"click2call": {"max_calls_per_ip_per_hour": 5}})
    client, _ = await start_app(settings, adapters=VOICE_ADAPTERS)
    for _ in range(3):
        assert (await ask(client)).status == 202
    resp = await ask(client)
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) == 3600
    assert (await resp.json())["error"]["code"] == "rate_limited"
    clock.advance(minutes=20)
    assert (await ask(client, "+50688880001")).status == 202
    assert (await ask(client, "+50688880002")).status == 202
    resp = await ask(client, "+50688880003")  # sixth request from this address
    assert resp.status == 429
    assert int(resp.headers["Retry-After"]) == 40 * 60
    assert len(fake_twilio.requests) == 5
    clock.advance(minutes=41)
    assert (await ask(client)).status == 202


@pytest.mark.parametrize(
    ("trusted", "separate"),
    [(["127.0.0.0/8"], True), ([], False), (["10.0.0.0/8"], False)],
)
async def test_per_address_limit_behind_a_trusted_proxy_counts_each_client(
    start_app: Any, voice_settings: Any, fake_twilio: Any, trusted: list[str], separate: bool
) -> None:
    """Behind the TLS proxy every request comes from the proxy: X-Forwarded-For names the
    client, but only when the proxy is trusted (from anyone else it could be forged)."""
    settings = voice_settings(
        {"gateway": {"trusted_proxies": trusted}, "click2call": {"max_calls_per_ip_per_hour": 2}}
    )
    client, _ = await start_app(settings, adapters=VOICE_ADAPTERS)
    one = [await ask(client, f"+5068888100{i}", forwarded_for="203.0.113.7") for i in range(2)]
    assert [r.status for r in one] == [202, 202]
    # Another customer behind the same proxy (the forged left-most entry is not believed).
    other = await ask(client, "+50688881009", forwarded_for="203.0.113.7, 198.51.100.23")
    assert other.status == (202 if separate else 429)
    again = await ask(client, "+50688881010", forwarded_for="203.0.113.7")
    assert again.status == 429


async def test_rate_limit_counters_survive_a_restart(
    start_app: Any, voice_settings: Any, fake_twilio: Any, clock: Any
) -> None:
    settings = voice_settings({"click2call": {"max_calls_per_number_per_hour": 1}})
    first, _ = await start_app(settings, adapters=VOICE_ADAPTERS)
    assert (await ask(first)).status == 202
    await first.close()
    client, _ = await start_app(settings, adapters=VOICE_ADAPTERS)
    clock.advance(minutes=30)
    resp = await ask(client)
    assert resp.status == 429 and int(resp.headers["Retry-After"]) == 30 * 60
    assert len(fake_twilio.requests) == 1


async def test_idempotency_key_never_calls_twice(
    start_app: Any, voice_settings: Any, fake_twilio: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    first = await ask(client, key="dbl-1")
    second = await ask(client, key="dbl-1")
    assert first.status == second.status == 202
    assert await first.json() == await second.json()
    together = await asyncio.gather(*(ask(client, "+50688880009", key="dbl-2") for _ in range(3)))
    bodies = [await r.json() for r in together]
    assert all(r.status == 202 for r in together) and len({b["tracking"] for b in bodies}) == 1
    assert sorted(r["To"] for r in fake_twilio.requests) == sorted([CUSTOMER, "+50688880009"])
    other = await ask(client, "+50688880010", key="dbl-1")
    assert other.status == 409
    assert (await other.json())["error"]["field"] == "Idempotency-Key"
    count = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents"))
    assert count["n"] == 2


@pytest.mark.postgresql_only
async def test_presses_take_only_declared_lock_keys(
    start_app: Any, voice_settings: Any, fake_twilio: Any, monkeypatch: Any
) -> None:
    """Several instances: every advisory lock a press takes (its Idempotency-Key, the number's
    and the address's limits, the intake's receipt and contact) was declared to the store, so
    its batch took it first, in the one order every batch uses: presses cannot deadlock."""
    from gateway.store.postgres import PgTx, key_hash

    undeclared: list[str] = []
    lock_key = PgTx.lock_key

    def recording(self: Any, key: str) -> None:
        if key_hash(key) not in self._held:
            undeclared.append(key)
        lock_key(self, key)

    monkeypatch.setattr(PgTx, "lock_key", recording)
    client, _ = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    presses = await asyncio.gather(
        ask(client, key="held-1"), ask(client, "+50688880009"), ask(client, key="held-1")
    )
    assert [r.status for r in presses] == [202, 202, 202]
    assert sorted(r["To"] for r in fake_twilio.requests) == sorted([CUSTOMER, "+50688880009"])
    assert [k for k in undeclared if k.startswith(("click2call:", "receipt:", "contact:"))] == []


async def test_twilio_500_is_reconciled_then_placed_once(
    start_app: Any, voice_settings: Any, fake_twilio: Any, clock: Any, agent_token: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    fake_twilio.mode = "500"
    resp = await ask(client)
    assert resp.status == 202 and (await resp.json())["status"] == "calling"
    tracking = (await resp.json())["tracking"]
    assert (await attempt(gw, tracking))["state"] == "unknown"
    incident = await get_incident(client, await agent_token(gw), tracking)
    assert "Twilio 500" in event(incident, "callback_call_uncertain")["reason"]
    fake_twilio.mode = "ok"
    clock.advance(minutes=3)  # the attempt's watchdog job is due
    await gw.scheduler.run_due_jobs()
    await wait_until(lambda: _placed(gw, tracking), "the reconciled call")
    assert len(fake_twilio.calls) == 1 and len(fake_twilio.requests) == 2


async def test_lost_answer_is_reconciled_without_a_second_call(
    start_app: Any, voice_settings: Any, fake_twilio: Any, clock: Any, agent_token: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    call_api(gw).timeout = 0.3  # keep the test fast; production waits 10 s
    fake_twilio.mode = "timeout"
    resp = await ask(client)
    assert resp.status == 202
    tracking = (await resp.json())["tracking"]
    assert (await attempt(gw, tracking))["state"] == "unknown"
    clock.advance(minutes=3)
    await gw.scheduler.run_due_jobs()
    await wait_until(lambda: _placed(gw, tracking), "the reconciled call")
    assert len(fake_twilio.requests) == 1  # found by listing, not called again
    assert (await attempt(gw, tracking))["call_sid"] == fake_twilio.calls[0]["sid"]
    incident = await get_incident(client, await agent_token(gw), tracking)
    assert "callback_call_reconciled" in kinds(incident)


async def test_refused_by_twilio_is_visible_and_not_retried(
    start_app: Any, voice_settings: Any, fake_twilio: Any, clock: Any, agent_token: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    fake_twilio.mode = "400"
    tracking = (await (await ask(client)).json())["tracking"]
    clock.advance(minutes=30)
    await gw.scheduler.run_due_jobs()
    assert len(fake_twilio.requests) == 1
    incident = await get_incident(client, await agent_token(gw), tracking)
    assert "21215" in event(incident, "callback_call_failed")["reason"]


async def test_no_answer_is_retried_once_then_left_for_an_agent(
    start_app: Any, voice_settings: Any, fake_twilio: Any, clock: Any, agent_token: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=VOICE_ADAPTERS)
    tracking = (await (await ask(client)).json())["tracking"]
    first = fake_twilio.calls[0]
    resp = await post_signed(client, "/webhooks/twilio/status", call_status(first, "no-answer"))
    assert resp.status == 200
    await post_signed(client, "/webhooks/twilio/status", call_status(first, "no-answer"))
    clock.advance(minutes=9)
    await gw.scheduler.run_due_jobs()
    assert len(fake_twilio.requests) == 1  # retry_delay is 10 minutes
    clock.advance(minutes=2)
    await gw.scheduler.run_due_jobs()
    await wait_until(lambda: _placed_attempt(gw, tracking, 2), "the retry")
    second = fake_twilio.calls[1]
    assert second["to"] == CUSTOMER and "attempt=2" in second["_request"]["Url"]
    await post_signed(client, "/webhooks/twilio/status", call_status(second, "busy"))
    clock.advance(hours=1)
    await gw.scheduler.run_due_jobs()
    assert len(fake_twilio.requests) == 2
    incident = await get_incident(client, await agent_token(gw), tracking)
    assert kinds(incident).count("callback_no_answer") == 1
    assert event(incident, "callback_retry_scheduled")["reason"] == "no-answer"
    assert event(incident, "callback_not_reached")["reason"] == "busy"
    assert incident["status"] == "new"  # still in the L1 queue


async def _placed_attempt(gw: Any, tracking: str, number: int) -> bool:
    row = await gw.store.read(
        lambda tx: tx.one(
            "SELECT call_sid FROM click2call_attempts WHERE tracking = ? AND attempt = ?",
            (tracking, number),
        )
    )
    return row is not None and row["call_sid"] is not None
