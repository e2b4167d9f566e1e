"""The databases a benchmark runs on: `--db sqlite|postgresql|both` (default both).

SQLite is a file in the benchmark's temporary directory, opened by the gateway's own store (WAL,
synchronous=FULL). PostgreSQL is a durable throwaway cluster (fsync on: every COMMIT waits for
its WAL flush, as in production) started from the machine's server binaries by
`tests/pgcluster.py`, one fresh database per phase, stopped at the end. `bench/all.py` starts
one such cluster for every script and names it in BENCH_PG_SERVER; a script given that
variable uses that server (loopback only) instead of starting its own.

Placement: on a machine with two cores the server side (the gateway and, here, the PostgreSQL
server's processes) runs on CPU 0 and the load generator on CPU 1, so the two databases are
compared on the same core. BENCH_NO_PIN=1 turns every pinning off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

from tests.pgcluster import Cluster, find_bindir

SQLITE, POSTGRESQL = "sqlite", "postgresql"
LABELS = {SQLITE: "SQLite", POSTGRESQL: "PostgreSQL"}
SERVER_CPU, LOAD_CPU = 0, 1
MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin or"
    " on PATH: install Debian's `postgresql` package to benchmark PostgreSQL"
)


def add_options(parser: argparse.ArgumentParser) -> None:
    """`--db` and `--json`, the options every benchmark shares."""
    parser.add_argument(
        "--db",
        choices=(SQLITE, POSTGRESQL, "both"),
        default="both",
        help="database(s) to measure; both prints PostgreSQL beside SQLite (default both)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")


def free_port() -> int:
    """A TCP port free on loopback now (for a server a script starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_json(path: str | None, figures: dict[str, Any]) -> None:
    """The figures for bench/all.py (or anyone), when --json was given."""
    if path:
        Path(path).write_text(json.dumps(figures, indent=1, default=str), encoding="utf-8")


def pinning() -> bool:
    """True when server and load generator get a core each."""
    return (
        not os.environ.get("BENCH_NO_PIN")
        and hasattr(os, "sched_setaffinity")
        and (os.cpu_count() or 1) >= 2
    )


def pin(cpu: int, pid: int = 0) -> None:
    """Keep process `pid` (this one by default) on one core when pinning."""
    if pinning():
        with contextlib.suppress(ProcessLookupError):
            os.sched_setaffinity(pid, {cpu})


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def postmaster_pid(url: str) -> int:
    """The process id of a local PostgreSQL server (the parent of every backend)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        # While the connection is open: its backend (and its /proc entry) ends with it.
        return _parent(int(row[0]))


def pin_postgres(url: str, cpu: int = SERVER_CPU) -> None:
    """Put a local PostgreSQL server's processes on `cpu` (backends forked later inherit it
    from the postmaster), beside the gateway it serves."""
    if not pinning():
        return
    postmaster = postmaster_pid(url)
    pin(cpu, postmaster)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                if _parent(int(entry.name)) == postmaster:
                    pin(cpu, int(entry.name))


def start_cluster() -> Cluster | None:
    """A durable throwaway cluster (fsync on), started and pinned; None without binaries."""
    bindir = find_bindir()
    if bindir is None:
        return None
    cluster = Cluster(bindir, durable=True).start()
    pin_postgres(cluster.url())
    return cluster


class Databases:
    """The databases chosen by `--db`; `url(kind, name)` hands out a fresh one of a kind."""

    def __init__(self, choice: str, workdir: str | Path):
        self.kinds = [SQLITE, POSTGRESQL] if choice == "both" else [choice]
        self.choice = choice
        self.workdir = Path(workdir)
        self.cluster: Cluster | None = None
        self.admin_url: str | None = None
        self.version = ""
        self._count = 0
        self._created: list[str] = []

    def __enter__(self) -> Databases:
        if POSTGRESQL not in self.kinds:
            return self
        server = os.environ.get("BENCH_PG_SERVER")
        if server:
            host = urlsplit(server).hostname or ""
            if host not in ("127.0.0.1", "localhost", "::1"):
                raise SystemExit(f"BENCH_PG_SERVER must be on loopback, not {host!r}")
            self.admin_url = server
        else:
            self.cluster = start_cluster()
            if self.cluster is None:
                if self.choice == POSTGRESQL:
                    raise SystemExit(MISSING + ".")
                print(f"{MISSING}; measuring SQLite only.", flush=True)
                self.kinds.remove(POSTGRESQL)
                return self
            self.admin_url = self.cluster.url()
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            fsync = conn.execute("SHOW fsync").fetchone()
        self.version = str(row[0]).split()[0] if row else "?"
        if fsync and fsync[0] != "on":
            raise SystemExit("the PostgreSQL server runs with fsync off: not a durable benchmark")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.cluster is not None:
            self.cluster.stop()
            self.cluster = None
        elif self.admin_url and self._created:  # a server we did not start: leave it clean
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                for name in self._created:
                    conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def url(self, kind: str, name: str) -> str:
        """A new empty database: an SQLite file, or a database on the PostgreSQL server."""
        self._count += 1
        if kind == SQLITE:
            return f"sqlite:///{self.workdir}/{name}-{self._count}.db"
        assert self.admin_url is not None
        dbname = f"bench_{name}_{os.getpid()}_{self._count}".replace("-", "_")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {dbname}")
        self._created.append(dbname)
        return self.admin_url.rsplit("/", 1)[0] + f"/{dbname}"

    def postmaster(self) -> int | None:
        """The PostgreSQL server's main process id, when there is a server."""
        return postmaster_pid(self.admin_url) if self.admin_url else None

    def describe(self, kind: str) -> str:
        """One line on how the database runs."""
        if kind == SQLITE:
            return "SQLite: a file, WAL, synchronous=FULL (the gateway's store)"
        where = "BENCH_PG_SERVER" if self.cluster is None else "a throwaway cluster"
        return f"PostgreSQL {self.version}: {where}, durable (fsync on, synchronous_commit on)"

    def placement(self) -> str:
        """Where the processes run."""
        if not pinning():
            return "placement: not pinned (BENCH_NO_PIN or a single core)"
        return (
            f"placement: server side (gateway, PostgreSQL) on CPU {SERVER_CPU},"
            f" load generator on CPU {LOAD_CPU}"
        )


def count(url: str, sql: str) -> int:
    """One number from either database, by URL."""
    if url.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return int(conn.execute(sql).fetchone()[0])
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    return int(row[0]) if row else 0


def table(kinds: list[str], rows: list[tuple[str, list[str]]], width: int = 36) -> None:
    """Print `rows` (a label, one cell per database) with the databases as columns."""
    label_width = max(len(label) for label, _ in rows)
    print(" " * label_width + "".join(f"  {LABELS[k]:<{width}}" for k in kinds).rstrip())
    for label, cells in rows:
        print(f"{label:<{label_width}}" + "".join(f"  {c:<{width}}" for c in cells).rstrip())


async def settled(gw: Any, seconds: float = 30.0) -> None:
    """Wait until an in-process gateway on PostgreSQL has ruled out other instances (its change
    feed heard no beacon for a few polls, and its writes stopped notifying), as one that has run
    alone a while has; nothing to wait for on SQLite. For a `serve` process:
    `bench.instances.settled`."""
    if not getattr(gw.store, "shared", False):
        return
    deadline = time.monotonic() + seconds
    while getattr(gw.store, "feed", None) is None or gw.store.notify_changes:
        if time.monotonic() > deadline:
            raise SystemExit("the gateway's change feed never found itself alone")
        await asyncio.sleep(0.1)
