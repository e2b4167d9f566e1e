"""The crash soak (bench/soak.py) at a small size, on each database: a mixed stream over every
channel with provider-style retries while the gateway process is SIGKILLed and restarted; the
script itself checks every acknowledged contact is stored exactly once, every email body is
extracted and no acknowledgement went out more than twice. Its figures are not asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_crash_soak_keeps_every_acknowledged_contact_once(
    db_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = {**os.environ, "BENCH_NO_PIN": "1"}
    if db_backend == "postgresql":
        env["BENCH_PG_SERVER"] = request.getfixturevalue("durable_pg")
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, "bench/soak.py", "--db", db_backend, "--contacts", "6", "--kills", "3",
         "--seconds", "10", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())[db_backend]
    assert figures["contacts"] == 6 * 6 and figures["kills"] == 3
