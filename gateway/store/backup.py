"""`python -m gateway backup PATH` and `restore PATH`: a consistent copy while the gateway runs.

SQLite: the online backup API copies the database page by page under a read snapshot (WAL lets
the gateway go on writing meanwhile); the copy is checked (`PRAGMA quick_check`). PostgreSQL:
`pg_dump --format=custom` (one snapshot, concurrent writes go on) and `pg_restore` into an
empty database. A restore never writes over data: the target must be empty. Blocking: run in
a worker thread. Keep backups off-line (see README, "Operations").
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import psycopg

from gateway.store.postgres import is_postgres_url
from gateway.store.sqlite import sqlite_path


class BackupError(Exception):
    """The backup or restore cannot be made; the message says why."""


def backup(db_url: str, path: Path) -> int:
    """Write a consistent copy of the database to `path` (which must not exist); its size."""
    if path.exists():
        raise BackupError(f"{path} exists already; choose a new file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_postgres_url(db_url):
        _run(_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={path}", db_url)
    else:
        source = sqlite3.connect(f"file:{sqlite_path(db_url)}?mode=ro", uri=True)
        target = sqlite3.connect(path)
        try:
            source.backup(target, pages=1024)  # yields the lock between steps
            result = target.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            target.close()
            source.close()
        if result != "ok":
            path.unlink(missing_ok=True)
            raise BackupError(f"the copy failed its check: {result}")
    return path.stat().st_size


def restore(db_url: str, path: Path) -> None:
    """Restore a backup made by `backup` into an empty database."""
    if not path.is_file():
        raise BackupError(f"{path} is not a backup file")
    if is_postgres_url(db_url):
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
        if row and row[0]:
            raise BackupError("the PostgreSQL database is not empty (it has tables)")
        _run(_tool("pg_restore"), "--no-owner", "--exit-on-error", f"--dbname={db_url}", str(path))
        return
    target = Path(sqlite_path(db_url))
    if target.exists() and target.stat().st_size > 0:
        raise BackupError(f"{target} exists already; restore into a new database file")
    target.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()


def _tool(name: str) -> str:
    """A PostgreSQL client program: on PATH, else the newest in Debian's server directories."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise BackupError(f"{name} is not installed (Debian: apt-get install postgresql-client)")


def _run(*command: str) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=3600)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip().splitlines()
        raise BackupError(
            f"{Path(command[0]).name} failed: {detail[-1] if detail else exc}"
        ) from exc
