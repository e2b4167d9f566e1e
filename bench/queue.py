"""Benchmark: the agent queue API over HTTP on a big database (issue 8), SQLite and PostgreSQL.

On each database (`--db`, default both) loads N incidents (10 % open by default) straight into
the core's schema — SQLite through sqlite3's executemany, PostgreSQL with COPY on a durable
throwaway cluster — starts the gateway's HTTP app in a second process (pinned to one core when
possible, with the PostgreSQL server), and times sequential keep-alive requests from this
process: GET /api/v1/queue?level=L1 (50 rows) and GET /api/v1/incidents/{tracking}, against
GET /healthz (the health probe: a read, then a one-row write committed) as the baseline. Targets:
queue p99 <= 5 ms, incident p99 <= 2 ms.

    .venv/bin/python bench/queue.py                       # 1,000,000 incidents
    .venv/bin/python bench/queue.py --incidents 100000    # quick run
"""

from __future__ import annotations

import sys
from pathlib import Path

# This file is named queue.py: drop its folder from the path so `import queue` (stdlib, used by
# aiosqlite) is not this script, and put the project root there instead.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import asyncio
import http.client
import json
import os
import random
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.databases import (
    LABELS,
    LOAD_CPU,
    POSTGRESQL,
    SERVER_CPU,
    SQLITE,
    Databases,
    add_options,
    free_port,
    pin,
    table,
    write_json,
)
from gateway.core.auth import token_digest
from gateway.core.tracking import format_tracking
from gateway.store.postgres import PostgresStore
from gateway.store.schema import CORE
from gateway.store.sqlite import _apply_migrations
from gateway.web.api import QUEUE_SELECT, QUEUE_SELECT_SQLITE
from gateway.workspace.sessions import MIGRATIONS as WORKSPACE

# How long the gateway may take to answer its first /healthz on a freshly loaded database.
READY_SECONDS = 180
TOKEN = "bench-token-" + "x" * 32
NOW = datetime.now(UTC)
CHANNELS = ("email", "whatsapp", "webchat", "voice", "telegram", "click2call")
COUNTRIES = (("CR", "+50640001000"), ("MX", "+525541708422"), ("CO", "+5716419391"))


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


INCIDENT_COLUMNS = (
    "id, tracking, channel, country, line, level, team, severity, status, subject, description,"
    " contact_id, occurred_at, registered_at, registered_by, attention_due, solution_due,"
    " urgent_due, updated_at"
)
# The queue API's own query (contact joined), for its plan on each database.
QUEUE_SQL = QUEUE_SELECT.replace("i.level = ?", "i.level = 'L1'") + (
    " ORDER BY i.urgent_due, i.id LIMIT 50"
)
QUEUE_SQL_SQLITE = QUEUE_SELECT_SQLITE.replace("i.level = ?", "i.level = 'L1'") + (
    " ORDER BY i.urgent_due, i.id LIMIT 50"
)


class Rows:
    """The rows both loaders write: contacts, incidents, one message and one event each."""

    def __init__(self, total: int, open_count: int):
        self.total = total
        rnd = random.Random(8)
        self.rnd = rnd
        self.open_ids = set(rnd.sample(range(1, total + 1), open_count))
        self.contacts = max(1, total // 4)

    def contact_rows(self) -> Iterator[tuple]:
        for i in range(1, self.contacts + 1):
            yield (i, f"Cliente {i}", f"+5068{i:07d}", iso(NOW))

    def incident_rows(self) -> Iterator[tuple]:
        rnd = self.rnd
        for i in range(1, self.total + 1):
            is_open = i in self.open_ids
            if is_open:
                # Due in the future (the server runs on the real clock): the breach watch has
                # nothing to flag while the benchmark runs.
                registered = NOW - timedelta(minutes=rnd.randrange(0, 120))
                attention = NOW + timedelta(minutes=rnd.randrange(30, 60 * 24 * 3))
            else:
                registered = NOW - timedelta(minutes=rnd.randrange(120, 60 * 24 * 365))
                attention = registered + timedelta(hours=2)
            solution = attention + timedelta(hours=2)
            level = rnd.choices(("L1", "L2", "L3"), (6, 3, 1))[0] if is_open else "L1"
            status = rnd.choice(("new", "in_progress", "waiting_customer")) if is_open else "closed"
            country, line = rnd.choice(COUNTRIES)
            yield (
                i, format_tracking(i), rnd.choice(CHANNELS), country, line, level,
                None if level == "L1" else "redes", rnd.choice(("S1", "S2", "S3", "S4")), status,
                f"Asunto {i}", "Sin tono en la central", (i % self.contacts) + 1, iso(registered),
                iso(registered), "bench", iso(attention), iso(solution),
                iso(attention) if is_open else None, iso(registered),
            )  # fmt: skip

    def message_rows(self) -> Iterator[tuple]:
        for i in range(1, self.total + 1):
            yield (i, "in", "email", "Cliente", "Sin tono en la central desde la mañana", iso(NOW))

    def event_rows(self) -> Iterator[tuple]:
        for i in range(1, self.total + 1):
            yield (i, iso(NOW), "system", "registered", "{}")


def load_sqlite(path: str, total: int, open_count: int) -> None:
    """Create the schema and bulk-insert the rows with executemany."""
    rows = Rows(total, open_count)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    _apply_migrations(conn, [("core", CORE), ("workspace", WORKSPACE)])
    conn.execute("PRAGMA synchronous=OFF")  # loading only; the server runs with FULL
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO contacts (id, name, phone, created_at) VALUES (?, ?, ?, ?)",
        rows.contact_rows(),
    )
    conn.executemany(
        f"INSERT INTO incidents ({INCIDENT_COLUMNS}) VALUES ({', '.join('?' * 19)})",
        rows.incident_rows(),
    )
    conn.executemany(
        "INSERT INTO messages (incident_id, direction, channel, author, body, at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows.message_rows(),
    )
    conn.executemany(
        "INSERT INTO events (incident_id, at, actor, kind, detail) VALUES (?, ?, ?, ?, ?)",
        rows.event_rows(),
    )
    conn.execute("INSERT INTO tracking_serial (id, at) VALUES (?, ?)", (total, iso(NOW)))
    conn.execute(
        "INSERT INTO users (id, name, role, created_at) VALUES (1, 'sup', 'supervisor', ?)",
        (iso(NOW),),
    )
    conn.execute(
        "INSERT INTO api_tokens (user_id, token_hash, created_at) VALUES (1, ?, ?)",
        (token_digest(TOKEN), iso(NOW)),
    )
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    plan = conn.execute("EXPLAIN QUERY PLAN " + QUEUE_SQL_SQLITE).fetchall()
    print("  SQLite queue plan:", " | ".join(r[3] for r in plan))
    conn.close()


async def _migrate_postgres(url: str) -> None:
    store = PostgresStore(url, instance="bench-queue")
    await store.open()
    try:
        await store.migrate([("workspace", WORKSPACE)])
    finally:
        await store.close()


def load_postgres(url: str, total: int, open_count: int) -> None:
    """Create the schema (the store's migrations) and COPY the same rows in."""
    asyncio.run(_migrate_postgres(url))
    rows = Rows(total, open_count)
    copies = (
        ("contacts (id, name, phone, created_at)", rows.contact_rows()),
        (f"incidents ({INCIDENT_COLUMNS})", rows.incident_rows()),
        ("messages (incident_id, direction, channel, author, body, at)", rows.message_rows()),
        ("events (incident_id, at, actor, kind, detail)", rows.event_rows()),
    )
    with psycopg.connect(url) as conn:
        conn.execute("SET TIME ZONE 'UTC'")
        conn.execute("SET maintenance_work_mem = '256MB'")
        # The rows are consistent by construction: no foreign-key trigger per loaded row.
        conn.execute("SET session_replication_role = replica")
        # Bulk loading: the non-unique indexes are built once after COPY, not row by row.
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'"
            " AND tablename = ANY(%s) AND indexdef NOT LIKE 'CREATE UNIQUE%%'",
            (["contacts", "incidents", "messages", "events"],),
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f"DROP INDEX {name}")
        for target, source in copies:
            with conn.cursor().copy(f"COPY {target} FROM STDIN") as copy:
                for row in source:
                    copy.write_row(row)
        for table_name in ("contacts", "incidents", "messages", "events"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table_name}', 'id'),"
                f" (SELECT max(id) FROM {table_name}))"
            )
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute("SELECT setval('tracking_serial', %s)", (total,))
        conn.execute(
            "INSERT INTO users (id, name, role, created_at) VALUES (1, 'sup', 'supervisor', %s)",
            (iso(NOW),),
        )
        conn.execute(
            "INSERT INTO api_tokens (user_id, token_hash, created_at) VALUES (1, %s, %s)",
            (token_digest(TOKEN), iso(NOW)),
        )
        conn.commit()
        conn.autocommit = True
        conn.execute("ANALYZE")
        plan = conn.execute("EXPLAIN " + QUEUE_SQL).fetchall()
    print("  PostgreSQL queue plan:", " | ".join(r[0].strip() for r in plan))


def serve(url: str, port: int) -> None:
    """Run the gateway's HTTP app alone (no channel adapters) until killed."""
    from aiohttp import web

    from config.loader import load_settings
    from gateway.app import create_app

    env = {"GATEWAY_DB": url, "GATEWAY_HTTP_PORT": str(port)}
    settings = load_settings(env, None)
    web.run_app(create_app(settings, adapters={}), host="127.0.0.1", port=port, print=None)


def serve_floor(url: str, port: int) -> None:
    """The floor: the same paths answered by aiohttp and the gateway's store with the same
    reads (the token's user, then the queue page or the whole incident: the same `Tx` calls),
    the rows dumped as JSON; none of the gateway's app (middlewares, access checks, SLA
    figures, JSON shaping). What any implementation pays for these reads on this database."""
    import orjson
    from aiohttp import web

    from gateway.core.auth import user_by_token
    from gateway.store.sqlite import SqliteStore, sqlite_path
    from gateway.web.api import queue_rows

    store = SqliteStore(sqlite_path(url)) if url.startswith("sqlite") else PostgresStore(url)
    lifetime = timedelta(days=3650)

    async def user(request: web.Request) -> None:
        token = request.headers.get("Authorization", "")[7:]
        if await store.read(lambda tx: user_by_token(tx, token, NOW, lifetime)) is None:
            raise web.HTTPUnauthorized()

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": await store.ping()})

    async def queue(request: web.Request) -> web.Response:
        await user(request)
        rows = await store.read(
            lambda tx: queue_rows(tx, level="L1", team_first=None, filters={}, limit=50)
        )
        return web.Response(body=orjson.dumps({"incidents": rows}), content_type="application/json")

    async def incident(request: web.Request) -> web.Response:
        await user(request)
        tracking = request.match_info["tracking"]

        def read(tx: Any) -> dict[str, Any]:
            row = tx.incident_by_tracking(tracking)
            if row is None:
                raise web.HTTPNotFound()
            messages = tx.messages(row["id"])
            return {
                **row,
                "contact": tx.contact(row["contact_id"]),
                "messages": messages,
                "attachments": tx.attachments_of([m["id"] for m in messages]),
                "events": tx.events(row["id"]),
            }

        body = orjson.dumps(await store.read(read))
        return web.Response(body=body, content_type="application/json")

    async def lifecycle(app: web.Application) -> Any:
        await store.open()
        yield
        await store.close()

    app = web.Application()
    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/queue", queue)
    app.router.add_get("/api/v1/incidents/{tracking}", incident)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def timed(conn: http.client.HTTPConnection, paths: list[str]) -> list[float]:
    """Milliseconds per request, sequential on one keep-alive connection."""
    out = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    for path in paths:
        start = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        out.append((time.perf_counter() - start) * 1000)
        if resp.status != 200:
            raise SystemExit(f"{path}: HTTP {resp.status} {body[:200]!r}")
    return out


def quantiles(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=100)
    return {"p50_ms": q[49], "p99_ms": q[98]}


def wait_ready(port: int, server: subprocess.Popen[bytes]) -> http.client.HTTPConnection:
    """A keep-alive connection to the gateway once it answers /healthz (it may take a while to
    start on a million incidents and a busy machine); exits with the reason when it never does."""
    deadline = time.monotonic() + READY_SECONDS
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            return conn
        except OSError as exc:
            conn.close()  # a half-sent request would leave it unusable
            if server.poll() is not None:
                message = f"the gateway exited ({server.returncode}) before answering"
                raise SystemExit(message) from exc
            if time.monotonic() > deadline:
                message = f"the gateway did not answer /healthz in {READY_SECONDS} s: {exc}"
                raise SystemExit(message) from exc
            time.sleep(0.1)


def measure(url: str, total: int, n: int, mode: str = "--serve") -> dict[str, dict[str, float]]:
    """Start the gateway (or with `--serve-floor`, the floor) on `url`, time the three
    requests; their p50/p99."""
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, mode, url, str(port)])
    try:
        conn = wait_ready(port, server)
        rnd = random.Random(1)
        trackings = [
            f"/api/v1/incidents/{format_tracking(rnd.randint(1, total))}" for _ in range(n)
        ]
        timed(conn, ["/healthz"] * 200 + ["/api/v1/queue?level=L1"] * 200 + trackings[:200])
        probe = timed(conn, ["/healthz"] * n)
        queue = timed(conn, ["/api/v1/queue?level=L1"] * n)
        one = timed(conn, trackings)
        conn.request("GET", "/api/v1/queue?level=L1", headers={"Authorization": f"Bearer {TOKEN}"})
        rows = len(json.loads(conn.getresponse().read())["incidents"])
    finally:
        server.terminate()
        server.wait(timeout=10)
    return {
        "healthz": quantiles(probe),
        "queue": {**quantiles(queue), "rows": rows},
        "incident": quantiles(one),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--open", type=int, default=None, help="open incidents (default 10 %%)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--reuse-sqlite", metavar="FILE", help="reuse or create this SQLite file")
    add_options(parser)
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve or args.serve_floor:
        pin(SERVER_CPU)
        server, (url, port) = (serve, args.serve) if args.serve else (serve_floor, args.serve_floor)
        server(url, int(port))
        return
    pin(LOAD_CPU)
    open_count = args.open or args.incidents // 10
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="cmw-bench-") as tmp, Databases(args.db, tmp) as dbs:
        print(f"{args.incidents:,} incidents ({open_count:,} open), {args.requests} requests each")
        for kind in dbs.kinds:
            print(f"  {dbs.describe(kind)}", flush=True)
            started = time.perf_counter()
            if kind == SQLITE:
                path = args.reuse_sqlite or os.path.join(tmp, "queue.db")
                if not os.path.exists(path):
                    load_sqlite(path, args.incidents, open_count)
                url = f"sqlite:///{path}"
            else:
                url = dbs.url(POSTGRESQL, "queue")
                load_postgres(url, args.incidents, open_count)
            loaded = time.perf_counter() - started
            print(f"  {LABELS[kind]}: loaded in {loaded:.1f} s", flush=True)
            # The floor and the gateway alternate, twice each, so that a moment when the
            # machine is slower does not count against one of them alone; each keeps, per
            # path, its run with the lower p99.
            runs: dict[str, list[dict]] = {"--serve-floor": [], "--serve": []}
            for mode in ("--serve-floor", "--serve") * 2:
                runs[mode].append(measure(url, args.incidents, args.requests, mode))
            gateway, floor = (
                {
                    name: min((run[name] for run in runs[mode]), key=lambda q: q["p99_ms"])
                    for name in runs[mode][0]
                }
                for mode in ("--serve", "--serve-floor")
            )
            figures[kind] = {**gateway, "floor": floor, "load_s": loaded}
        kinds = dbs.kinds

    def cell(kind: str, name: str) -> str:
        f = figures[kind][name]
        ratio = f["p50_ms"] / figures[kind]["healthz"]["p50_ms"]
        return f"p50 {f['p50_ms']:5.2f} ms  p99 {f['p99_ms']:5.2f} ms  ({ratio:.1f}x /healthz)"

    def floor_cell(kind: str, name: str) -> str:
        f = figures[kind]["floor"][name]
        return f"p50 {f['p50_ms']:5.2f} ms  p99 {f['p99_ms']:5.2f} ms"

    rows = figures[kinds[0]]["queue"]["rows"]
    table(
        kinds,
        [
            ("GET /healthz (baseline: read + write probe)", [cell(k, "healthz") for k in kinds]),
            (f"GET /api/v1/queue?level=L1 ({rows} rows)", [cell(k, "queue") for k in kinds]),
            ("GET /api/v1/incidents/{tracking}", [cell(k, "incident") for k in kinds]),
            ("  floor: the queue's reads, bare", [floor_cell(k, "queue") for k in kinds]),
            ("  floor: the incident's reads, bare", [floor_cell(k, "incident") for k in kinds]),
        ],
        width=40,
    )
    print("targets: queue p99 <= 5 ms, incident p99 <= 2 ms; a floor is the same reads through")
    print("  the gateway's store and aiohttp without the gateway's app; gateway and floor run")
    print("  twice, alternately, and each path keeps the run with the lower p99")
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
