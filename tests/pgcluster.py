"""A throwaway PostgreSQL cluster from the machine's server binaries, for tests and benchmarks.

`.ci/run` installs Debian's `postgresql` package; this module finds its binaries (`initdb`,
`pg_ctl`), creates a cluster in a temporary directory (as the `postgres` user when running as
root: initdb refuses root), starts it on a free loopback port and its own socket directory,
and hands out fresh databases. Nothing here reaches beyond loopback.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg


def find_bindir() -> Path | None:
    """The directory of the newest PostgreSQL server binaries on this machine, if any."""
    candidates: list[Path] = []
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        candidates.append(base)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """One running server; `url(dbname)` gives a URL the gateway's store accepts."""

    def __init__(self, bindir: Path, *, durable: bool = False):
        self.bindir = bindir
        self.durable = durable  # benchmarks keep fsync on; tests trade it for speed
        self.root = Path(tempfile.mkdtemp(prefix="cmw-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        self._counter = 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> Cluster:
        """initdb, configure and start; returns self."""
        self.sockets.mkdir(parents=True)
        if self._as_postgres:
            owner = pwd.getpwnam("postgres")
            for path in (self.root, self.sockets):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        settings = [
            "listen_addresses = '127.0.0.1'",
            f"port = {self.port}",
            f"unix_socket_directories = '{self.sockets}'",
            "max_connections = 200",
            "shared_buffers = 64MB",
            "log_min_messages = warning",
        ]
        if not self.durable:
            settings += ["fsync = off", "full_page_writes = off", "synchronous_commit = off"]
        with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n".join(settings) + "\n")
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "start"
        )
        return self

    def stop(self) -> None:
        """Stop the server at once and remove its files."""
        with contextlib.suppress(Exception):
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres") -> str:
        """A postgresql:// URL for one of the cluster's databases, over loopback TCP."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, template: str | None = None) -> str:
        """A new empty database (or a copy of `template`); returns its URL."""
        self._counter += 1
        name = f"t{os.getpid()}_{self._counter}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            clause = f" TEMPLATE {template}" if template else ""
            conn.execute(f"CREATE DATABASE {name}{clause}")
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by `create_database` (its connections are ended first)."""
        name = url.rsplit("/", 1)[1]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
