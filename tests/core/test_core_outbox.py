"""The outbox worker: retries with capped backoff, dead-letters with the reason, resumes after a
restart (expired leases are taken again), and one failing row never stops the others."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import timedelta

import pytest

from config.settings import OutboxSettings
from gateway.app import create_app, prepare_store
from gateway.core.model import Contact, Inbound, OutboundItem, SendError
from gateway.core.outbox import retry_delay
from gateway.core.services import GW
from gateway.core.timeutil import iso, parse_iso
from tests.conftest import OPEN_TIME, FakeClock


def tg(pid: str, chat: str) -> Inbound:
    return Inbound(
        channel="telegram",
        provider_id=pid,
        contact=Contact(telegram_chat_id=chat),
        text="Hola, no tengo servicio",
        received_at=OPEN_TIME,
        thread_by_contact=True,
    )


async def started(settings, clock):
    app = create_app(settings, clock=clock, adapters={})
    gw = app[GW]
    await prepare_store(gw)
    return gw


async def rows(gw) -> list[dict]:
    return await gw.store.read(lambda tx: tx.all("SELECT * FROM outbox ORDER BY id"))


def test_backoff_is_capped_and_jittered() -> None:
    s = OutboxSettings(
        max_attempts=8, base_delay=timedelta(seconds=5), max_delay=timedelta(minutes=15)
    )
    rnd = random.Random(1)
    delays = [retry_delay(n, s, rnd) for n in range(1, 12)]
    assert timedelta(seconds=2.5) <= delays[0] <= timedelta(seconds=5)
    assert all(d <= timedelta(minutes=15) for d in delays)
    assert delays[-1] >= timedelta(minutes=7.5)


async def test_retry_then_success_records_every_attempt(settings, clock) -> None:
    gw = await started(settings, clock)
    calls: list[OutboundItem] = []

    async def flaky(item: OutboundItem) -> str:
        calls.append(item)
        if len(calls) < 3:
            raise SendError("502 from provider")
        return "provider-42"

    gw.outbox.register("telegram", flaky)
    r = await gw.intake.accept(tg("u1", "1001"))
    assert await gw.outbox.drain_once() == 1
    row = (await rows(gw))[0]
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["last_error"] == "502 from provider"
    assert parse_iso(row["next_attempt_at"]) > clock.now
    assert await gw.outbox.drain_once() == 0  # not due yet
    clock.advance(minutes=1)
    await gw.outbox.drain_once()
    clock.advance(minutes=1)
    await gw.outbox.drain_once()
    row = (await rows(gw))[0]
    assert row["status"] == "sent" and row["attempts"] == 3 and row["provider_id"] == "provider-42"
    assert calls[0].tracking == r.tracking and calls[0].kind == "ack"
    assert r.tracking in calls[0].payload["text"]
    attempts = await gw.store.read(lambda tx: tx.all("SELECT ok, error FROM outbox_attempts"))
    assert [(a["ok"], a["error"]) for a in attempts] == [
        (0, "502 from provider"),
        (0, "502 from provider"),
        (1, None),
    ]
    await gw.store.close()


async def test_permanent_failure_and_exhaustion_dead_letter_with_reason(make_settings, clock):
    settings = make_settings({"outbox": {"max_attempts": 2}})
    gw = await started(settings, clock)

    async def sender(item: OutboundItem) -> str:
        if item.recipient == "blocked":
            raise SendError("403 Forbidden: bot was blocked by the user", permanent=True)
        raise RuntimeError("socket closed")  # a bug in a sender is one row's failure

    gw.outbox.register("telegram", sender)
    blocked = await gw.intake.accept(tg("u1", "blocked"))
    await gw.intake.accept(tg("u2", "2002"))
    await gw.outbox.drain_once()
    clock.advance(hours=1)
    await gw.outbox.drain_once()
    by_recipient = {r["recipient"]: r for r in await rows(gw)}
    assert by_recipient["blocked"]["status"] == "dead"
    assert by_recipient["blocked"]["attempts"] == 1
    assert "blocked by the user" in by_recipient["blocked"]["last_error"]
    assert by_recipient["2002"]["status"] == "dead" and by_recipient["2002"]["attempts"] == 2
    assert "RuntimeError: socket closed" in by_recipient["2002"]["last_error"]
    events = await gw.store.read(
        lambda tx: tx.all(
            "SELECT e.kind, e.detail FROM events e JOIN incidents i ON i.id = e.incident_id"
            " WHERE i.tracking = ? AND e.kind = 'delivery_failed'",
            (blocked.tracking,),
        )
    )
    assert json.loads(events[0]["detail"])["reason"].startswith("403 Forbidden")
    await gw.store.close()


async def test_rows_wait_without_a_sender_and_resume_after_restart(settings) -> None:
    clock = FakeClock()
    gw = await started(settings, clock)
    await gw.intake.accept(tg("u1", "3003"))
    assert await gw.outbox.drain_once() == 0  # no telegram sender: the row waits
    sent: list[int] = []
    # Simulate a worker that leased the row and died: status 'sending' with a lease.
    await gw.store.transact(
        lambda tx: tx.execute(
            "UPDATE outbox SET status = 'sending', lease_until = ?",
            (iso(clock.now + timedelta(minutes=2)),),
        )
    )
    await gw.store.close()

    gw2 = await started(settings, clock)

    async def ok(item: OutboundItem) -> str:
        sent.append(item.id)
        return "m1"

    gw2.outbox.register("telegram", ok)
    assert await gw2.outbox.drain_once() == 0  # lease still held by the dead worker
    clock.advance(minutes=3)
    assert await gw2.outbox.drain_once() == 1
    assert sent == [1]
    assert (await rows(gw2))[0]["status"] == "sent"
    await gw2.store.close()


@pytest.mark.parametrize("retry_after", [30.0])
async def test_retry_after_is_honoured(settings, clock, retry_after) -> None:
    gw = await started(settings, clock)

    async def limited(item: OutboundItem) -> str:
        raise SendError("429 Too Many Requests", retry_after=retry_after)

    gw.outbox.register("telegram", limited)
    await gw.intake.accept(tg("u1", "4004"))
    await gw.outbox.drain_once()
    row = (await rows(gw))[0]
    assert parse_iso(row["next_attempt_at"]) >= clock.now + timedelta(seconds=retry_after)
    await gw.store.close()


async def test_an_idle_gateway_does_not_write(settings, clock) -> None:
    """Polling for due rows and jobs is a read: no write transaction (fsync) every second."""
    gw = await started(settings, clock)

    async def ok(item: OutboundItem) -> str:
        return "id"

    gw.outbox.register("telegram", ok)

    async def job(payload: dict) -> None:
        return None

    gw.scheduler.register("noop", job)
    before = gw.store.batches
    for _ in range(5):
        assert await gw.outbox.drain_once() == 0
        assert await gw.scheduler.run_due_jobs() == 0
    assert gw.store.batches == before
    await gw.intake.accept(tg("u1", "5005"))
    assert await gw.outbox.drain_once() == 1  # a due row is still claimed and sent
    await gw.store.close()


async def test_metrics_show_how_long_the_oldest_undelivered_row_has_waited(
    start_app, settings, clock
) -> None:
    """Telegram down for half an hour: the backlog and its age are what an alert watches."""
    client, gw = await start_app(settings, adapters={})  # no sender: rows of telegram wait
    await gw.intake.accept(tg("u-age-1", "5001"))
    clock.advance(minutes=20)
    await gw.intake.accept(tg("u-age-2", "5002"))
    clock.advance(minutes=10)
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_outbox_backlog{channel="telegram",status="pending"} 2.0' in metrics
    assert 'gateway_outbox_oldest_pending_seconds{channel="telegram"} 1800.0' in metrics


@pytest.mark.parametrize("turns", range(6))
async def test_workers_stop_when_cancelled_just_as_they_are_woken(settings, clock, turns) -> None:
    """A shutdown that cancels the outbox and the scheduler in the loop turns after a wake-up
    stops them; with asyncio.wait_for (Python 3.11) one such turn swallowed the cancellation
    and the gateway's shutdown waited for ever (seen as a hung test teardown)."""
    gw = await started(settings, clock)
    for worker, wake in ((gw.outbox.run, gw.outbox.wake), (gw.scheduler.run, gw.scheduler.wake)):
        task = asyncio.create_task(worker())
        await asyncio.sleep(0.05)  # idle: waiting to be woken
        wake()
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=3)
        assert done == {task}, f"{worker.__qualname__} outlived its cancellation"
    await gw.store.close()


async def test_a_row_committed_during_a_pass_is_sent_without_waiting_for_the_poll(
    settings, clock, monkeypatch
) -> None:
    """An acknowledgement whose intake commits (and wakes the worker) while the worker is in
    the middle of a pass that found nothing to send goes out at once, not at the next poll:
    the worker forgets only the wakes that came before the pass began."""
    monkeypatch.setattr("gateway.core.outbox.POLL", 60.0)
    gw = await started(settings, clock)
    sent = asyncio.Event()

    async def ok(item: OutboundItem) -> str:
        sent.set()
        return "id"

    gw.outbox.register("telegram", ok)
    real_read, reads = gw.store.read, []

    async def read(fn):  # the pass's read, with an intake committing meanwhile
        result = await real_read(fn)
        reads.append(fn)
        if len(reads) == 1:
            await gw.intake.accept(tg("u-wake", "6006"))  # commits, then wakes the worker
        return result

    gw.store.read = read
    worker = asyncio.create_task(gw.outbox.run())
    try:
        await asyncio.wait_for(sent.wait(), timeout=10)  # not the 60 s poll
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        await gw.store.close()
