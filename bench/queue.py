"""Benchmark: the agent queue API over HTTP on a big SQLite file (issue 8).

Loads N incidents (10 % open by default) straight through sqlite3 into the core's schema, starts
the gateway's HTTP app in a second process (pinned to one core when possible), and times
sequential keep-alive requests from this process: GET /api/v1/queue?level=L1 (50 rows) and
GET /api/v1/incidents/{tracking}, against GET /healthz (one trivial query) as the bare baseline.

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
import http.client
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta

from gateway.core.auth import token_digest
from gateway.core.tracking import format_tracking
from gateway.store.schema import CORE
from gateway.store.sqlite import _apply_migrations
from gateway.workspace.sessions import MIGRATIONS as WORKSPACE

TOKEN = "bench-token-" + "x" * 32
NOW = datetime.now(UTC)
CHANNELS = ("email", "whatsapp", "webchat", "voice", "telegram", "click2call")
COUNTRIES = (("CR", "+50640001000"), ("MX", "+525541708422"), ("CO", "+5716419391"))


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def load(path: str, total: int, open_count: int) -> None:
    """Create the schema and bulk-insert contacts, incidents, one message and one event each."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    _apply_migrations(conn, [("core", CORE), ("workspace", WORKSPACE)])
    conn.execute("PRAGMA synchronous=OFF")  # loading only; the server runs with FULL
    rnd = random.Random(8)
    open_ids = set(rnd.sample(range(1, total + 1), open_count))
    contacts = max(1, total // 4)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO contacts (id, name, phone, created_at) VALUES (?, ?, ?, ?)",
        ((i, f"Cliente {i}", f"+5068{i:07d}", iso(NOW)) for i in range(1, contacts + 1)),
    )

    def incidents():
        for i in range(1, total + 1):
            is_open = i in open_ids
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
                f"Asunto {i}", "Sin tono en la central", (i % contacts) + 1, iso(registered),
                iso(registered), "bench", iso(attention), iso(solution),
                iso(attention) if is_open else None, iso(registered),
            )  # fmt: skip

    conn.executemany(
        "INSERT INTO incidents (id, tracking, channel, country, line, level, team, severity,"
        " status, subject, description, contact_id, occurred_at, registered_at, registered_by,"
        " attention_due, solution_due, urgent_due, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        incidents(),
    )
    conn.executemany(
        "INSERT INTO messages (incident_id, direction, channel, author, body, at)"
        " VALUES (?, 'in', 'email', 'Cliente', 'Sin tono en la central desde la mañana', ?)",
        ((i, iso(NOW)) for i in range(1, total + 1)),
    )
    conn.executemany(
        "INSERT INTO events (incident_id, at, actor, kind, detail) VALUES (?, ?, 'system',"
        " 'registered', '{}')",
        ((i, iso(NOW)) for i in range(1, total + 1)),
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
    plan = conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM incidents WHERE level = 'L1'"
        " AND status IN ('new', 'in_progress', 'waiting_customer') ORDER BY urgent_due, id LIMIT 50"
    ).fetchall()
    print("queue plan:", " | ".join(r[3] for r in plan))
    conn.close()


def serve(db: str, port: int) -> None:
    """Run the gateway's HTTP app alone (no channel adapters) until killed."""
    from aiohttp import web

    from config.loader import load_settings
    from gateway.app import create_app

    env = {"GATEWAY_DB": f"sqlite:///{db}", "GATEWAY_HTTP_PORT": str(port)}
    settings = load_settings(env, None)
    web.run_app(create_app(settings, adapters={}), host="127.0.0.1", port=port, print=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def summary(name: str, ms: list[float], bare: float | None = None) -> str:
    q = statistics.quantiles(ms, n=100)
    ratio = f"  p50 ratio to bare {statistics.median(ms) / bare:.1f}x" if bare else ""
    return f"{name:<34} n={len(ms):<6} p50 {q[49]:.2f} ms  p99 {q[98]:.2f} ms{ratio}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--incidents", type=int, default=1_000_000)
    parser.add_argument("--open", type=int, default=None, help="open incidents (default 10 %)")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--db", default=None, help="reuse or create this SQLite file")
    parser.add_argument("--serve", nargs=2, metavar=("DB", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
            os.sched_setaffinity(0, {0})
        serve(args.serve[0], int(args.serve[1]))
        return
    workdir = tempfile.mkdtemp(prefix="cmw-bench-")
    db = args.db or os.path.join(workdir, "queue.db")
    if not os.path.exists(db):
        started = time.perf_counter()
        load(db, args.incidents, args.open or args.incidents // 10)
        size = os.path.getsize(db) / 1e6
        print(f"loaded {args.incidents:,} incidents in {time.perf_counter() - started:.1f} s"
              f" ({size:.0f} MB)")  # fmt: skip
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", db, str(port)])
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})
    try:
        for _ in range(200):
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.request("GET", "/healthz")
                if conn.getresponse().read() and True:
                    break
            except OSError:
                time.sleep(0.1)
        rnd = random.Random(1)
        n = args.requests
        total = sqlite3.connect(db).execute("SELECT max(id) FROM incidents").fetchone()[0]
        trackings = [
            f"/api/v1/incidents/{format_tracking(rnd.randint(1, total))}" for _ in range(n)
        ]
        timed(conn, ["/healthz"] * 200 + ["/api/v1/queue?level=L1"] * 200 + trackings[:200])
        bare = timed(conn, ["/healthz"] * n)
        queue = timed(conn, ["/api/v1/queue?level=L1"] * n)
        one = timed(conn, trackings)
        conn.request("GET", "/api/v1/queue?level=L1", headers={"Authorization": f"Bearer {TOKEN}"})
        rows = len(json.loads(conn.getresponse().read())["incidents"])
        bare_p50 = statistics.median(bare)
        print(summary("GET /healthz (bare: one SELECT 1)", bare))
        print(summary(f"GET /api/v1/queue?level=L1 ({rows} rows)", queue, bare_p50))
        print(summary("GET /api/v1/incidents/{tracking}", one, bare_p50))
        print("targets: queue p99 <= 5 ms, incident p99 <= 2 ms")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
