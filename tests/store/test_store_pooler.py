"""Checklist D6: PostgreSQL reached through PgBouncer. In transaction mode LISTEN/NOTIFY and
session locks cannot work, so `python -m gateway serve` refuses to start with a clear error; in
session mode it runs."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TEMPLATE
from tests.instances import Instance
from tests.pgcluster import _free_port

pytestmark = pytest.mark.postgresql_only


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")
    assert found, "pgbouncer is not installed: .ci/run installs Debian's pgbouncer"
    return found


@pytest.fixture
def pgbouncer(pg_cluster: Any, tmp_path_factory: Any) -> Iterator[Any]:
    """start(mode) -> a database URL through a PgBouncer in that pool mode."""
    procs: list[subprocess.Popen[bytes]] = []
    root = Path(pg_cluster.root) / f"pgbouncer{len(list(Path(pg_cluster.root).glob('pgb*')))}"

    def start(mode: str) -> str:
        database = pg_cluster.create_database(template=TEMPLATE).rsplit("/", 1)[1]
        here = root / mode
        here.mkdir(parents=True)
        port = _free_port()
        (here / "users.txt").write_text('"postgres" ""\n')
        (here / "pgbouncer.ini").write_text(
            f"""[databases]
{database} = host=127.0.0.1 port={pg_cluster.port} dbname={database}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {here}/users.txt
pool_mode = {mode}
default_pool_size = 4
logfile = {here}/pgbouncer.log
pidfile = {here}/pgbouncer.pid
"""
        )
        command = [pgbouncer_binary(), str(here / "pgbouncer.ini")]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            owner = pwd.getpwnam("postgres")
            for path in (root, here, *here.iterdir()):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            command = ["runuser", "-u", "postgres", "--", *command]
        procs.append(
            subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        )
        return f"postgresql://postgres@127.0.0.1:{port}/{database}"

    yield start
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_refuses_a_transaction_pooling_proxy(pgbouncer: Any, tmp_path: Path) -> None:
    url = pgbouncer("transaction")
    instance = Instance("core-a", tmp_path, {"GATEWAY_DB": url})
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "serve"],
        env=instance.env,
        cwd=instance.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "transaction-pooling proxy" in done.stderr and "session-mode pool" in done.stderr
    assert "Traceback" not in done.stderr


async def test_serve_runs_through_a_session_pooling_proxy(pgbouncer: Any, tmp_path: Path) -> None:
    url = pgbouncer("session")
    instance = Instance("core-a", tmp_path, {"GATEWAY_DB": url}).start()
    try:
        health = await instance.healthy()
        assert health["status"] in ("ok", "degraded")
    finally:
        instance.kill()
