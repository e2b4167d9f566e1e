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
from gateway.app import create_app, prepare_store
from gateway.core.model import Contact, Inbound
from gateway.core.services import GW
from gateway.core.timeutil import iso, utcnow
from gateway.core.tracking import format_tracking
from gateway.store.sqlite import configure_connection
from gateway.store.tx import to_json

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
    # The real clock: every intake reads its own time, as in production.
    gw = create_app(settings, clock=utcnow, adapters={})[GW]
    await prepare_store(gw)

    async def one(i: int) -> None:
        await gw.intake.accept(
            Inbound(
                channel="telegram",
                provider_id=f"bench:{i}",
                contact=Contact(name=f"Cliente {i}", telegram_chat_id=str(100000 + i)),
                text="Buenos días, la central no registra las llamadas entrantes desde ayer.",
                received_at=utcnow(),
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


async def ceiling(directory: str, n: int, batch: int) -> float:
    """What the pipeline's rows alone cost: no routing, no logic, no event loop.

    For each new contact the pipeline reads three rows (receipt, contact, open conversation) and
    writes seven (contact, incident, message, two events, receipt, acknowledgement); here `batch`
    contacts at a time do exactly that with one statement per table (IN lists, executemany) into
    the gateway's own schema and indexes, then one COMMIT. Returns contacts per second: a
    durable design that writes these rows through Python's sqlite3 cannot beat it.
    """
    settings = load_settings({"GATEWAY_DB": f"sqlite:///{directory}/ceiling.db"})
    gw = create_app(settings, clock=utcnow, adapters={})[GW]
    await prepare_store(gw)  # the gateway's tables and indexes, as migrations create them
    await gw.store.close()
    conn = sqlite3.connect(f"{directory}/ceiling.db", isolation_level=None)
    configure_connection(conn)
    text = "Buenos días, la central no registra las llamadas entrantes desde ayer."
    started = time.perf_counter()
    for first in range(0, n, batch):
        ids = range(first, min(first + batch, n))
        now = iso(utcnow())
        chats = [str(100000 + i) for i in ids]
        marks = ", ".join("?" * len(ids))
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(
            f"SELECT incident_id FROM receipts WHERE channel = 'telegram' AND provider_id IN"
            f" ({marks})",
            [f"bench:{i}" for i in ids],
        ).fetchall()
        conn.execute(
            f"SELECT * FROM contacts WHERE telegram_chat_id IN ({marks})", chats
        ).fetchall()
        conn.execute(
            f"SELECT * FROM incidents WHERE conversation_key IN ({marks})"
            " AND status IN ('new', 'in_progress', 'waiting_customer')",
            [f"telegram:{c}" for c in chats],
        ).fetchall()
        top = conn.execute(
            "SELECT (SELECT coalesce(max(id), 0) FROM contacts),"
            " (SELECT coalesce(max(id), 0) FROM incidents),"
            " (SELECT coalesce(max(id), 0) FROM messages)"
        ).fetchone()
        rows = [(top[0] + k + 1, top[1] + k + 1, top[2] + k + 1, c) for k, c in enumerate(chats)]
        conn.executemany(
            "INSERT INTO contacts (id, name, telegram_chat_id, created_at) VALUES (?, ?, ?, ?)",
            [(cid, f"Cliente {c}", c, now) for cid, _, _, c in rows],
        )
        conn.executemany(
            "INSERT INTO incidents (id, tracking, channel, country, line, level, severity, status,"
            " subject, description, contact_id, conversation_key, language, occurred_at,"
            " registered_at, registered_by, attention_due, solution_due, urgent_due, routing,"
            " flags, updated_at) VALUES (?, ?, 'telegram', 'CR', '+50640004000', 'L1', 'S3',"
            " 'new', ?, ?, ?, ?, 'es', ?, ?, ?, ?, ?, ?, ?, '[]', ?)",
            [
                (iid, format_tracking(iid), text[:40], text, cid, f"telegram:{c}", now, now,
                 f"telegram:{c}", now, now, now, '{"reasons":["default line CR"]}', now)
                for cid, iid, _, c in rows
            ],
        )  # fmt: skip
        conn.executemany(
            "INSERT INTO messages (id, incident_id, direction, channel, author, sender, body, at)"
            " VALUES (?, ?, 'in', 'telegram', ?, ?, ?, ?)",
            [(mid, iid, f"Cliente {c}", c, text, now) for _, iid, mid, c in rows],
        )
        conn.executemany(
            "INSERT INTO events (incident_id, at, actor, kind, detail)"
            " VALUES (?, ?, 'system', ?, ?)",
            [
                (iid, now, kind, to_json({"channel": "telegram", "level": "L1"}))
                for _, iid, _, _ in rows
                for kind in ("registered", "routed")
            ],
        )
        conn.executemany(
            "INSERT INTO receipts (channel, provider_id, received_at, incident_id, message_id)"
            " VALUES ('telegram', ?, ?, ?, ?)",
            [(f"bench:{first + k}", now, iid, mid) for k, (_, iid, mid, _) in enumerate(rows)],
        )
        conn.executemany(
            "INSERT INTO outbox (channel, kind, recipient, incident_id, payload, next_attempt_at,"
            " created_at) VALUES ('telegram', 'ack', ?, ?, ?, ?, ?)",
            [
                (c, iid, to_json({"tracking": format_tracking(iid), "language": "es"}), now, now)
                for _, iid, _, c in rows
            ],
        )
        conn.execute("INSERT INTO tracking_serial (id, at) VALUES (?, ?)", (rows[-1][1], now))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return n / elapsed


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
        c_rate = await ceiling(tmp, args.intakes, args.concurrency)
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
    print(
        f"ceiling   rows only, batched    : {c_rate:8.0f} /s  ({c_rate / b_rate:.2f}x the baseline:"
        " the same reads and writes per contact, no logic)"
    )


if __name__ == "__main__":
    asyncio.run(main())
