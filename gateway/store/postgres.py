"""The PostgreSQL store: several gateway instances, one database, the same `Store` protocol.

psycopg 3 with a pool of synchronous connections: the core's write functions are plain
functions of a `Tx`, so a batch of them runs in a database thread exactly as on SQLite —
one `BEGIN … COMMIT` around every function queued meanwhile (group commit), each in its own
SAVEPOINT only when one fails. Several batches run at once on different connections, and
several instances write beside each other; what the single SQLite writer guaranteed by
being alone is kept by `Tx.lock_key` (a transaction-scoped advisory lock on, say, a provider
id or a contact) and by constraints. A job may declare its keys to `transact` beforehand: a
batch takes every declared key of its jobs at its start, in one statement and in one order
shared by every writer of every instance, so declared keys never deadlock (two batches taking
two contacts' keys job by job, in opposite orders, did). A deadlock (between undeclared
keys or rows), a serialization failure or a unique violation from a race is retried inside
the store with the job alone in a new transaction, never surfaced as a 500 or a lost contact.

Rows come back as the SQLite store returns them: timestamps as `iso()` text, JSON as text,
numbers as int or float, booleans as 0/1.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import weakref
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import lru_cache, partial
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors
from psycopg.adapt import Dumper, Loader
from psycopg.rows import dict_row
from psycopg.types.string import StrDumperUnknown

from gateway.core.errors import GatewayError, Misconfigured, TemporaryFailure
from gateway.core.tracking import format_tracking
from gateway.store.migration import Migration, Plan
from gateway.store.pgfeed import CHANNEL, POLL, ChangeFeed
from gateway.store.schema import CORE
from gateway.store.tx import Row, Tx

log = logging.getLogger(__name__)
T = TypeVar("T")
# Seven writers of up to 16 calls each: PostgreSQL shares WAL flushes between concurrent
# backends by itself, so batching many calls into one connection serializes their statements
# for no fsync saved. bench/pgdriver.py at 50 callers (2026-12-07): 3 writers x 128 gave
# 520 tx/s, 7 x 1 749, 7 x 4 854, 7 x 16 877, one transaction per call on a pool of 7 858.
WRITERS = 7
MAX_BATCH = 16
MAX_RETRIES = 5
MIGRATION_LOCK = 0x434D57_4D4947  # "CMW" "MIG": one instance migrates, the others wait
# A race another instance won: run the job again, alone, in a new transaction.
# job, its caller, attempt, its declared lock keys (hashed)
_Pending = tuple[Callable[[Tx], Any], "asyncio.Future[Any]", int, tuple[int, ...]]
RETRYABLE = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.UniqueViolation,
)


def is_postgres_url(url: str) -> bool:
    """True for postgresql:// and postgres:// URLs."""
    return url.startswith(("postgresql://", "postgres://"))


@lru_cache(maxsize=2048)
def translate(sql: str) -> str:
    """The shared SQL in psycopg's style: `?` becomes `%s` and a literal `%` becomes `%%`
    (outside and inside string literals alike, as psycopg parses the whole text)."""
    out: list[str] = []
    quoted = False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
            out.append(ch)
        elif ch == "%":
            out.append("%%")
        elif ch == "?" and not quoted:
            out.append("%s")
        else:
            out.append(ch)
    return "".join(out)


def key_hash(key: str) -> int:
    """A stable signed 64-bit number for an advisory lock key."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


# Loaders and dumpers that make PostgreSQL rows look like the SQLite store's -----------------
class _IsoTimestampLoader(Loader):
    """timestamptz -> the `iso()` text ('2026-11-29T10:05:41.123456+00:00'); the session runs
    in UTC, so PostgreSQL sends '2026-11-29 10:05:41.123456+00' (fraction trimmed)."""

    def load(self, data: Any) -> str:
        text = bytes(data).decode()
        if text.endswith("+00"):
            body = text[:-3]
            date, _, clock = body.partition(" ")
            whole, _, fraction = clock.partition(".")
            return f"{date}T{whole}.{fraction.ljust(6, '0')}+00:00"
        # Infinity or an unexpected zone: let Python normalise it.
        from gateway.core.timeutil import iso

        return iso(datetime.fromisoformat(text)) or text


class _TextLoader(Loader):
    """jsonb/json -> its text, as the SQLite store returns a JSON column."""

    def load(self, data: Any) -> str:
        return bytes(data).decode()


class _NumberLoader(Loader):
    """numeric (sum, avg) -> int when whole, else float, never Decimal."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        try:
            return int(text)
        except ValueError:
            return float(text)


class _BoolLoader(Loader):
    """boolean -> 1/0, as SQLite answers a condition."""

    def load(self, data: Any) -> int:
        return 1 if bytes(data) == b"t" else 0


class _BoolAsIntDumper(Dumper):
    """A Python bool parameter goes in as 1/0: the schema's flags are integers on both."""

    oid = psycopg.adapters.types["int2"].oid

    def dump(self, obj: Any) -> bytes:
        return b"1" if obj else b"0"


class _NulSafeStrDumper(StrDumperUnknown):
    """Python str → text parameter; NUL becomes U+FFFD (issue #16, found by fuzzing).

    PostgreSQL text cannot hold NUL (psycopg refuses it) and jsonb refuses the JSON escape
    \\u0000: a customer's message carrying one would fail every retry with 503. SQLite stores
    both as they are; here the one character is replaced so the message is kept.
    """

    def dump(self, obj: str) -> Any:
        if "\x00" in obj:
            obj = obj.replace("\x00", "\ufffd")
        if "\\u0000" in obj:
            obj = obj.replace("\\u0000", "\\ufffd")
        return super().dump(obj)


def configure_session(
    conn: psycopg.Connection[Any], lock_timeout_ms: int = 5000, statement_timeout_ms: int = 30000
) -> None:
    """Row conversions and session settings of one new connection.

    The session runs in UTC (the timestamp loader relies on it). A write that waits for a lock
    held elsewhere (a migration, an operator's session) gives up after `lock_timeout_ms`, as
    SQLite's busy timeout does, so the sender gets its temporary failure (503, 451) while it
    still waits for an answer. Set with SET, not the `options` startup parameter, which
    PgBouncer refuses.
    """
    configure_adapters(conn)
    conn.execute(
        f"SET TIME ZONE 'UTC'; SET lock_timeout = {int(lock_timeout_ms)};"
        f" SET statement_timeout = {int(statement_timeout_ms)}"
    )


def configure_adapters(conn: psycopg.Connection[Any]) -> None:
    """Register the row conversions on one connection."""
    adapters = conn.adapters
    adapters.register_loader("timestamptz", _IsoTimestampLoader)
    adapters.register_loader("jsonb", _TextLoader)
    adapters.register_loader("json", _TextLoader)
    adapters.register_loader("numeric", _NumberLoader)
    adapters.register_loader("bool", _BoolLoader)
    adapters.register_dumper(bool, _BoolAsIntDumper)
    adapters.register_dumper(str, _NulSafeStrDumper)


def connect_kwargs(instance: str = "gateway") -> dict[str, Any]:
    """Connection parameters every connection of the gateway uses (see `configure_session`)."""
    return {
        "autocommit": True,  # transactions are explicit: conn.transaction()
        "row_factory": dict_row,
        "prepare_threshold": 5,  # the hot statements become server-side prepared
        # A dead peer (power cut, cable) is noticed in about 15 s instead of hours.
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 5,
        # Names this instance in pg_stat_activity and in the change notifications it causes.
        "application_name": instance[:63],
    }


class PgTx(Tx):
    """`Tx` over one psycopg connection, inside a transaction (or autocommit reads)."""

    dialect = "postgresql"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, conn: psycopg.Connection[Any]):
        self.conn = conn
        self._cur = conn.cursor()
        self._held: frozenset[int] = frozenset()  # taken at the batch's start (`take_keys`)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        cur = self._cur.execute(translate(sql), params)
        return cur.fetchone() if cur.description else None  # type: ignore[return-value]

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        cur = self._cur.execute(translate(sql), params)
        return cur.fetchall() if cur.description else []  # type: ignore[return-value]

    raw = all

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._cur.execute(translate(sql), params).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cur.executemany(translate(sql), rows)

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        row = self._cur.execute(translate(sql + " RETURNING id"), params).fetchone()
        assert row is not None
        return int(row["id"])  # type: ignore[call-overload]

    def next_tracking(self, at: datetime) -> str:
        """A serial from the sequence: unique across instances; a rolled-back one is a gap."""
        row = self._cur.execute("SELECT nextval('tracking_serial') AS n").fetchone()
        assert row is not None
        return format_tracking(int(row["n"]))  # type: ignore[call-overload]

    def lock_key(self, key: str) -> None:
        """A transaction-scoped advisory lock: released at COMMIT or ROLLBACK. A key the batch
        already took at its start (declared to `transact`) costs no round trip."""
        hashed = key_hash(key)
        if hashed not in self._held:
            self._cur.execute("SELECT pg_advisory_xact_lock(%s)", (hashed,))

    def take_keys(self, hashed: Sequence[int]) -> None:
        """Take the batch's declared keys (ascending: every writer takes them in one order),
        outside any savepoint, so no job's rollback lets go of them."""
        if hashed:
            self._cur.execute(
                "SELECT pg_advisory_xact_lock(k) FROM unnest(%s::bigint[]) AS k", (list(hashed),)
            )
            self._held = frozenset(hashed)

    def json_field(self, column: str, key: str) -> str:
        return f"({column} ->> '{key}')"

    def json_has(self, column: str, item: str) -> str:
        return f"{column} @> '[\"{item}\"]'"

    def flush(self) -> None:
        """Nothing is kept in memory: serials come from the sequence."""

    def close(self) -> None:
        self._cur.close()


class PostgresStore:
    """A pooled, group-committing store on one PostgreSQL database, shared by instances."""

    shared = True
    feed_poll = POLL  # seconds between the change feed's polls and beacons (`follow`)

    def __init__(
        self,
        url: str,
        *,
        writers: int = WRITERS,
        max_batch: int = MAX_BATCH,
        readers: int = 3,
        timeout: float = 5.0,
        lock_timeout_ms: int = 5000,
        instance: str = "gateway",
    ):
        self.url = url
        self.instance = instance
        self.lock_timeout_ms = lock_timeout_ms
        self.writers = writers
        self.max_batch = max_batch
        self.readers = readers
        self.timeout = timeout
        self._pool: psycopg_pool.ConnectionPool[Any] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._pending: list[_Pending] = []
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0  # committed write batches, for metrics and the benchmark
        self.retries = 0  # jobs run again after a race with another transaction
        self.deadlocks = 0  # batches PostgreSQL rolled back to break a deadlock
        self.on_commit: list[Callable[[], None]] = []
        self.feed: ChangeFeed | None = None
        # Whether this instance's writes fire the change-feed notifications (migration 3):
        # on until its feed has listened a while and heard no other instance, and again as
        # soon as it hears one. What each pooled connection's session was last told.
        self.notify_changes = True
        self._told_notify: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()

    # lifecycle ---------------------------------------------------------------------------------
    async def open(self) -> None:
        """Open the pool (failing fast with a temporary failure when the server is down)."""
        self._executor = ThreadPoolExecutor(
            max_workers=self.writers + self.readers + 1, thread_name_prefix="pg"
        )
        self._pool = psycopg_pool.ConnectionPool(
            self.url,
            min_size=1,
            max_size=self.writers + self.readers + 1,
            kwargs=connect_kwargs(self.instance),
            configure=partial(configure_session, lock_timeout_ms=self.lock_timeout_ms),
            open=False,
            timeout=self.timeout,
            name="gateway",
        )
        try:
            await self._run(self._pool.open, True, self.timeout)
        except psycopg_pool.PoolTimeout as exc:
            await self._run(self._pool.close)
            raise TemporaryFailure("the database cannot be reached") from exc
        try:
            await self._require_sessions()
        except BaseException:
            await self._run(self._pool.close)
            raise
        self._tasks = [
            asyncio.create_task(self._write_loop(), name=f"store-writer-{i}")
            for i in range(self.writers)
        ]

    async def close(self) -> None:
        """Finish queued writes, then close every connection."""
        if self._tasks:
            with contextlib.suppress(Exception):
                await asyncio.gather(*(self.transact(lambda tx: None) for _ in self._tasks))
            for task in self._tasks:
                task.cancel()
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self._tasks = []
        if self._pool is not None:
            await self._run(self._pool.close)
            self._pool = None
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    async def _require_sessions(self) -> None:
        """Refuse a transaction-pooling proxy (PgBouncer's pool_mode=transaction, checklist D6):
        LISTEN and session advisory locks need a connection that stays one session. A probe
        notification sent from the pool must reach a listening connection."""
        token = secrets.token_hex(8)
        channel = f"gateway_probe_{token}"
        try:
            listener = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        except psycopg.Error as exc:
            raise TemporaryFailure("the database cannot be reached") from exc
        try:
            await listener.execute(f"LISTEN {channel}")
            await self._run(self._notify_sync, token, channel)
            async for note in listener.notifies(timeout=3.0):
                if note.payload == token:
                    return
        finally:
            await listener.close()
        raise Misconfigured(
            "GATEWAY_DB reaches PostgreSQL through a transaction-pooling proxy (PgBouncer"
            " pool_mode=transaction?): a notification sent on one connection never reached"
            " another. Several instances need LISTEN/NOTIFY and session locks: connect to"
            " PostgreSQL directly or through a session-mode pool."
        )

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    # the protocol ------------------------------------------------------------------------------
    async def migrate(self, components: Iterable[tuple[str, list[Migration]]] = ()) -> None:
        """Apply pending migrations; concurrent starts of several instances migrate once."""
        assert self._pool is not None
        plan = [("core", CORE), *components]
        await self._run(self._migrate_sync, plan)

    def _migrate_sync(self, plan: Plan) -> None:
        assert self._pool is not None
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                apply_migrations(conn, plan)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    async def transact(self, fn: Callable[[Tx], T], *, keys: Iterable[str] = ()) -> T:
        """Run `fn` in a write transaction shared with concurrent callers; return after COMMIT.

        `keys` are the lock keys `fn` will take (`Tx.lock_key`), declared so that its batch
        takes them first, in the order every batch uses: declared keys cannot deadlock.
        """
        if not self._tasks or all(task.done() for task in self._tasks):
            raise TemporaryFailure("the database is not open")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future, 0, tuple(key_hash(key) for key in keys)))
        self._wake.set()
        return await future

    async def read(self, fn: Callable[[Tx], T]) -> T:
        """Run `fn` on a pooled connection, each statement on the latest committed data."""
        try:
            return await self._run(self._read_sync, fn)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            log.error("read failed: %s", exc)
            raise TemporaryFailure("the database cannot be read right now") from exc

    def _read_sync(self, fn: Callable[[Tx], T]) -> T:
        assert self._pool is not None
        with self._pool.connection() as conn:
            tx = PgTx(conn)
            try:
                return fn(tx)
            finally:
                tx.close()

    async def ping(self) -> bool:
        """True when the database answers a trivial query."""
        try:
            return await asyncio.wait_for(self.read(lambda tx: tx.ping()), timeout=2)
        except (TemporaryFailure, TimeoutError):
            return False

    async def follow(self, publish: Callable[[dict[str, Any]], None]) -> None:
        """Publish other instances' committed changes on the local bus (until cancelled)."""
        self.feed = ChangeFeed(
            self.url,
            self.instance,
            publish,
            self._newest_event,
            poll=self.feed_poll,
            connect_kwargs={"application_name": f"{self.instance[:50]}:feed"},
            on_peers=self._peers_changed,
        )
        await self.feed.run()

    def _peers_changed(self, others: bool) -> None:
        """The change feed heard another instance (or lost track of them all, or its own
        connection): notify changes while anyone else may be listening."""
        if others != self.notify_changes:
            log.info("change notifications %s", "on: another instance listens" if others else "off")
        self.notify_changes = others

    def _tell_notify(self, conn: psycopg.Connection[Any]) -> None:
        """Bring the session's gateway.notify in line with `notify_changes`, outside the batch's
        transaction (a rolled-back SET would be undone): rarely, as it changes rarely. A
        session never told notifies (the setting unset)."""
        want = self.notify_changes
        if self._told_notify.get(conn, True) != want:
            conn.execute(
                "SELECT set_config('gateway.notify', %s, false)", ("on" if want else "off",)
            )
            conn.commit()
            self._told_notify[conn] = want

    async def _newest_event(self) -> int:
        row = await self.read(lambda tx: tx.one("SELECT max(id) AS n FROM events"))
        return int(row["n"] or 0) if row else 0

    async def broadcast(self, notice: dict[str, Any]) -> None:
        """Tell every instance (`follow`), e.g. a chat frame for a socket held elsewhere."""
        payload = json.dumps({**notice, "origin": self.instance}, separators=(",", ":"))
        try:
            await self._run(self._notify_sync, payload)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise TemporaryFailure("the other instances cannot be told right now") from exc

    def _notify_sync(self, payload: str, channel: str = CHANNEL) -> None:
        assert self._pool is not None
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))

    # group commit ------------------------------------------------------------------------------
    async def _write_loop(self) -> None:
        while True:
            await self._wake.wait()
            while self._pending:
                batch = self._pending[: self.max_batch]
                del self._pending[: len(batch)]
                if self._pending:
                    self._wake.set()  # another writer can take the rest meanwhile
                else:
                    self._wake.clear()
                await self._commit(batch)
            self._wake.clear()

    async def _commit(self, batch: list[_Pending]) -> None:
        fns = [fn for fn, _, _, _ in batch]
        held = sorted({key for _, _, _, keys in batch for key in keys})
        try:
            results = await self._run(self._batch_sync, fns, held)
        except Exception as exc:  # nothing in the batch is saved
            if len(batch) == 1 and not isinstance(exc, psycopg.Error | psycopg_pool.PoolTimeout):
                results = [(False, _job_error(exc))]
            else:
                log.error("write batch of %d failed: %s", len(batch), exc)
                error = TemporaryFailure("the database cannot commit right now")
                results = [(False, error)] * len(batch)
        else:
            if any(ok is True for ok, _ in results):
                self.batches += 1
                for callback in self.on_commit:
                    callback()
        for (fn, future, attempt, keys), (ok, value) in zip(batch, results, strict=True):
            if future.done():
                continue
            if ok == "retry":
                if attempt + 1 < MAX_RETRIES:
                    self.retries += 1
                    log.info("retrying a write after %s", type(value).__name__)
                    self._pending.append((fn, future, attempt + 1, keys))
                    self._wake.set()
                    continue
                log.error("write still failing after %d attempts: %s", MAX_RETRIES, value)
                future.set_exception(TemporaryFailure("the database cannot save this right now"))
            elif ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def _batch_sync(
        self, fns: list[Callable[[Tx], Any]], held: Sequence[int] = ()
    ) -> list[tuple[Any, Any]]:
        """Runs in a database thread: one transaction around every function.

        The jobs' declared lock keys (`held`, ascending) are taken first. Optimistic: the jobs
        run back to back; only if one fails is the transaction rolled back and the batch run
        again with a SAVEPOINT per job, so the failure takes back only its own rows. Write
        functions must be pure functions of the transaction.
        """
        assert self._pool is not None
        with self._pool.connection() as conn:
            self._tell_notify(conn)
            try:
                with conn.transaction():
                    tx = PgTx(conn)
                    tx.take_keys(held)
                    out: list[tuple[Any, Any]] = [(True, fn(tx)) for fn in fns]
                    tx.close()
                return out
            except RETRYABLE as exc:
                self._count(exc)
                if len(fns) == 1:
                    return [("retry", exc)]
            except psycopg.OperationalError:
                raise  # the connection is gone: the whole batch is a temporary failure
            except Exception:
                if len(fns) == 1:
                    raise
            return self._run_isolated(conn, fns, held)

    def _count(self, exc: Exception) -> None:
        """Count a deadlock PostgreSQL broke (gateway_store_deadlocks_total)."""
        if isinstance(exc, pg_errors.DeadlockDetected):
            self.deadlocks += 1

    def _run_isolated(
        self, conn: psycopg.Connection[Any], fns: list[Callable[[Tx], Any]], held: Sequence[int]
    ) -> list[Any]:
        """Each job in its own SAVEPOINT: a failing one is rolled back alone; a lost race is
        handed back to be run again in a transaction of its own."""
        out: list[tuple[Any, Any]] = []
        with conn.transaction():
            tx = PgTx(conn)
            tx.take_keys(held)
            for fn in fns:
                try:
                    with conn.transaction():
                        value = fn(tx)
                except RETRYABLE as exc:
                    self._count(exc)
                    out.append(("retry", exc))
                except psycopg.OperationalError:
                    raise
                except Exception as exc:
                    out.append((False, _job_error(exc)))
                else:
                    out.append((True, value))
            tx.close()
        return out


def _job_error(exc: Exception) -> Exception:
    """What a failed job's caller receives (as the SQLite store does)."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, psycopg.Error):
        log.error("write failed: %s", exc)
        return TemporaryFailure("the database cannot save this right now")
    log.error("write job raised", exc_info=exc)
    return exc


def apply_migrations(
    conn: psycopg.Connection[Any], plan: list[tuple[str, list[Migration]]]
) -> None:
    """Apply each component's pending migrations, each in its own transaction."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (component text NOT NULL,"
        " version integer NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
        " PRIMARY KEY (component, version))"
    )
    for component, migrations in plan:
        done = {
            row["version"]  # type: ignore[call-overload]
            for row in conn.execute(
                "SELECT version FROM schema_migrations WHERE component = %s", (component,)
            )
        }
        for migration in migrations:
            if migration.version in done:
                continue
            with conn.transaction():
                conn.execute(migration.postgresql.encode())  # several statements, one trip
                conn.execute(
                    "INSERT INTO schema_migrations (component, version) VALUES (%s, %s)",
                    (component, migration.version),
                )
            log.info("applied migration %s/%d", component, migration.version)
