"""Health that tells the truth (issue #16 item 5): /healthz says `read_only`/`degraded` when
the database answers reads but refuses writes, and 503 only when it cannot be reached; /metrics
reads the outbox and incidents through indexes only and counts the store's commits, retries
and deadlocks; old rows are purged, dedupe keys kept."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from config.settings import RetentionSettings
from gateway.core import retention
from gateway.core.model import Contact, Inbound
from gateway.core.scheduler import _gauges
from gateway.core.timeutil import iso
from tests.sqlplan import Recorder, query_plan


async def test_healthy_database_is_ok(start_app: Any, make_settings: Any) -> None:
    client, _ = await start_app(make_settings(GATEWAY_INSTANCE="gw-a"), adapters={})
    resp = await client.get("/healthz")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok", "instance": "gw-a", "database": "ok"}


@pytest.mark.sqlite_only
async def test_sqlite_lock_held_is_read_only_then_recovers(
    start_app: Any, make_settings: Any, db_url: str
) -> None:
    client, _ = await start_app(make_settings(), adapters={})
    other = sqlite3.connect(db_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        resp = await client.get("/healthz")
        assert resp.status == 200  # reads work: not 503
        body = await resp.json()
        assert body["status"] == "degraded" and body["database"] == "read_only"
    finally:
        other.execute("ROLLBACK")
        other.close()
    resp = await client.get("/healthz")
    assert (await resp.json())["database"] == "ok"  # recovered without a restart


@pytest.mark.sqlite_only
async def test_unreachable_database_is_503(start_app: Any, make_settings: Any) -> None:
    client, gw = await start_app(make_settings(), adapters={})
    await gw.store.close()
    try:
        resp = await client.get("/healthz")
        assert resp.status == 503
        assert (await resp.json())["database"] == "down"
    finally:
        await gw.store.open()


@pytest.mark.postgresql_only
async def test_postgresql_read_only_database_is_degraded(
    start_app: Any, make_settings: Any, db_url: str
) -> None:
    name = db_url.rsplit("/", 1)[1]
    client, gw = await start_app(make_settings(), adapters={})
    with psycopg.connect(db_url, autocommit=True) as conn:
        # What a hot standby or an operator's read-only switch looks like to the gateway.
        conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    await gw.store.close()  # its connections are made again, as after a failover
    await gw.store.open()
    resp = await client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "degraded" and body["database"] == "read_only"
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SET default_transaction_read_only = off")  # this session only
        conn.execute(f"ALTER DATABASE {name} RESET default_transaction_read_only")
    await gw.store.close()
    await gw.store.open()
    assert (await (await client.get("/healthz")).json())["database"] == "ok"


async def test_metrics_gauges_read_indexes_never_scan(
    start_app: Any, make_settings: Any, db_backend: str
) -> None:
    _, gw = await start_app(make_settings(), adapters={})  # the schema, migrated
    recorder = Recorder()
    _gauges(recorder)  # type: ignore[arg-type]  # the SQL /metrics runs
    assert len(recorder.sql) == 3
    for sql, params in recorder.sql:
        plan = await gw.store.transact(lambda tx, q=sql, p=params: query_plan(tx, q, p))
        if db_backend == "sqlite":
            assert "SCAN" not in plan.replace("SCAN USING", "") and "INDEX" in plan, (sql, plan)
        else:
            assert "Seq Scan" not in plan and "Index" in plan, (sql, plan)


async def store_counts(client: Any) -> dict[str, float]:
    """The store's counters as /metrics shows them."""
    resp = await client.get("/metrics")
    assert resp.status == 200
    counts = {}
    for line in (await resp.text()).splitlines():
        if line.startswith("gateway_store_") and line.split()[0].endswith("_total"):
            name, value = line.split()
            counts[name.removeprefix("gateway_store_").removesuffix("_total")] = float(value)
    return counts


async def test_metrics_count_the_stores_commits_retries_and_deadlocks(
    start_app: Any, make_settings: Any, db_backend: str
) -> None:
    client, gw = await start_app(make_settings(), adapters={})
    before = await store_counts(client)
    assert set(before) == {"batches", "retries", "deadlocks"}
    await gw.store.transact(
        lambda tx: tx.execute("INSERT INTO meta (key, value) VALUES ('m', 'x')")
    )
    after = await store_counts(client)
    assert after["batches"] > before["batches"]
    assert after["deadlocks"] == after["retries"] == 0
    if db_backend != "postgresql":
        return  # one writer: nothing to race with

    def crossing(first: str, second: str) -> Any:
        def job(tx: Any) -> str:
            tx.lock_key(first)  # taken by the job, not declared: the old way, which deadlocks
            tx.execute("SELECT pg_sleep(0.3)")
            tx.lock_key(second)
            return first

        return job

    one = asyncio.ensure_future(gw.store.transact(crossing("k1", "k2")))
    await asyncio.sleep(0.1)  # its batch holds k1: the next job goes into a batch of its own
    assert sorted(await asyncio.gather(one, gw.store.transact(crossing("k2", "k1")))) == [
        "k1",
        "k2",
    ]
    broken = await store_counts(client)
    assert broken["deadlocks"] >= 1  # an operator's alarm (deploy/prometheus): each cost ~1 s
    assert broken["batches"] > after["batches"]


async def test_purge_keeps_what_dedupe_needs(start_app: Any, make_settings: Any, clock) -> None:
    _, gw = await start_app(make_settings(), adapters={})

    async def contact(provider_id: str) -> Any:
        return await gw.intake.accept(
            Inbound(
                channel="whatsapp",
                provider_id=provider_id,
                contact=Contact(phone="+50688880000"),
                text="hola",
                received_at=gw.clock(),
                acknowledge=False,
            )
        )

    old = await contact("SMold")
    clock.advance(days=8)
    recent = await contact("SMrecent")
    now = gw.clock()

    def seed_outbox(tx: Any) -> None:
        for status, age in (("sent", 40), ("sent", 5), ("dead", 40), ("pending", 40)):
            at = iso(now - timedelta(days=age))
            row = tx.insert(
                "INSERT INTO outbox (channel, kind, recipient, status, next_attempt_at,"
                " created_at) VALUES ('whatsapp', 'ack', '+50688880000', ?, ?, ?)",
                (status, at, at),
            )
            tx.execute(
                "INSERT INTO outbox_attempts (outbox_id, at, ok) VALUES (?, ?, 1)", (row, at)
            )

    await gw.store.transact(seed_outbox)
    policy = RetentionSettings(outbox=timedelta(days=30), receipts=timedelta(days=7))
    assert await retention.purge(gw.store, now, policy) == (1, 1)
    left = await gw.store.read(
        lambda tx: (
            sorted((r["status"], r["created_at"][:10]) for r in tx.all("SELECT * FROM outbox")),
            [r["provider_id"] for r in tx.all("SELECT provider_id FROM receipts")],
        )
    )
    assert [s for s, _ in left[0]] == ["dead", "pending", "sent"]  # the recent sent row stays
    assert left[1] == ["SMrecent"]
    again = await contact("SMrecent")  # its provider retrying: still a duplicate
    assert again.duplicate and again.tracking == recent.tracking
    assert old.tracking != recent.tracking
