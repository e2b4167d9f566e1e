"""`python -m gateway` as an operator runs it: serve with no settings, user/token commands,
SIGTERM stops accepting and exits 0."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env_for(tmp_path: Path, http: int, smtp: int) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "GATEWAY_HTTP_PORT": str(http),
        "GATEWAY_SMTP_PORT": str(smtp),
    }


def wait_http(url: str, deadline: float) -> dict:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return json.loads(resp.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def run_cli(tmp_path: Path, env: dict[str, str], *args: str, stdin: str = "") -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])  # GATEWAY_EVENT_LOOP; uvloop by default
def test_serve_with_no_settings_then_sigterm_exits_0(loop: str, tmp_path: Path) -> None:
    http, smtp = free_port(), free_port()
    env = {**env_for(tmp_path, http, smtp), "GATEWAY_EVENT_LOOP": loop}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = wait_http(f"http://127.0.0.1:{http}/healthz", time.monotonic() + 30)
        assert health["status"] == "ok" and health["database"] == "ok"  # CONTRACT, instances
        assert (tmp_path / "var" / "gateway.db").exists()  # the embedded SQLite default
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert f"HTTP on http://127.0.0.1:{http}" in out
    assert "user add NAME --role supervisor" in out
    assert "Traceback" not in err
    assert "startup heap frozen" in err  # full collections skip startup's objects
    assert "GIL switch interval 0.5 ms (was 5.0 ms)" in err  # the loop waits less for threads
    with socket.socket() as s:  # no longer accepting
        assert s.connect_ex(("127.0.0.1", http)) != 0


def test_user_and_token_commands(tmp_path: Path) -> None:
    env = env_for(tmp_path, free_port(), free_port())
    out = run_cli(
        tmp_path,
        env,
        "user",
        "add",
        "marta",
        "--role",
        "supervisor",
        "--password-stdin",
        stdin="s3creta-larga\n",
    )
    assert "marta" in out
    token = run_cli(tmp_path, env, "token", "create", "marta").strip()
    assert len(token.splitlines()) == 1 and len(token) >= 40
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "user", "add", "marta", "--role", "l1"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1 and "already exists" in done.stderr
    assert "up to date" in run_cli(tmp_path, env, "migrate")
