"""The SQLite store: SQLite (WAL, synchronous=FULL) behind a narrow async `Store` protocol.

Writes are *group-committed*: concurrent callers queue a function of a `Tx`; one writer task
runs a batch of them in a single trip to the database thread — `BEGIN IMMEDIATE`, each function
inside its own SAVEPOINT (so one failure rolls back only its own rows), one `COMMIT` (one fsync)
— and only then resolves each caller's future. Nothing is acknowledged before that COMMIT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from gateway.core.errors import GatewayError, TemporaryFailure
from gateway.core.timeutil import iso
from gateway.core.tracking import format_tracking
from gateway.store.migration import Migration, Plan
from gateway.store.schema import CORE
from gateway.store.tx import Row, Tx

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_BATCH = 256


def sqlite_path(url: str) -> str:
    """'sqlite:///var/g.db' -> 'var/g.db'; 'sqlite:////abs/g.db' -> '/abs/g.db'."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r}")
    return url[len("sqlite:///") :]


def configure_connection(conn: sqlite3.Connection, busy_timeout_ms: int = 5000) -> None:
    """The pragmas every connection of the store runs with."""
    # WAL lets readers run beside the writer; FULL fsyncs the WAL at every COMMIT, so an
    # acknowledged intake survives a power cut (NORMAL can lose the last transactions).
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    # Queue pages read the same hot rows all day: a 64 MiB page cache and memory-mapped reads
    # save a copy per page (measured: 50 full queue rows 0.48 ms -> 0.25 ms).
    conn.execute("PRAGMA cache_size=-65536")
    conn.execute("PRAGMA mmap_size=268435456")
    conn.row_factory = sqlite3.Row


class SqliteTx(Tx):
    """`Tx` over one sqlite3 connection, inside the store's `BEGIN IMMEDIATE` (or a read)."""

    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self._serial: int | None = None  # last tracking serial handed out in this transaction
        self._serial_at: str | None = None
        self._reads: sqlite3.Cursor | None = None  # one cursor for every read of the transaction

    def flush(self) -> None:
        """Reserve the tracking serials this transaction handed out; called before COMMIT."""
        if self._serial is not None and self._serial_at is not None:
            # AUTOINCREMENT keeps sqlite_sequence at the highest id ever inserted: one row per
            # transaction reserves every serial it handed out, so none is given out twice.
            self.conn.execute(
                "INSERT INTO tracking_serial (id, at) VALUES (?, ?)",
                (self._serial, self._serial_at),
            )
            self._serial_at = None

    def close(self) -> None:
        """Let go of the read cursor: a statement left unfinished on a reader connection would
        hold its WAL snapshot (and keep checkpoints from completing) until then."""
        if self._reads is not None:
            self._reads.close()
            self._reads = None

    def _cursor(self, sql: str, params: Sequence[Any]) -> sqlite3.Cursor:
        # Plain tuples zipped with the column names: sqlite3.Row looks every name up by a
        # case-insensitive scan of the columns, several times slower on wide incident rows.
        # The cursor is made once per transaction (a new one per read cost as much as a
        # small SELECT); `one` and `all` are done with its rows before they return.
        cur = self._reads
        if cur is None:
            cur = self._reads = self.conn.cursor()
            cur.row_factory = None
        return cur.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cur = self._cursor(sql, params)
        row = cur.fetchone()
        return dict(zip([d[0] for d in cur.description], row, strict=True)) if row else None

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = self._cursor(sql, params)
        rows = cur.fetchall()
        if not rows:
            return []
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in rows]

    raw = all

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self.conn.execute(sql, params).lastrowid  # type: ignore[return-value]

    def next_tracking(self, at: datetime) -> str:
        """The next serial after the highest ever reserved (reserved by `flush`)."""
        if self._serial is None:
            row = self.conn.execute(
                "SELECT seq FROM sqlite_sequence WHERE name = 'tracking_serial'"
            ).fetchone()
            self._serial = int(row[0]) if row else 0
        self._serial += 1
        self._serial_at = iso(at)
        return format_tracking(self._serial)

    def lock_key(self, key: str) -> None:
        """Nothing to do: one writer runs every write transaction of the database."""

    def json_field(self, column: str, key: str) -> str:
        return f"json_extract({column}, '$.{key}')"

    def json_has(self, column: str, item: str) -> str:
        return f"{column} LIKE '%\"{item}\"%'"


class SqliteStore:
    """aiosqlite-backed store with one group-committing writer and a few readers."""

    shared = False  # one process owns the file (see `follow`)

    def __init__(self, path: str, *, readers: int = 2, busy_timeout_ms: int = 5000):
        self.path = path
        self.busy_timeout_ms = busy_timeout_ms
        self._readers_n = readers
        self._writer: aiosqlite.Connection | None = None
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._reader_list: list[aiosqlite.Connection] = []
        self._pending: list[tuple[Callable[[Tx], Any], asyncio.Future[Any]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # committed write batches, for metrics and the benchmark
        self.on_commit: list[Callable[[], None]] = []  # called after each committed batch

    async def open(self) -> None:
        """Open connections and start the writer task."""
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = await aiosqlite.connect(self.path, isolation_level=None)
        await self._writer._execute(configure_connection, self._writer._conn, self.busy_timeout_ms)
        for _ in range(self._readers_n):
            conn = await aiosqlite.connect(self.path, isolation_level=None)
            await conn._execute(configure_connection, conn._conn, self.busy_timeout_ms)
            self._reader_list.append(conn)
            self._readers.put_nowait(conn)
        self._task = asyncio.create_task(self._write_loop(), name="store-writer")

    async def close(self) -> None:
        """Finish queued writes, then close every connection."""
        if self._task:
            # Batches run in FIFO order: once this empty job commits, all earlier ones have.
            with contextlib.suppress(Exception):
                await self.transact(lambda tx: None)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for conn in self._reader_list:
            await conn.close()
        self._reader_list.clear()
        if self._writer:
            await self._writer.close()
            self._writer = None

    async def migrate(self, components: Iterable[tuple[str, list[Migration]]] = ()) -> None:
        """Apply the core's and the given components' pending migrations, each atomically."""
        assert self._writer is not None
        plan = [("core", CORE), *components]
        await self._writer._execute(_apply_migrations, self._writer._conn, plan)

    async def transact(self, fn: Callable[[Tx], T], *, keys: Iterable[str] = ()) -> T:
        """Run `fn` in a write transaction shared with concurrent callers; return after COMMIT.
        `keys` (the lock keys `fn` takes) need nothing here: one writer runs every batch."""
        if self._task is None or self._task.done():
            raise TemporaryFailure("the database is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        self._wake.set()
        return await future

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` on a reader connection (a consistent WAL snapshot)."""
        conn = await self._readers.get()
        try:
            return await conn._execute(_run_read, conn._conn, fn)
        except sqlite3.Error as exc:
            log.error("read failed: %s", exc)
            raise TemporaryFailure("the database cannot be read right now") from exc
        finally:
            self._readers.put_nowait(conn)

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            return await asyncio.wait_for(self.read(lambda tx: tx.ping()), timeout=2)
        except (TemporaryFailure, TimeoutError):
            return False

    async def follow(self, publish: Callable[[dict[str, Any]], None]) -> None:
        """Nothing to follow: one process owns an SQLite database."""

    async def broadcast(self, notice: dict[str, Any]) -> None:
        """Nobody else to tell: one process owns an SQLite database."""

    async def _write_loop(self) -> None:
        assert self._writer is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[: len(batch)]
                fns = [fn for fn, _ in batch]
                try:
                    # aiosqlite's `_execute` runs a function in its connection thread: the whole
                    # batch costs one thread hop instead of one per statement.
                    results = await self._writer._execute(_run_batch, self._writer._conn, fns)
                except Exception as exc:  # nothing in the batch is saved
                    if len(batch) == 1 and not isinstance(exc, sqlite3.Error):
                        results = [(False, _job_error(exc))]
                    else:
                        log.error("write batch of %d failed: %s", len(batch), exc)
                        error = TemporaryFailure("the database cannot commit right now")
                        results = [(False, error)] * len(batch)
                else:
                    self.batches += 1
                    for callback in self.on_commit:
                        callback()
                for (_, future), (ok, value) in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)


def _run_read(conn: sqlite3.Connection, fn: Callable[[Tx], T]) -> T:
    tx = SqliteTx(conn)
    try:
        return fn(tx)
    finally:
        tx.close()


def _run_batch(conn: sqlite3.Connection, fns: list[Callable[[Tx], Any]]) -> list[tuple[bool, Any]]:
    """Runs in the database thread: one BEGIN IMMEDIATE … COMMIT around every function.

    Optimistic: the jobs run back to back; only if one fails is the transaction rolled back and
    the batch run again with a SAVEPOINT per job, so the failure takes back only its own rows.
    Write functions must therefore be pure functions of the transaction (they may run twice).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        tx = SqliteTx(conn)
        out: list[tuple[bool, Any]] = []
        try:
            for fn in fns:
                out.append((True, fn(tx)))
        except Exception as exc:
            if len(fns) == 1:
                raise
            first_failure = exc
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            tx, out = _run_isolated(conn, fns)
            log.debug("batch re-run with savepoints after %r", first_failure)
        tx.flush()
        tx.close()
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return out


def _run_isolated(
    conn: sqlite3.Connection, fns: list[Callable[[Tx], Any]]
) -> tuple[SqliteTx, list[tuple[bool, Any]]]:
    """Each job in its own SAVEPOINT: a failing one is rolled back alone."""
    out: list[tuple[bool, Any]] = []
    tx = SqliteTx(conn)
    for fn in fns:
        conn.execute("SAVEPOINT job")
        try:
            value = fn(tx)
        except Exception as exc:
            conn.execute("ROLLBACK TO job")
            out.append((False, _job_error(exc)))
        else:
            out.append((True, value))
        conn.execute("RELEASE job")
    return tx, out


def _job_error(exc: Exception) -> Exception:
    """What a failed job's caller receives: core errors as they are, database errors as
    temporary failures, anything else (a bug in one job) as is, logged."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, sqlite3.Error):
        log.error("write failed: %s", exc)
        return TemporaryFailure("the database cannot save this right now")
    log.error("write job raised", exc_info=exc)
    return exc


def _apply_migrations(conn: sqlite3.Connection, plan: Plan) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (component TEXT NOT NULL, "
        "version INTEGER NOT NULL, applied_at TEXT NOT NULL DEFAULT (datetime('now')), "
        "PRIMARY KEY (component, version))"
    )
    for component, migrations in plan:
        done = {
            row[0]
            for row in conn.execute(
                "SELECT version FROM schema_migrations WHERE component = ?", (component,)
            )
        }
        for version, sql, _ in migrations:
            if version in done:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (component, version) VALUES (?, ?)",
                    (component, version),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            log.info("applied migration %s/%d", component, version)


def _statements(sql: str) -> list[str]:
    """Split a migration script on complete statements (executescript would COMMIT)."""
    out, buffer = [], ""
    for line in sql.splitlines(keepends=True):
        if line.strip().startswith("--"):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                out.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        out.append(buffer.strip())
    return out
