"""Benchmark: the intake pipeline with group commit vs a bare per-row INSERT+COMMIT baseline.

Both run in this process, in the same run, on file-backed SQLite (WAL, synchronous=FULL) in a
temporary directory, with C concurrent callers. Prints intakes/s, the ratio and p50/p99 latency.
Every pipeline intake is durable when its `accept()` returns (it waited for its COMMIT).

    .venv/bin/python bench/intake.py [--intakes 5000] [--concurrency 50]
"""

from __future__ import annotations

import sys
from pathlib import Path

# bench/queue.py (the queue benchmark) would shadow the stdlib `queue` that aiosqlite imports:
# drop this folder from the path and put the project root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiosqlite

from config.loader import load_settings
from gateway.app import GW, create_app, prepare_store
from gateway.model import Contact, Inbound

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)


async def drive(
    n: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> tuple[float, list[float]]:
    """Run `one(i)` for i < n with `concurrency` workers; return elapsed seconds and latencies."""
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - started, latencies


async def baseline(path: str, n: int, concurrency: int) -> tuple[float, list[float]]:
    """One INSERT and one COMMIT (one fsync) per row: the naive durable design."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute("PRAGMA synchronous=FULL")
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS intake (id INTEGER PRIMARY KEY, channel TEXT, provider_id TEXT"
        " UNIQUE, sender TEXT, body TEXT, at TEXT)"
    )

    def insert_commit(db: sqlite3.Connection, i: int) -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute(
            "INSERT INTO intake (channel, provider_id, sender, body, at) VALUES (?, ?, ?, ?, ?)",
            ("whatsapp", f"SM{i:08d}", "+50688880000", "No tengo tono desde ayer", NOW.isoformat()),
        )
        db.execute("COMMIT")

    async def one(i: int) -> None:
        # One trip to the connection thread per row, so rows never share a COMMIT by accident.
        await conn._execute(insert_commit, conn._conn, i)

    try:
        return await drive(n, concurrency, one)
    finally:
        await conn.close()


async def pipeline(directory: str, n: int, concurrency: int) -> tuple[float, list[float], int]:
    """The real pipeline: dedupe, threading, routing, incident + message + events + receipt +
    outbox acknowledgement, group-committed."""
    settings = load_settings({"GATEWAY_DB": f"sqlite:///{directory}/gateway.db"})
    gw = create_app(settings, clock=lambda: NOW, adapters={})[GW]
    await prepare_store(gw)

    async def one(i: int) -> None:
        await gw.intake.accept(
            Inbound(
                channel="telegram",
                provider_id=f"bench:{i}",
                contact=Contact(name=f"Cliente {i}", telegram_chat_id=str(100000 + i)),
                text="Buenos días, la central no registra las llamadas entrantes desde ayer.",
                received_at=NOW,
                thread_by_contact=True,
            )
        )

    try:
        elapsed, latencies = await drive(n, concurrency, one)
        stored = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents")["n"])
        assert stored == n, f"{stored} of {n} intakes stored"
        return elapsed, latencies, gw.store.batches
    finally:
        await gw.store.close()


def pct(values: list[float], q: float) -> float:
    """The q-quantile in milliseconds."""
    return statistics.quantiles(values, n=100)[int(q * 100) - 1] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--intakes", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        b_elapsed, b_lat = await baseline(f"{tmp}/baseline.db", args.intakes, args.concurrency)
        p_elapsed, p_lat, batches = await pipeline(tmp, args.intakes, args.concurrency)
    b_rate, p_rate = args.intakes / b_elapsed, args.intakes / p_elapsed
    print(
        f"{args.intakes} intakes, {args.concurrency} concurrent, file SQLite WAL synchronous=FULL"
    )
    print(
        f"baseline  INSERT+COMMIT per row : {b_rate:8.0f} /s  p50 {pct(b_lat, 0.5):6.2f} ms"
        f"  p99 {pct(b_lat, 0.99):6.2f} ms"
    )
    print(
        f"pipeline  group commit          : {p_rate:8.0f} /s  p50 {pct(p_lat, 0.5):6.2f} ms"
        f"  p99 {pct(p_lat, 0.99):6.2f} ms  ({batches} commits, "
        f"{args.intakes / max(batches, 1):.1f} intakes each)"
    )
    print(f"ratio pipeline/baseline         : {p_rate / b_rate:8.2f}x  (target >= 3x)")


if __name__ == "__main__":
    asyncio.run(main())
