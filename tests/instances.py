"""Several real gateway processes (`python -m gateway serve`) on one PostgreSQL database.

Every instance shares the production set-up: one GATEWAY_PUBLIC_URL (what Twilio signs and what
pages' Origin says), one secret key, one relay and one Twilio API (loopback fakes in the test
process); each has its own HTTP and SMTP ports and its own name. `kill()` is SIGKILL: no
cleanup of any kind, as when a machine dies.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from tests.pgcluster import _free_port

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_URL = "http://soporte.callmyway.test"
SECRET_KEY = "instances-test-secret-key-0123456789abcdef"


class Instance:
    """One gateway process."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str]):
        self.name = name
        self.http_port = _free_port()
        self.smtp_port = _free_port()
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        # The test's SMTP clients play the MTA in front (a trusted relay): sender
        # authentication then believes the relay and asks no DNS server (never the network).
        config = self.workdir / "gateway.toml"
        config.write_text(
            '[email]\ntrusted_relays = ["127.0.0.0/8"]\nauthserv_id = "mx.callmyway.test"\n'
        )
        self.env = {
            "GATEWAY_CONFIG": str(config),
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(ROOT),
            "GATEWAY_INSTANCE": name,
            "GATEWAY_HTTP_PORT": str(self.http_port),
            "GATEWAY_SMTP_PORT": str(self.smtp_port),
            "GATEWAY_PUBLIC_URL": PUBLIC_URL,
            "GATEWAY_SECRET_KEY": SECRET_KEY,
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.workdir / "gateway.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> Instance:
        """Start the process (its output goes to gateway.log in its directory)."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "serve"],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    async def healthy(self, seconds: float = 30.0) -> dict[str, Any]:
        """Wait for /healthz to answer 200; its body."""
        deadline = time.monotonic() + seconds
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
            try:
                return await asyncio.to_thread(self._health)
            except OSError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    def _health(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as resp:
            return json.loads(resp.read())  # type: ignore[no-any-return]

    def kill(self) -> None:
        """SIGKILL: the process dies at once, holding whatever it held."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not stop in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()

    def cli(self, *args: str, stdin: str = "") -> str:
        """`python -m gateway ARGS` with this instance's settings; its stdout."""
        done = subprocess.run(
            [sys.executable, "-m", "gateway", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.workdir,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


async def agent_session(instance: Instance, name: str, password: str) -> aiohttp.ClientSession:
    """A browser-like session signed in to the agent pages of `instance`."""
    session = aiohttp.ClientSession(
        base_url=instance.url,
        cookie_jar=aiohttp.CookieJar(unsafe=True),
        headers={"Origin": PUBLIC_URL},
    )
    page = await session.get("/agent/login")
    token = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert token, "no CSRF token on the login page"
    resp = await session.post(
        "/agent/login",
        data={"csrf": token.group(1), "name": name, "password": password},
        allow_redirects=False,
    )
    assert resp.status in (302, 303), await resp.text()
    return session


async def csrf_of(session: aiohttp.ClientSession, path: str = "/agent/") -> str:
    """The session CSRF token the agent pages carry."""
    html = await (await session.get(path)).text()
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert found, "page has no CSRF token"
    return found.group(1)
