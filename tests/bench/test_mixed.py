"""The mixed load (bench/mixed.py) at a tiny rate, on each database: chat, WhatsApp, Telegram
and email contacts in turn against a real gateway process; every contact must get its tracking
number (the chat's `ticket` frame, the WhatsApp TwiML, the Telegram and email acknowledgements
at the fakes), each a different one. Its timings are not asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.all import RUNS, rows

ROOT = Path(__file__).resolve().parents[2]
CHANNELS = ("chat", "whatsapp", "telegram", "email")


def test_every_contact_of_a_mixed_load_gets_its_tracking_number(
    db_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = {**os.environ, "BENCH_NO_PIN": "1"}
    if db_backend == "postgresql":
        env["BENCH_PG_SERVER"] = request.getfixturevalue("durable_pg")
    out = tmp_path / "mixed.json"
    done = subprocess.run(
        [sys.executable, "bench/mixed.py", "--db", db_backend, "--rate", "16", "--seconds", "2",
         "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    figures = json.loads(out.read_text())[db_backend]
    assert figures["contacts"] == 32 and figures["missing"] == []
    for channel in CHANNELS:
        assert figures[channel]["contacts"] == 8, channel
        assert figures[channel]["count"] == 8, f"{channel}: not every contact got its number"
    every = {key: {} for key, *_ in RUNS} | {"mixed": {db_backend: figures}}
    mine = [row for row in rows(every, quick=True) if row[0] == "mixed"]
    assert len(mine) == 4
    for _, label, lite, pg, _, _ in mine:
        assert (lite if db_backend == "sqlite" else pg) is not None, label
