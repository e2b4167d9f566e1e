"""No work stuck until a restart (issue 16): a hung sender holds neither its other rows nor
other channels, a row that crashed the process dead-letters, a slow job never delays SLA
breach marking."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from gateway.app import create_app, prepare_store
from gateway.core.model import Contact, Inbound, OutboundItem
from gateway.core.outbox import CRASHED, Outbox
from gateway.core.scheduler import Scheduler, schedule_job
from gateway.core.services import GW
from gateway.core.timeutil import iso
from tests.conftest import OPEN_TIME


def contact(channel: str, pid: str, who: str) -> Inbound:
    fields = {"telegram": "telegram_chat_id", "whatsapp": "phone"}
    return Inbound(
        channel=channel,
        provider_id=pid,
        contact=Contact(**{fields[channel]: who}),
        text="Hola, no tengo servicio",
        received_at=OPEN_TIME,
        thread_by_contact=True,
    )


async def started(settings, clock):
    gw = create_app(settings, clock=clock, adapters={})[GW]
    await prepare_store(gw)
    return gw


async def test_a_hung_send_times_out_and_holds_no_other_channel(settings, clock) -> None:
    gw = await started(settings, clock)
    outbox = Outbox(gw.store, clock, settings.outbox, send_timeout=timedelta(seconds=0.3))
    hang = asyncio.Event()
    delivered: list[str] = []

    async def hung(item: OutboundItem) -> str:
        await hang.wait()  # a chat socket whose reader stopped: never returns
        return "never"

    async def fine(item: OutboundItem) -> str:
        delivered.append(item.recipient)
        return "sid"

    outbox.register("telegram", hung)
    outbox.register("whatsapp", fine)
    await gw.intake.accept(contact("telegram", "t1", "100"))
    for n in range(3):
        await gw.intake.accept(contact("whatsapp", f"w{n}", f"+5068888000{n}"))
    worker = asyncio.create_task(outbox.run())
    try:
        async with asyncio.timeout(5):
            while len(delivered) < 3:  # noqa: ASYNC110 - filled by the worker
                await asyncio.sleep(0.01)
            while True:  # the hung send gave up: a retryable failure, row pending again
                row = await gw.store.read(
                    lambda tx: tx.one("SELECT * FROM outbox WHERE channel = 'telegram'")
                )
                if row["status"] == "pending":
                    break
                await asyncio.sleep(0.01)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert sorted(delivered) == ["+50688880000", "+50688880001", "+50688880002"]
    assert row["attempts"] == 1 and "no answer from the provider within 0.3 s" in row["last_error"]
    await gw.store.close()


async def test_per_channel_concurrency_is_bounded(settings, clock) -> None:
    gw = await started(settings, clock)
    outbox = Outbox(gw.store, clock, settings.outbox, per_channel=2)
    running, most = 0, 0
    gate = asyncio.Event()

    async def slow(item: OutboundItem) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await gate.wait()
        running -= 1
        return "sid"

    outbox.register("whatsapp", slow)
    for n in range(5):
        await gw.intake.accept(contact("whatsapp", f"c{n}", f"+5067777000{n}"))
    first = asyncio.create_task(outbox.drain_once())
    await asyncio.sleep(0.2)
    assert most == 2  # two in flight; the others wait for a slot
    gate.set()
    assert await first == 2
    await outbox.drain_once()
    await outbox.drain_once()
    assert most == 2
    sent = await gw.store.read(
        lambda tx: tx.one("SELECT count(*) AS n FROM outbox WHERE status = 'sent'")
    )
    assert sent["n"] == 5
    await gw.store.close()


class SlowRecords:
    """The store, except that committing a send's result waits until `gate` is set."""

    def __init__(self, store, gate: asyncio.Event):
        self.store, self.gate = store, gate

    def __getattr__(self, name):
        return getattr(self.store, name)

    async def transact(self, fn, **kw):
        if fn.__qualname__.startswith("Outbox._deliver"):
            await self.gate.wait()
        return await self.store.transact(fn, **kw)


async def test_a_slot_serves_the_next_row_while_the_last_result_is_committed(
    settings, clock
) -> None:
    """The provider's concurrency is what a slot bounds: once the provider has answered, the
    next row goes out while the answer is still being written (the row stays leased)."""
    gw = await started(settings, clock)
    gate = asyncio.Event()
    outbox = Outbox(SlowRecords(gw.store, gate), clock, settings.outbox, per_channel=1)
    sent: list[str] = []
    all_sent = asyncio.Event()

    async def send(item: OutboundItem) -> str:
        sent.append(item.recipient)
        if len(sent) == 3:
            all_sent.set()
        return f"id-{len(sent)}"

    outbox.register("whatsapp", send)
    for n in range(3):
        await gw.intake.accept(contact("whatsapp", f"s{n}", f"+5067777100{n}"))
    worker = asyncio.create_task(outbox.run())
    try:
        async with asyncio.timeout(10):
            await all_sent.wait()  # every row sent, though no result is committed yet
        pending = await gw.store.read(
            lambda tx: tx.one("SELECT count(*) AS n FROM outbox WHERE status = 'sending'")
        )
        assert pending["n"] == 3  # leased until their results are written
        gate.set()
        async with asyncio.timeout(10):
            while True:
                done = await gw.store.read(
                    lambda tx: tx.one("SELECT count(*) AS n FROM outbox WHERE status = 'sent'")
                )
                if done["n"] == 3:
                    break
                await asyncio.sleep(0.01)
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert sorted(sent) == ["+50677771000", "+50677771001", "+50677771002"]
    await gw.store.close()


async def test_a_row_that_crashes_the_process_dead_letters(make_settings, clock) -> None:
    """Each claim counts an attempt before the send: a poison row whose send kills the process
    every time is dead-lettered once its attempts are spent, never retried for ever."""
    settings = make_settings({"outbox": {"max_attempts": 3}})
    gw = await started(settings, clock)
    await gw.intake.accept(contact("telegram", "poison", "666"))
    crashes = 0
    for _ in range(5):  # each "process" claims the row, then dies during the send
        outbox = Outbox(gw.store, clock, settings.outbox)
        gate = asyncio.Event()

        async def crash(item: OutboundItem, gate: asyncio.Event = gate) -> str:
            await gate.wait()
            return "never"

        outbox.register("telegram", crash)
        task = asyncio.create_task(outbox.drain_once())
        await asyncio.sleep(0.1)
        task.cancel()  # the process died mid-send: no result recorded
        await asyncio.gather(task, return_exceptions=True)
        for pending in list(outbox._tasks):
            pending.cancel()
        await asyncio.gather(*outbox._tasks, return_exceptions=True)
        row = await gw.store.read(lambda tx: tx.one("SELECT * FROM outbox"))
        if row["status"] == "dead":
            break
        crashes += 1
        clock.advance(minutes=1)  # its lease expires
    assert crashes == 3 and row["status"] == "dead" and row["attempts"] == 3
    assert row["last_error"] == CRASHED.format(n=3)
    failed = await gw.store.read(
        lambda tx: tx.one("SELECT count(*) AS n FROM events WHERE kind = 'delivery_failed'")
    )
    assert failed["n"] == 1  # visible on the incident
    await gw.store.close()


async def test_a_slow_job_never_delays_breach_marking(settings, clock) -> None:
    gw = await started(settings, clock)
    scheduler = Scheduler(gw.store, clock, gw.metrics, gw.bus)
    scheduler.breach_every = 0.05
    stuck = asyncio.Event()
    started_job = asyncio.Event()

    async def download(payload: dict) -> None:
        started_job.set()
        await stuck.wait()  # a media download that takes minutes

    scheduler.register("media", download)
    receipt = await gw.intake.accept(contact("whatsapp", "late", "+50655550000"))
    now = clock()
    await gw.store.transact(lambda tx: schedule_job(tx, "media", "m1", now))
    worker = asyncio.create_task(scheduler.run())
    try:
        async with asyncio.timeout(5):
            await started_job.wait()  # the job runs (and hangs) while the SLA is still fine
            clock.advance(days=3)  # then every SLA of the incident passes
            while True:
                row = await gw.store.read(lambda tx: tx.incident(receipt.incident_id))
                if row["attention_breached"]:
                    break
                await asyncio.sleep(0.02)
    finally:
        stuck.set()
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert row["attention_breached"] == 1
    assert iso(clock()) > row["attention_due"]
    await gw.store.close()
