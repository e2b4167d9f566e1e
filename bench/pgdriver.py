"""Benchmark: the PostgreSQL driver choice, psycopg 3 (what the store uses) vs asyncpg.

Both drivers run the same intake-shaped transaction on the same durable throwaway cluster (fsync
on), in the gateway's schema: look up the receipt, the contact and the open conversation, take
an advisory lock on the sender, insert the contact, take a tracking number from the sequence,
insert the incident, the message, two events and the receipt, then COMMIT. Four ways to run it,
each with 1 and with 50 concurrent callers (asyncio tasks), printing transactions/s and p50/p99
of one caller's wait:
- psycopg, the store: `PostgresStore.transact` itself (sync connections from a pool, run in
  database threads, every function queued meanwhile group-committed in one transaction);
- psycopg, one transaction per call: the same pool and threads, no group commit;
- asyncpg, one transaction per call: an asyncpg pool of the same size, one transaction each;
- asyncpg, group commit: the store's batching (up to seven batches at once, 16 calls each)
  written for asyncpg, so the drivers are also compared with the same design.
Each way is warmed up first (20 calls). The callers run on CPU 1 and PostgreSQL on CPU 0 when
the machine has two.

    .venv/bin/python bench/pgdriver.py [--transactions 2000] [--concurrency 1 50]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import psycopg_pool

from bench.databases import LOAD_CPU, POSTGRESQL, Databases, pin, pinning, write_json
from gateway.core.timeutil import utcnow
from gateway.core.tracking import format_tracking
from gateway.store.postgres import PgTx, PostgresStore, configure_session, connect_kwargs, key_hash
from gateway.store.tx import Tx, to_json

POOL = 7  # as many connections as the store's writers
SQL = {
    "receipt": "SELECT incident_id FROM receipts WHERE channel = 'whatsapp' AND provider_id = ?",
    "contact": "SELECT id FROM contacts WHERE phone = ?",
    "open": "SELECT id FROM incidents WHERE conversation_key = ?"
    " AND status IN ('new', 'in_progress', 'waiting_customer')",
    "lock": "SELECT pg_advisory_xact_lock(?)",
    "new_contact": "INSERT INTO contacts (name, phone, created_at) VALUES (?, ?, ?) RETURNING id",
    "serial": "SELECT nextval('tracking_serial') AS n",
    "incident": "INSERT INTO incidents (tracking, channel, country, line, severity, subject,"
    " description, contact_id, conversation_key, occurred_at, registered_at, registered_by,"
    " attention_due, solution_due, urgent_due, routing, updated_at) VALUES (?, 'whatsapp', 'CR',"
    " '+50640004000', 'S3', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
    "message": "INSERT INTO messages (incident_id, direction, channel, author, sender, body, at)"
    " VALUES (?, 'in', 'whatsapp', ?, ?, ?, ?) RETURNING id",
    "events": "INSERT INTO events (incident_id, at, actor, kind, detail) VALUES"
    " (?, ?, 'system', 'registered', ?), (?, ?, 'system', 'routed', ?)",
    "new_receipt": "INSERT INTO receipts (channel, provider_id, received_at, incident_id,"
    " message_id) VALUES ('whatsapp', ?, ?, ?, ?)",
}
TEXT = "Hola, no tengo tono en mi línea desde esta mañana"


def dollars(sql: str) -> str:
    """`?` placeholders as asyncpg's $1, $2..."""
    parts = sql.split("?")
    return "".join(p + (f"${k}" if k < len(parts) else "") for k, p in enumerate(parts, 1))


ASYNCPG_SQL = {name: dollars(sql) for name, sql in SQL.items()}


def params(tag: str, i: int) -> dict[str, Any]:
    now = utcnow()
    phone = f"+5068{i:07d}"
    return {"sid": f"{tag}:{i}", "phone": phone, "key": f"whatsapp:{phone}", "now": now}


def intake_psycopg(tx: Tx, p: dict[str, Any]) -> str:
    """The transaction's statements through the store's `Tx` (psycopg)."""
    now, key = p["now"], p["key"]
    tx.one(SQL["receipt"], (p["sid"],))
    tx.one(SQL["contact"], (p["phone"],))
    tx.one(SQL["open"], (key,))
    tx.one(SQL["lock"], (key_hash(key),))
    contact = tx.one(SQL["new_contact"], (p["phone"], p["phone"], now))["id"]  # type: ignore[index]
    tracking = format_tracking(tx.one(SQL["serial"])["n"])  # type: ignore[index]
    routing = '{"reasons": ["phone in CR"]}'
    incident = tx.one(
        SQL["incident"],
        (tracking, TEXT, TEXT, contact, key, now, now, key, now, now, now, routing, now),
    )["id"]  # type: ignore[index]
    message = tx.one(SQL["message"], (incident, p["phone"], p["phone"], TEXT, now))["id"]  # type: ignore[index]
    detail = to_json({"channel": "whatsapp"})
    tx.execute(SQL["events"], (incident, now, detail, incident, now, detail))
    tx.execute(SQL["new_receipt"], (p["sid"], now, incident, message))
    return tracking


async def intake_asyncpg(conn: asyncpg.Connection, p: dict[str, Any]) -> str:
    """The same statements through asyncpg (prepared and cached by asyncpg itself)."""
    q, now, key = ASYNCPG_SQL, p["now"], p["key"]
    await conn.fetchrow(q["receipt"], p["sid"])
    await conn.fetchrow(q["contact"], p["phone"])
    await conn.fetchrow(q["open"], key)
    await conn.fetchrow(q["lock"], key_hash(key))
    contact = await conn.fetchval(q["new_contact"], p["phone"], p["phone"], now)
    tracking = format_tracking(await conn.fetchval(q["serial"]))
    routing = '{"reasons": ["phone in CR"]}'
    incident = await conn.fetchval(
        q["incident"],
        tracking,
        TEXT,
        TEXT,
        contact,
        key,
        now,
        now,
        key,
        now,
        now,
        now,
        routing,
        now,
    )
    message = await conn.fetchval(q["message"], incident, p["phone"], p["phone"], TEXT, now)
    detail = to_json({"channel": "whatsapp"})
    await conn.execute(q["events"], incident, now, detail, incident, now, detail)
    await conn.execute(q["new_receipt"], p["sid"], now, incident, message)
    return tracking


class AsyncpgGroupCommit:
    """The store's group commit written for asyncpg: queued calls share one transaction."""

    def __init__(self, pool: asyncpg.Pool, writers: int = 7, max_batch: int = 16):
        self.pool = pool
        self.pending: list[tuple[dict[str, Any], asyncio.Future[str]]] = []
        self.wake = asyncio.Event()
        self.max_batch = max_batch
        self.tasks = [asyncio.create_task(self._writer()) for _ in range(writers)]

    async def call(self, p: dict[str, Any]) -> str:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.pending.append((p, future))
        self.wake.set()
        return await future

    async def _writer(self) -> None:
        while True:
            await self.wake.wait()
            while self.pending:
                batch = self.pending[: self.max_batch]
                del self.pending[: len(batch)]
                if not self.pending:
                    self.wake.clear()
                async with self.pool.acquire() as conn, conn.transaction():
                    results = [await intake_asyncpg(conn, p) for p, _ in batch]
                for (_, future), result in zip(batch, results, strict=True):
                    future.set_result(result)
            self.wake.clear()

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def drive(
    n: int, concurrency: int, limit: float, one: Callable[[int], Awaitable[object]]
) -> dict[str, float]:
    """`one(i)` from `concurrency` callers until n calls or `limit` seconds; the figures."""
    latencies: list[float] = []
    counter = iter(range(n))
    deadline = time.perf_counter() + limit

    async def caller() -> None:
        for i in counter:
            if time.perf_counter() > deadline:
                return
            started = time.perf_counter()
            await one(i)
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {"tps": len(latencies) / elapsed, "p50_ms": q[49] * 1000, "p99_ms": q[98] * 1000}


def store_way(spec: str) -> str:
    """The figures' name for the store run as `spec` ("WRITERSxBATCH")."""
    writers, batch = spec.split("x")
    return f"psycopg, the store ({writers} writers x {batch})"


async def run_all(url: str, args: argparse.Namespace) -> dict[str, dict[int, dict[str, float]]]:
    """Every way at every concurrency on one database; figures by way and concurrency."""
    stores = {
        spec: PostgresStore(
            url,
            instance=f"bench-pgdriver-{spec}",
            writers=int(spec.split("x")[0]),
            max_batch=int(spec.split("x")[1]),
        )
        for spec in args.store
    }
    for store in stores.values():
        await store.open()
        await store.migrate()
    ppool = psycopg_pool.ConnectionPool(
        url, min_size=POOL, max_size=POOL, kwargs=connect_kwargs("bench-psycopg"),
        configure=configure_session, open=True,
    )  # fmt: skip
    threads = ThreadPoolExecutor(max_workers=POOL)
    apool = await asyncpg.create_pool(url, min_size=POOL, max_size=POOL)
    group = AsyncpgGroupCommit(apool)
    loop = asyncio.get_running_loop()

    def per_call_sync(p: dict[str, Any]) -> str:
        with ppool.connection() as conn, conn.transaction():
            tx = PgTx(conn)
            try:
                return intake_psycopg(tx, p)
            finally:
                tx.close()

    async def per_call_asyncpg(p: dict[str, Any]) -> str:
        async with apool.acquire() as conn, conn.transaction():
            return await intake_asyncpg(conn, p)

    ways: dict[str, Callable[[dict[str, Any]], Awaitable[str]]] = {
        store_way(spec): lambda p, store=store: store.transact(lambda tx: intake_psycopg(tx, p))
        for spec, store in stores.items()
    }
    ways |= {
        "psycopg, one transaction per call": lambda p: loop.run_in_executor(
            threads, per_call_sync, p
        ),
        "asyncpg, one transaction per call": per_call_asyncpg,
        "asyncpg, group commit": group.call,
    }
    figures: dict[str, dict[int, dict[str, float]]] = {}
    try:
        for k, way in enumerate(ways.values()):  # connections opened, statements prepared
            for i in range(20):
                await way(params(f"warm{k}", i))
        for concurrency in args.concurrency:
            for k, (name, way) in enumerate(ways.items()):
                tag = f"c{concurrency}w{k}"

                def one(i: int, way: Any = way, tag: str = tag) -> Awaitable[str]:
                    return way(params(tag, i))  # type: ignore[no-any-return]

                result = await drive(args.transactions, concurrency, args.limit, one)
                figures.setdefault(name, {})[concurrency] = result
                print(
                    f"  {concurrency:3d} callers  {name:36s} {result['tps']:7.0f} tx/s"
                    f"  p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:6.2f} ms",
                    flush=True,
                )
    finally:
        await group.close()
        await apool.close()
        threads.shutdown()
        ppool.close()
        for store in stores.values():
            await store.close()
    return figures


async def main(args: argparse.Namespace) -> None:
    pin(LOAD_CPU)
    with tempfile.TemporaryDirectory() as tmp, Databases(POSTGRESQL, tmp) as dbs:
        print(f"intake-shaped transactions (11 statements + COMMIT), {args.transactions} per run")
        print(f"  {dbs.describe(POSTGRESQL)}")
        where = "callers on CPU 1, PostgreSQL on CPU 0" if pinning() else "not pinned"
        print(f"  placement: {where}", flush=True)
        figures = await run_all(dbs.url(POSTGRESQL, "pgdriver"), args)
    store = figures[store_way(args.store[0])]
    asyncpg_group = figures["asyncpg, group commit"]
    for concurrency in args.concurrency:
        ratio = store[concurrency]["tps"] / asyncpg_group[concurrency]["tps"]
        print(f"psycopg store / asyncpg group commit at {concurrency} callers: {ratio:.2f}")
    write_json(args.json, {POSTGRESQL: figures})


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=2000, help="per way and concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    parser.add_argument(
        "--store",
        nargs="+",
        default=["7x16", "3x128"],
        help="the store's shapes to run, WRITERSxBATCH (writers at once, calls per transaction)",
    )
    parser.add_argument("--limit", type=float, default=20.0, help="seconds per run at most")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
