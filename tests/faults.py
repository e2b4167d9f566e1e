"""Fault injection on the real store of either database: the test's own store class is the
settings' store (SQLite or PostgreSQL) with a mixin that can make writes fail, stall or wait.

    store = make_store_with(settings, Outage)
    store.down = True
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg

from config.settings import Settings
from gateway.core.errors import TemporaryFailure
from gateway.store.postgres import PostgresStore, is_postgres_url
from gateway.store.sqlite import SqliteStore, sqlite_path


def make_store_with(settings: Settings, mixin: type, **attrs: Any) -> Any:
    """An instance of the settings' store class with `mixin` in front of it."""
    postgres = is_postgres_url(settings.db_url)
    base: type = PostgresStore if postgres else SqliteStore
    cls = type(f"{mixin.__name__}{base.__name__}", (mixin, base), {})
    store = cls(settings.db_url) if postgres else cls(sqlite_path(settings.db_url))
    for name, value in attrs.items():
        setattr(store, name, value)
    return store


def disk_error(store: Any) -> Exception:
    """The error each database raises when its disk fails under a write."""
    if isinstance(store, PostgresStore):
        return psycopg.errors.DiskFull("could not extend file: No space left on device")
    return sqlite3.OperationalError("disk I/O error")


class Outage:
    """Writes fail with a temporary failure while `down`, and wait while `stalled` is set."""

    down = False
    stalled: asyncio.Event | None = None

    async def transact(self, fn: Any, **kw: Any) -> Any:
        if self.down:
            raise TemporaryFailure("the database cannot commit right now")
        if self.stalled is not None:
            await self.stalled.wait()  # a lock held elsewhere: the write waits
        return await super().transact(fn, **kw)  # type: ignore[misc]


class Failing:
    """Writes raise `failure` (any exception: a locked disk, a bug) while it is set."""

    failure: Exception | None = None

    async def transact(self, fn: Any, **kw: Any) -> Any:
        if self.failure is not None:
            raise self.failure
        return await super().transact(fn, **kw)  # type: ignore[misc]


class BrokenDisk:
    """While `broken`, every write reaches the database and fails there as a broken disk."""

    broken = False

    async def transact(self, fn: Any, **kw: Any) -> Any:
        if self.broken:
            error = disk_error(self)

            def fail(tx: Any) -> None:
                raise error

            return await super().transact(fail, **kw)  # type: ignore[misc]
        return await super().transact(fn, **kw)  # type: ignore[misc]


class Slow:
    """Every write waits `delay` seconds first (a slow disk or a held lock)."""

    delay = 0.0

    async def transact(self, fn: Any, **kw: Any) -> Any:
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().transact(fn, **kw)  # type: ignore[misc]


class Gated:
    """The intake's transaction waits for `gate`, so a test sees the HTTP side meanwhile."""

    gate: asyncio.Event
    waiting: asyncio.Event

    async def transact(self, fn: Any, **kw: Any) -> Any:
        if getattr(fn, "__qualname__", "").startswith("Intake.accept"):
            self.waiting.set()
            await self.gate.wait()
        return await super().transact(fn, **kw)  # type: ignore[misc]


@contextlib.contextmanager
def write_lock_held(settings: Settings) -> Iterator[None]:
    """Another session holds the database's write lock (a backup, a migration, a stuck
    operator shell): SQLite's BEGIN IMMEDIATE, or PostgreSQL's EXCLUSIVE lock on the receipts
    table (reads go on; every intake's write waits for it)."""
    if is_postgres_url(settings.db_url):
        with psycopg.connect(settings.db_url, autocommit=True) as holder:
            holder.execute("BEGIN")
            holder.execute("LOCK TABLE receipts IN EXCLUSIVE MODE")
            try:
                yield
            finally:
                holder.execute("ROLLBACK")
        return
    holder = sqlite3.connect(sqlite_path(settings.db_url), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def store_with_short_lock_wait(settings: Settings, wait_ms: int = 200) -> Any:
    """The settings' store, giving up on a held lock after `wait_ms` (default: 5 s)."""
    if is_postgres_url(settings.db_url):
        return PostgresStore(settings.db_url, lock_timeout_ms=wait_ms)
    return SqliteStore(sqlite_path(settings.db_url), busy_timeout_ms=wait_ms)


def fail_inserts(tx: Any, table: str) -> None:
    """Make every INSERT into `table` fail inside the database, as an I/O error would."""
    if tx.dialect == "postgresql":
        tx.execute(
            "CREATE FUNCTION fail_io() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'disk I/O error' USING ERRCODE = '58030'; END $$"
        )
        tx.execute(
            f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION fail_io()"
        )
        return
    tx.execute(
        f"CREATE TRIGGER fail_{table} BEFORE INSERT ON {table}"
        " BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
    )


def heal_inserts(tx: Any, table: str) -> None:
    """Undo `fail_inserts`."""
    if tx.dialect == "postgresql":
        tx.execute(f"DROP TRIGGER fail_{table} ON {table}")
        tx.execute("DROP FUNCTION fail_io()")
        return
    tx.execute(f"DROP TRIGGER fail_{table}")
