"""Races between instances on one PostgreSQL database are the store's business, not its
callers': a deadlock and a unique violation lost to another instance are retried inside the
store (the caller sees its result, never an error), and a tracking number is never handed out
twice by concurrent transactions of several instances."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.core.tracking import parse_tracking
from gateway.store.postgres import PostgresStore

pytestmark = pytest.mark.postgresql_only


@pytest.fixture
async def two_stores(db_url: str) -> Any:
    stores = [PostgresStore(db_url, instance=f"core-{i}") for i in "ab"]
    for store in stores:
        await store.open()
    yield stores
    for store in stores:
        await store.close()


async def test_a_deadlock_between_instances_is_retried_not_surfaced(two_stores: Any) -> None:
    a, b = two_stores

    def crossing(first: str, second: str) -> Any:
        def job(tx: Any) -> str:
            tx.lock_key(first)
            tx.execute("SELECT pg_sleep(0.3)")  # both now hold their first key
            tx.lock_key(second)
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?, 'x') ON CONFLICT DO NOTHING", (first,)
            )
            return first

        return job

    results = await asyncio.gather(
        a.transact(crossing("k1", "k2")), b.transact(crossing("k2", "k1"))
    )
    assert results == ["k1", "k2"]
    assert a.retries + b.retries == 1  # PostgreSQL chose one victim; it ran again
    keys = await a.read(lambda tx: [r["key"] for r in tx.all("SELECT key FROM meta ORDER BY key")])
    assert keys == ["k1", "k2"]


@pytest.mark.parametrize("declared", [False, True], ids=["keys-taken-by-jobs", "keys-declared"])
async def test_group_commit_batches_with_declared_keys_never_deadlock(
    db_url: str, declared: bool
) -> None:
    """Two batches of one instance, each two jobs on two contacts' keys in opposite orders:
    taken job by job they deadlock (PostgreSQL breaks it after `deadlock_timeout`, a second of
    every caller's time); declared to `transact`, both batches take them first, in one order."""
    store = PostgresStore(db_url, writers=2, max_batch=2)
    await store.open()
    try:

        def job(key: str, name: str) -> Any:
            def run(tx: Any) -> str:
                tx.lock_key(key)
                tx.execute("SELECT pg_sleep(0.3)")  # the other batch meanwhile takes its first
                tx.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (name, key))
                return name

            return run

        plan = [("contact:x", "a1"), ("contact:y", "a2"), ("contact:y", "b1"), ("contact:x", "b2")]
        results = await asyncio.gather(
            *(store.transact(job(key, name), keys=(key,) if declared else ()) for key, name in plan)
        )
        assert results == ["a1", "a2", "b1", "b2"]
        assert store.batches == 2  # two batches of two, as planned
        assert store.deadlocks == (0 if declared else 1)
        rows = await store.read(
            lambda tx: tx.all("SELECT key, value FROM meta WHERE key LIKE '__' ORDER BY key")
        )
        assert [(r["key"], r["value"]) for r in rows] == [
            ("a1", "contact:x"),
            ("a2", "contact:y"),
            ("b1", "contact:y"),
            ("b2", "contact:x"),
        ]
    finally:
        await store.close()


async def test_a_unique_violation_lost_to_another_instance_is_retried(two_stores: Any) -> None:
    a, b = two_stores

    def first_one_wins(tx: Any) -> str:
        # The check-then-insert a single writer could afford: two instances both see nothing.
        row = tx.one("SELECT value FROM meta WHERE key = 'owner'")
        if row is not None:
            return f"found {row['value']}"
        tx.execute("SELECT pg_sleep(0.2)")
        tx.execute("INSERT INTO meta (key, value) VALUES ('owner', ?)", (tx.dialect,))
        return "inserted"

    results = await asyncio.gather(a.transact(first_one_wins), b.transact(first_one_wins))
    assert sorted(results) == ["found postgresql", "inserted"]
    assert a.retries + b.retries == 1


async def test_instances_never_hand_out_one_tracking_number_twice(two_stores: Any) -> None:
    a, b = two_stores

    def take(tx: Any) -> str:
        return tx.next_tracking(None)

    def take_then_fail(tx: Any) -> str:
        number = tx.next_tracking(None)
        raise ValueError(number)  # rolled back: its number is a gap, never reused

    taken = await asyncio.gather(
        *(store.transact(take) for _ in range(100) for store in (a, b)),
        *(a.transact(take_then_fail) for _ in range(10)),
        return_exceptions=True,
    )
    numbers = [n for n in taken if isinstance(n, str)]
    failed = [str(e) for e in taken if isinstance(e, ValueError)]
    assert len(numbers) == 200 and len(failed) == 10
    assert len(set(numbers + failed)) == 210
    assert all(parse_tracking(n) == n for n in numbers)
