"""Claimed work across instances: two outbox workers on one database never send a row twice,
a send slower than the lease keeps its row (the lease is renewed), and a worker that stopped
mid-send loses its rows to the other once the lease runs out."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from gateway.core.model import Contact, Inbound
from gateway.core.outbox import Outbox
from gateway.core.timeutil import utcnow

LEASE = timedelta(seconds=0.6)


def email(pid: str, sender: str) -> Inbound:
    return Inbound(
        channel="email",
        provider_id=pid,
        contact=Contact(name="Cliente", email=sender),
        text="Mi línea no funciona",
        subject="Falla",
        received_at=utcnow(),
    )


async def two_workers(
    start_app: Any, make_settings: Any, sender: Any
) -> tuple[Any, Outbox, Outbox]:
    """A gateway (its own worker idle) and two outbox workers with short leases on its store."""
    _, gw = await start_app(make_settings(), adapters={}, clock_=utcnow)
    workers = []
    for _ in range(2):
        outbox = Outbox(gw.store, utcnow, gw.settings.outbox, lease=LEASE)
        outbox.register("email", sender)
        workers.append(outbox)
    return gw, workers[0], workers[1]


async def test_two_workers_draining_at_once_send_each_row_once(start_app, make_settings) -> None:
    sent: list[int] = []

    async def sender(item: Any) -> str:
        sent.append(item.id)
        await asyncio.sleep(0.01)
        return f"<{item.id}@relay>"

    gw, a, b = await two_workers(start_app, make_settings, sender)
    for i in range(30):
        await gw.intake.accept(email(f"<two{i}@x>", f"c{i}@example.com"))
    for _ in range(5):
        await asyncio.gather(a.drain_once(), b.drain_once())
    assert sorted(sent) == sorted(set(sent)) and len(sent) == 30


async def test_a_send_slower_than_the_lease_keeps_its_row(start_app, make_settings) -> None:
    calls: list[int] = []
    release = asyncio.Event()

    async def slow(item: Any) -> str:
        calls.append(item.id)
        await release.wait()
        return "<slow@relay>"

    gw, a, b = await two_workers(start_app, make_settings, slow)
    await gw.intake.accept(email("<slow@x>", "lenta@example.com"))
    busy = asyncio.create_task(a.drain_once())
    await asyncio.sleep(0.1)
    for _ in range(8):  # two and a half leases: B keeps finding the row still leased
        assert await b.drain_once() == 0
        await asyncio.sleep(0.2)
    release.set()
    assert await busy == 1
    assert calls == calls[:1] and len(calls) == 1
    row = await gw.store.read(lambda tx: tx.one("SELECT status, attempts FROM outbox"))
    assert row == {"status": "sent", "attempts": 1}


async def test_a_worker_that_stopped_mid_send_loses_its_rows_to_the_other(
    start_app, make_settings
) -> None:
    calls: list[str] = []

    async def hangs(item: Any) -> str:
        calls.append("a")
        await asyncio.Event().wait()  # the instance died here
        return "never"

    async def works(item: Any) -> str:
        calls.append("b")
        return "<b@relay>"

    gw, a, b = await two_workers(start_app, make_settings, hangs)
    b.register("email", works)
    await gw.intake.accept(email("<dead@x>", "huerfano@example.com"))
    dying = asyncio.create_task(a.drain_once())
    await asyncio.sleep(0.1)
    dying.cancel()  # its lease keeper stops with it, as in a killed process
    await asyncio.gather(dying, return_exceptions=True)
    assert await b.drain_once() == 0  # still leased by A
    await asyncio.sleep(LEASE.total_seconds() + 0.2)
    assert await b.drain_once() == 1
    assert calls == ["a", "b"]
    row = await gw.store.read(lambda tx: tx.one("SELECT status FROM outbox"))
    assert row == {"status": "sent"}
