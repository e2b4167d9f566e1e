"""The benchmark scripts run end to end at a tiny size, and bench/all.py can read what they
write. Nothing here looks at a timing: speed is what the scripts print, not what a test checks.

Scripts that take `--db` run once with `--db both`, which covers PostgreSQL beside SQLite in one
run (SQLite alone, with the script's one line about the missing server, where the machine has no
PostgreSQL binaries). PostgreSQL goes through one durable throwaway cluster for the module,
named in BENCH_PG_SERVER as bench/all.py does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.all import PG_ONLY, RUNS, rows
from tests.pgcluster import Cluster, find_bindir

ROOT = Path(__file__).resolve().parents[2]
TINY = {  # by bench/all.py's run key
    "webhook": ["--requests", "40", "--conns", "4", "--rounds", "1"],
    "webhook_rate": ["--rate", "100", "--requests", "30", "--conns", "4"],
    "intake": ["--intakes", "60", "--concurrency", "5"],
    "smtp": ["--messages", "20", "--sequential", "5", "--clients", "4", "--rounds", "1"],
    "queue": ["--incidents", "2000", "--requests", "50"],
    "chat": ["20"],
    "instances": ["--requests", "40", "--conns", "4", "--rounds", "1"],
    "pgdriver": ["--transactions", "20", "--concurrency", "1", "10"],
}
SCRIPTS = {key: script for key, script, *_ in RUNS}


@pytest.fixture(scope="module")
def bench_env() -> Iterator[dict[str, str]]:
    """The scripts' environment: no CPU pinning (the suite shares the machine) and, where the
    binaries exist, a durable PostgreSQL server."""
    env = {**os.environ, "BENCH_NO_PIN": "1"}
    bindir = find_bindir()
    if bindir is None:
        yield env
        return
    cluster = Cluster(bindir, durable=True).start()
    try:
        yield {**env, "BENCH_PG_SERVER": cluster.url()}
    finally:
        cluster.stop()


def run(key: str, args: list[str], env: dict[str, str], tmp_path: Path) -> dict:
    out = tmp_path / f"{key}.json"
    done = subprocess.run(
        [sys.executable, f"bench/{SCRIPTS[key]}.py", *TINY[key], *args, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def assert_in_table(key: str, figures: dict, postgresql: bool) -> None:
    """Every row of bench/all.py's table taken from this run has its figures."""
    every = {k: {} for k in SCRIPTS} | {key: figures}
    mine = [row for row in rows(every, quick=True) if row[0] == key]
    assert mine, f"bench/all.py shows nothing of {key}"
    for _, label, lite, pg, _, _ in mine:
        if not label.startswith(PG_ONLY):
            assert lite is not None, f"{label}: no SQLite figure for bench/all.py"
        if postgresql:
            assert pg is not None, f"{label}: no PostgreSQL figure for bench/all.py"


@pytest.mark.parametrize("key", ["webhook", "webhook_rate", "intake", "smtp", "queue", "chat"])
def test_script_prints_both_databases(key: str, bench_env: dict[str, str], tmp_path: Path) -> None:
    figures = run(key, ["--db", "both"], bench_env, tmp_path)
    postgresql = "BENCH_PG_SERVER" in bench_env
    kinds = ["sqlite"] + (["postgresql"] if postgresql else [])
    assert sorted(k for k in figures if k != "postgresql_to_sqlite") == sorted(kinds)
    assert_in_table(key, figures, postgresql)


@pytest.mark.postgresql_only
@pytest.mark.parametrize("key", ["instances", "pgdriver"])
def test_postgresql_script_runs(
    key: str, db_backend: str, bench_env: dict[str, str], tmp_path: Path
) -> None:
    figures = run(key, [], bench_env, tmp_path)
    assert list(figures) == ["postgresql"]
    assert_in_table(key, figures, postgresql=True)


STAGES = {
    "signature (Twilio RequestValidator)",
    "form parse (urlencoded)",
    "parse_inbound (phone E.164, country)",
    "surrogate scrub",
    "acknowledgement text (Jinja)",
    "TwiML answer",
    "metrics",
    "apply_inbound (all SQL and logic of one contact)",
    "  of which routing (line, schedule, queue)",
}


def test_the_webhook_profile_by_stage_names_every_stage(
    bench_env: dict[str, str], tmp_path: Path
) -> None:
    """bench/stages.py (issue 19's profile) gives every stage a figure on each database."""
    kinds = ["sqlite"] + (["postgresql"] if "BENCH_PG_SERVER" in bench_env else [])
    for kind in kinds:
        out = tmp_path / f"stages-{kind}.json"
        done = subprocess.run(
            [sys.executable, "bench/stages.py", "--contacts", "64", "--rounds", "1",
             "--db", kind, "--json", str(out)],
            cwd=ROOT, env=bench_env, capture_output=True, text=True, timeout=240,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        figures = json.loads(out.read_text())[kind]
        assert set(figures) == STAGES
        assert all(value > 0 for value in figures.values()), figures
        assert "event loop stages, total" in done.stdout


def test_the_telegram_transport_comparison_times_both_transports(
    bench_env: dict[str, str], tmp_path: Path
) -> None:
    """bench/telegram.py sends through PTB's Bot over httpx and over the gateway's aiohttp
    transport to its loopback Bot API, and gives each a CPU figure per send."""
    out = tmp_path / "telegram.json"
    done = subprocess.run(
        [sys.executable, "bench/telegram.py", "--sends", "40", "--concurrency", "4",
         "--rounds", "1", "--json", str(out)],
        cwd=ROOT, env=bench_env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())
    for transport in ("httpx", "aiohttp"):
        assert figures[transport]["cpu_us"] > 0 and figures[transport]["rate"] > 0
    assert figures["aiohttp_to_httpx_cpu"] > 0
    assert "aiohttp / httpx, CPU per send" in done.stdout
