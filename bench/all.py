"""One command for the whole picture (issue 19): every benchmark, then one table of ratios.

Runs each script of bench/ as a subprocess with `--db` and `--json`, at sizes that fit in about
ten minutes together on this project's 2-core machine (`--quick`: a smoke run of a minute or
two), streams their own output, and ends with one table: each measure on SQLite and on
PostgreSQL beside issue 19's target, a ✓ or ✗ where there is one. Every ratio is taken within
one run of one script (gateway over its bare baseline or floor, measured minutes apart at most),
so the table shows a regression even though absolute figures move from day to day. One durable
PostgreSQL cluster (fsync on) serves every script (BENCH_PG_SERVER) and is stopped at the end.

    .venv/bin/python bench/all.py [--db sqlite|postgresql|both] [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import json
import os
import subprocess
import tempfile
import time
from typing import Any

from bench.databases import MISSING, POSTGRESQL, SQLITE, start_cluster, write_json

# key, script, arguments (full run), arguments (--quick), needs PostgreSQL only
RUNS: list[tuple[str, str, list[str], list[str], bool]] = [
    ("webhook", "webhook", ["--requests", "1500", "--rounds", "3"],
     ["--requests", "300", "--rounds", "1"], False),
    ("webhook_rate", "webhook", ["--rate", "1000", "--requests", "3000"],
     ["--rate", "200", "--requests", "200"], False),
    ("intake", "intake", ["--intakes", "5000"], ["--intakes", "300", "--concurrency", "20"],
     False),
    ("smtp", "smtp", ["--messages", "1000", "--sequential", "200", "--rounds", "1"],
     ["--messages", "100", "--sequential", "20", "--rounds", "1"], False),
    ("queue", "queue", ["--incidents", "1000000", "--requests", "1000"],
     ["--incidents", "20000", "--requests", "200"], False),
    ("chat", "chat", ["1000"], ["100"], False),
    ("mixed", "mixed", ["--rate", "200", "--seconds", "10"], ["--rate", "20", "--seconds", "3"],
     False),
    ("instances", "instances", ["--requests", "2000", "--rounds", "2"],
     ["--requests", "300", "--rounds", "1"], True),
    ("pgdriver", "pgdriver", ["--transactions", "500"],
     ["--transactions", "100", "--concurrency", "1", "10"], True),
]  # fmt: skip


def run_script(name: str, args: list[str], db: str, env: dict[str, str], out: Path) -> dict:
    """One benchmark as a subprocess; its JSON figures ({} when it failed)."""
    if name not in ("instances", "pgdriver"):
        args = [*args, "--db", db]
    print(f"\n=== bench/{name}.py {' '.join(args)}", flush=True)
    command = [sys.executable, str(_HERE / f"{name}.py"), *args, "--json", str(out)]
    started = time.perf_counter()
    done = subprocess.run(command, env=env, check=False)
    print(f"=== bench/{name}.py: {time.perf_counter() - started:.0f} s", flush=True)
    if done.returncode != 0 or not out.exists():
        print(f"=== bench/{name}.py FAILED (exit {done.returncode})", flush=True)
        return {}
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def get(figures: dict, *path: Any) -> float | None:
    """figures[a][b]... or None when any step is missing (a script failed or was skipped)."""
    value: Any = figures
    for step in path:
        if not isinstance(value, dict) or str(step) not in value:
            return None
        value = value[str(step)]
    return float(value)


Row = tuple[str, str, float | None, float | None, str, str]
# The target column of a floor's row: the same work without the gateway's logic, measured in
# the same run, bounds what the gateway can reach on this machine (issue 19: "show the floor
# that proves it").
FLOOR = "the most the row above can be here"
FLOOR_LATENCY = "the least the row above can be here"


def rows(f: dict[str, dict], quick: bool) -> list[Row]:
    """(run key, measure, SQLite value, PostgreSQL value, format, target) for the table;
    measures of PostgreSQL alone have no SQLite value and start with PG_ONLY's words."""
    agroup = "asyncpg, group commit"
    top = 10 if quick else 50
    w, i, s, q, c = f["webhook"], f["intake"], f["smtp"], f["queue"], f["chat"]
    wr, pgd = f["webhook_rate"], f["pgdriver"]
    ways = (pgd.get(POSTGRESQL) or {}).keys()
    store = next((way for way in ways if way.startswith("psycopg, the store")), "")
    offered = get(wr, SQLITE, "offered_rps") or get(wr, POSTGRESQL, "offered_rps") or 0
    n_chat = next(iter(c.get(SQLITE) or c.get(POSTGRESQL) or {}), "?")
    m = f["mixed"]
    rate = get(m, SQLITE, "rate") or get(m, POSTGRESQL, "rate") or 0
    fast, acks = (
        ("<= 100", "<= 1000") if rate >= 200 else ("(<= 100 at 200/s)", "(<= 1000 at 200/s)")
    )

    def both(source: dict, *path: Any) -> tuple[Any, Any]:
        return get(source, SQLITE, *path), get(source, POSTGRESQL, *path)

    return [
        ("webhook", "webhook: gateway req/s (50 conns)", *both(w, "gateway_rps"), "{:.0f}", ""),
        ("webhook", "webhook: gateway / bare handler", *both(w, "gateway_to_bare"), "{:.2f}", ""),
        ("webhook", "webhook: floor + issue's checks / bare", *both(w, "floor3_to_bare"),
         "{:.2f}", ""),
        ("webhook", "webhook: gateway / floor + checks", *both(w, "gateway_to_checks"), "{:.2f}",
         ">= 0.85"),
        ("webhook_rate", f"webhook: gateway p99 ms at {offered:,.0f} req/s offered",
         *both(wr, "p99_ms"), "{:.1f}", "<= 25" if offered >= 1000 else "(<= 25 at 1,000 req/s)"),
        ("webhook", "  floor: floor + checks req/s (50 conns)", *both(w, "floor_checks_rps"),
         "{:.0f}", f"below {offered:,.0f}: that rate is more than the machine serves"),
        ("intake", "intake: pipeline / per-row COMMIT", *both(i, "pipeline_to_baseline"),
         "{:.2f}", ""),
        ("intake", "intake: pipeline / rows-only ceiling", *both(i, "pipeline_to_ceiling"),
         "{:.2f}", ">= 0.6"),
        ("smtp", "smtp: answered 250 / sink (50 clients)", *both(s, "concurrent_to_sink"),
         "{:.2f}", ""),
        ("smtp", "smtp: bodies visible / sink", *both(s, "visible_to_sink"), "{:.2f}", ">= 0.5"),
        ("smtp", "  floor: body parsed and committed / sink", *both(s, "floor_body_to_sink"),
         "{:.2f}", FLOOR),
        ("smtp", "smtp: one at a time / sink", *both(s, "sequential_to_sink"), "{:.2f}",
         ">= 0.8"),
        ("smtp", "  floor: raw row committed, one at a time / sink",
         *both(s, "floor_raw_sequential_to_sink"), "{:.2f}", FLOOR),
        ("queue", "queue: L1 queue p99 ms", *both(q, "queue", "p99_ms"), "{:.2f}", "<= 5"),
        ("queue", "  floor: the queue's reads, bare, p99 ms", *both(q, "floor", "queue", "p99_ms"),
         "{:.2f}", FLOOR_LATENCY),
        ("queue", "queue: one incident p99 ms", *both(q, "incident", "p99_ms"), "{:.2f}", "<= 2"),
        ("queue", "  floor: the incident's reads, bare, p99 ms",
         *both(q, "floor", "incident", "p99_ms"), "{:.2f}", FLOOR_LATENCY),
        ("chat", f"chat: last arrival ms, {n_chat} sockets", *both(c, n_chat, "last_arrival_ms"),
         "{:.0f}", ""),
        ("mixed", f"mixed {rate:.0f}/s: chat ticket p99 ms", *both(m, "chat", "p99_ms"), "{:.0f}",
         fast),
        ("mixed", f"mixed {rate:.0f}/s: WhatsApp TwiML p99 ms", *both(m, "whatsapp", "p99_ms"),
         "{:.0f}", fast),
        ("mixed", f"mixed {rate:.0f}/s: Telegram ack leaves outbox p99 ms",
         *both(m, "telegram", "p99_ms"), "{:.0f}", acks),
        ("mixed", f"mixed {rate:.0f}/s: email ack leaves outbox p99 ms",
         *both(m, "email", "p99_ms"), "{:.0f}", acks),
        ("webhook", "PostgreSQL / SQLite: webhook req/s", None,
         get(w, "postgresql_to_sqlite", "gateway"), "{:.2f}", ">= 0.8"),
        ("webhook", "PostgreSQL / SQLite:   floor: floor + checks", None,
         get(w, "postgresql_to_sqlite", "floor_checks"), "{:.2f}", FLOOR),
        ("intake", "PostgreSQL / SQLite: intake/s", None,
         get(i, "postgresql_to_sqlite", "pipeline"), "{:.2f}", ">= 0.8"),
        ("intake", "PostgreSQL / SQLite:   floor: rows-only ceiling", None,
         get(i, "postgresql_to_sqlite", "ceiling"), "{:.2f}", FLOOR),
        ("smtp", "PostgreSQL / SQLite: SMTP msgs/s", None,
         get(s, "postgresql_to_sqlite", "concurrent"), "{:.2f}", ">= 0.8"),
        ("instances", "two instances / one, aggregate req/s", None,
         get(f["instances"], POSTGRESQL, "two_to_one"), "{:.2f}", ">= 0.90"),
        ("instances", "two instances:   floor: two floor processes / one", None,
         get(f["instances"], POSTGRESQL, "floor_two_to_one"), "{:.2f}", FLOOR),
        ("pgdriver", f"pgdriver: store tx/s, {top} callers", None,
         get(pgd, POSTGRESQL, store, top, "tps"), "{:.0f}", ""),
        ("pgdriver", f"pgdriver: store / asyncpg group, {top}", None,
         _ratio(get(pgd, POSTGRESQL, store, top, "tps"), get(pgd, POSTGRESQL, agroup, top, "tps")),
         "{:.2f}", ""),
    ]  # fmt: skip


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def met(value: float, target: str) -> str:
    """✓ or ✗ against a target written '>= x' or '<= x'; '' without one."""
    if target.startswith(">= "):
        return " ✓" if value >= float(target[3:]) else " ✗"
    if target.startswith("<= "):
        return " ✓" if value <= float(target[3:]) else " ✗"
    return ""


PG_ONLY = ("PostgreSQL /", "two instances", "pgdriver")


def print_table(table: list[Row], kinds: list[str]) -> None:
    """The table: one line per measure, a column per database, the target last."""

    def cell(value: float | None, fmt: str, target: str, kind: str) -> str:
        if kind not in kinds:
            return "-"
        return "n/a" if value is None else fmt.format(value) + met(value, target)

    width = max(len(r[1]) for r in table)
    print(f"\n{'measure':<{width}}  {'SQLite':>10}  {'PostgreSQL':>10}  issue 19's target")
    for _, label, lite, pg, fmt, target in table:
        left = "" if label.startswith(PG_ONLY) else cell(lite, fmt, target, SQLITE)
        right = cell(pg, fmt, target, POSTGRESQL)
        print(f"{label:<{width}}  {left:>10}  {right:>10}  {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=(SQLITE, POSTGRESQL, "both"), default="both")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON here")
    args = parser.parse_args()
    kinds = [SQLITE, POSTGRESQL] if args.db == "both" else [args.db]
    env = dict(os.environ)
    cluster = None
    started = time.perf_counter()
    if POSTGRESQL in kinds:
        cluster = start_cluster()
        if cluster is None:
            if args.db == POSTGRESQL:
                raise SystemExit(MISSING + ".")
            print(f"{MISSING}; measuring SQLite only.", flush=True)
            kinds.remove(POSTGRESQL)
        else:
            env["BENCH_PG_SERVER"] = cluster.url()
    db = "both" if len(kinds) == 2 else kinds[0]
    figures: dict[str, dict] = {}
    failed: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="cmw-bench-all-") as tmp:
            for key, name, full, quick, pg_only in RUNS:
                if pg_only and POSTGRESQL not in kinds:
                    figures[key] = {}
                    continue
                out = Path(tmp) / f"{key}.json"
                figures[key] = run_script(name, quick if args.quick else full, db, env, out)
                if not figures[key]:
                    failed.append(f"{name}.py ({key})")
    finally:
        if cluster is not None:
            cluster.stop()
    elapsed = time.perf_counter() - started
    print_table(rows(figures, args.quick), kinds)
    print(f"\nall benchmarks: {elapsed / 60:.1f} min" + (" (quick sizes)" if args.quick else ""))
    write_json(args.json, figures)
    if failed:
        sys.exit(f"failed: {', '.join(failed)} (their output is above)")


if __name__ == "__main__":
    main()
