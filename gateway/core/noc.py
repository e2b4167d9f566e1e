"""The NOC alarm monitor: measures, evaluates (`gateway.core.alarms`), stores and notifies.

Every instance copies its adapter health and intake failures to `alarm_signals` each interval.
The evaluation itself is a scheduler job per interval slot ("alarms", slot time): the jobs'
claim-with-lease makes exactly one instance run it, even with several on PostgreSQL. A failed
test write to the database cannot reach that job (it lives in the database), so each instance
alarms on its own about the database, keeping that episode in memory until it can store it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.core import health
from gateway.core.alarms import Action, Episode, ProviderState, Snapshot, count_in_window, evaluate
from gateway.core.notify import send_notices
from gateway.core.scheduler import schedule_job
from gateway.core.timeutil import iso, parse_iso
from gateway.store.migration import Migration
from gateway.store.protocol import Store
from gateway.store.tx import Row, Tx

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
JOB = "alarms"
EVALUATE_KEY = "alarms:evaluate"  # the lock key of one evaluation (declared to transact)
OPEN = "('new', 'in_progress', 'waiting_customer')"
Probe = Callable[[Store], Awaitable[bool]]

MIGRATIONS: list[Migration] = [
    Migration(
        1,
        """
        CREATE TABLE alarm_episodes (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            started_at TEXT NOT NULL,
            notified_at TEXT NOT NULL,
            ended_at TEXT,
            notices INTEGER NOT NULL DEFAULT 1,
            summary TEXT NOT NULL,
            value REAL,
            threshold REAL
        );
        CREATE UNIQUE INDEX alarm_episodes_open ON alarm_episodes(key) WHERE ended_at IS NULL;
        CREATE INDEX alarm_episodes_started ON alarm_episodes(started_at);
        CREATE TABLE alarm_signals (
            instance TEXT NOT NULL,
            name TEXT NOT NULL,
            last_ok_at TEXT,
            last_error_at TEXT,
            error TEXT,
            failing_since TEXT,
            count INTEGER NOT NULL DEFAULT 0,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (instance, name)
        );
        """,
        """
        CREATE TABLE alarm_episodes (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            key text NOT NULL,
            started_at timestamptz NOT NULL,
            notified_at timestamptz NOT NULL,
            ended_at timestamptz,
            notices integer NOT NULL DEFAULT 1,
            summary text NOT NULL,
            value double precision,
            threshold double precision
        );
        CREATE UNIQUE INDEX alarm_episodes_open ON alarm_episodes(key) WHERE ended_at IS NULL;
        CREATE INDEX alarm_episodes_started ON alarm_episodes(started_at);
        CREATE TABLE alarm_signals (
            instance text NOT NULL,
            name text NOT NULL,
            last_ok_at timestamptz,
            last_error_at timestamptz,
            error text,
            failing_since timestamptz,
            count integer NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL,
            PRIMARY KEY (instance, name)
        );
        """,
    )
]


async def write_probe(store: Store) -> bool:
    """Whether the database takes writes now: the same probe as `/healthz` (a read, then a
    one-row upsert within 2 s; `gateway.core.health`), the database-state alarm's default."""
    return await health.database_state(store, "alarm-probe", datetime.now(UTC)) == health.OK


def _ts(value: Any) -> datetime | None:
    return parse_iso(value) if isinstance(value, str) else value


def read_snapshot(tx: Tx, now: datetime, at_risk_window: timedelta, live: timedelta) -> Snapshot:
    """Measure everything the thresholds look at, in one transaction."""
    unattended = {
        (r["level"], r["country"]): _ts(r["since"])
        for r in tx.all(
            "SELECT level, country, min(registered_at) AS since FROM incidents"
            f" WHERE level IN ('L1', 'L2', 'L3') AND status IN {OPEN}"
            " AND attended_at IS NULL GROUP BY level, country"
        )
    }
    stamp, soon = iso(now), iso(now + at_risk_window)
    risk = tx.one(
        f"SELECT count(*) AS n FROM incidents WHERE level IN ('L1', 'L2', 'L3')"
        f" AND status IN {OPEN} AND urgent_due >= ? AND urgent_due < ?"
        " AND attention_breached = 0 AND solution_breached = 0",
        (stamp, soon),
    )
    breached = tx.one(
        f"SELECT count(*) AS n FROM incidents WHERE level IN ('L1', 'L2', 'L3')"
        f" AND status IN {OPEN} AND (attention_breached = 1 OR solution_breached = 1)"
    )
    oldest = tx.all(
        "SELECT channel, min(created_at) AS since FROM outbox"
        " WHERE status IN ('pending', 'sending') GROUP BY channel"
    )
    dead = tx.all(
        "SELECT channel, count(*) AS n FROM outbox WHERE status = 'dead' GROUP BY channel"
    )
    shunted = tx.one("SELECT count(*) AS n FROM receipts WHERE state = 'shunted'")
    signals = tx.all("SELECT * FROM alarm_signals")
    providers: dict[str, ProviderState] = {}
    failures = 0
    for row in signals:
        if row["name"] == "intake":
            if (_ts(row["updated_at"]) or now) >= now - live:
                failures += int(row["count"])
            continue
        providers[row["name"]] = merge_provider(
            providers.get(row["name"]),
            ProviderState(
                _ts(row["last_ok_at"]),
                _ts(row["last_error_at"]),
                row["error"],
                _ts(row["failing_since"]),
            ),
        )
    return Snapshot(
        unattended={k: v for k, v in unattended.items() if v is not None},
        at_risk=int(risk["n"]) if risk else 0,
        breached=int(breached["n"]) if breached else 0,
        outbox_oldest={r["channel"]: _ts(r["since"]) for r in oldest if r["since"] is not None},
        dead={r["channel"]: int(r["n"]) for r in dead},
        intake_failures=failures,
        shunted=int(shunted["n"]) if shunted else 0,
        providers=providers,
    )


def merge_provider(a: ProviderState | None, b: ProviderState) -> ProviderState:
    """Two instances' views of one provider: failing only if no success since it began failing."""
    if a is None:
        return b
    oks = [t for t in (a.last_ok, b.last_ok) if t]
    last_ok = max(oks) if oks else None
    errors = [s for s in (a, b) if s.last_error]
    newest = max(errors, key=lambda s: s.last_error) if errors else b  # type: ignore[arg-type,return-value]
    starts = [t for t in (a.failing_since, b.failing_since) if t and (not last_ok or t > last_ok)]
    return ProviderState(last_ok, newest.last_error, newest.error, min(starts) if starts else None)


def open_episodes(tx: Tx) -> dict[str, Episode]:
    """The episodes still open, by key."""
    return {
        r["key"]: Episode(r["key"], _ts(r["started_at"]), _ts(r["notified_at"]), r["notices"])  # type: ignore[arg-type]
        for r in tx.all("SELECT * FROM alarm_episodes WHERE ended_at IS NULL")
    }


def apply_actions(tx: Tx, actions: list[Action], now: datetime) -> None:
    """Store what the evaluation decided: open, re-notified or ended episodes."""
    stamp = iso(now)
    for a in actions:
        if a.kind == "open":
            tx.execute(
                "INSERT INTO alarm_episodes (key, started_at, notified_at, summary, value,"
                " threshold) VALUES (?, ?, ?, ?, ?, ?)",
                (a.key, stamp, stamp, a.summary, a.value, a.limit),
            )
        elif a.kind == "repeat":
            tx.execute(
                "UPDATE alarm_episodes SET notified_at = ?, notices = notices + 1, summary = ?,"
                " value = ? WHERE key = ? AND ended_at IS NULL",
                (stamp, a.summary, a.value, a.key),
            )
        else:
            tx.execute(
                "UPDATE alarm_episodes SET ended_at = ?, notices = notices + 1"
                " WHERE key = ? AND ended_at IS NULL",
                (stamp, a.key),
            )


def _flush_signals(tx: Tx, instance: str, now: datetime, states: dict, failures: int) -> None:
    stamp = iso(now)
    rows = [(n, s.last_ok, s.last_error, s.error, s.failing_since, 0) for n, s in states.items()]
    rows.append(("intake", None, None, None, None, failures))
    for name, ok, err, error, since, count in rows:
        tx.execute(
            "INSERT INTO alarm_signals (instance, name, last_ok_at, last_error_at, error,"
            " failing_since, count, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (instance, name) DO UPDATE SET last_ok_at = excluded.last_ok_at,"
            " last_error_at = excluded.last_error_at, error = excluded.error,"
            " failing_since = excluded.failing_since, count = excluded.count,"
            " updated_at = excluded.updated_at",
            (instance, name, iso(ok), iso(err), error, iso(since), count, stamp),
        )


def slot_after(now: datetime, interval: timedelta) -> datetime:
    """The next evaluation slot: interval boundaries counted from the epoch (same on every
    instance, so they all schedule the same job key)."""
    step = interval.total_seconds()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    n = int((now - epoch).total_seconds() // step) + 1
    return epoch + timedelta(seconds=n * step)


class AlarmMonitor:
    """One instance's part of the NOC alarms (see the module docstring)."""

    def __init__(self, gw: Gateway, probe: Probe = write_probe):
        self.gw = gw
        self.th = gw.settings.alarms
        self.probe = probe
        self.samples: list[tuple[datetime, int]] = []
        self.local: dict[str, Episode] = {}  # the database episode while it cannot be stored
        self.local_started: datetime | None = None

    async def evaluate(self) -> list[Action]:
        """Evaluate now, store the outcome, send the notices; returns the actions taken."""
        gw = self.gw
        now = gw.clock()
        window = gw.settings.routing.at_risk_window
        live = max(self.th.interval * 3, timedelta(minutes=5))

        def work(tx: Tx) -> list[Action]:
            tx.lock_key(EVALUATE_KEY)  # PostgreSQL: one evaluation at a time
            snap = read_snapshot(tx, now, window, live)
            actions = evaluate(snap, self.th, open_episodes(tx), now)
            apply_actions(tx, actions, now)
            return actions

        actions = await gw.store.transact(work, keys=(EVALUATE_KEY,))
        await send_notices(gw.settings, actions, now)
        return actions

    async def check_database(self) -> list[Action]:
        """Probe a write; alarm (this instance alone) while it fails, store the episode after."""
        if not self.th.database:
            return []
        gw = self.gw
        ok = await self.probe(gw.store)
        now = gw.clock()
        snap = Snapshot(database_ok=ok)
        only_db = {k: v for k, v in self.local.items() if k == "database"}
        actions = [a for a in evaluate(snap, self.th, only_db, now) if a.key == "database"]
        for a in actions:
            if a.kind == "open":
                self.local["database"] = Episode("database", now, now)
                self.local_started = now
            elif a.kind == "repeat":
                old = self.local["database"]
                self.local["database"] = Episode("database", old.started_at, now, old.notices + 1)
            else:
                old = self.local.pop("database")
                await self._store_past(old, now)
        await send_notices(gw.settings, actions, now)
        return actions

    async def _store_past(self, episode: Episode, now: datetime) -> None:
        with contextlib.suppress(Exception):
            await self.gw.store.transact(
                lambda tx: tx.execute(
                    "INSERT INTO alarm_episodes (key, started_at, notified_at, ended_at, notices,"
                    " summary, value, threshold) VALUES (?, ?, ?, ?, ?, ?, 1, 1)",
                    (
                        episode.key,
                        iso(episode.started_at),
                        iso(episode.notified_at),
                        iso(now),
                        episode.notices + 1,
                        f"la base de datos no aceptó escrituras ({self.gw.settings.instance})",
                    ),
                )
            )

    async def flush_signals(self) -> None:
        """Copy this instance's adapter health and intake failures to the database."""
        gw = self.gw
        now = gw.clock()
        self.samples.append((now, gw.intake.temporary_failures))
        self.samples = [s for s in self.samples if s[0] >= now - self.th.intake_window * 2]
        failures = count_in_window(self.samples, now, self.th.intake_window)
        states = dict(gw.providers.states)
        await gw.store.transact(
            lambda tx: _flush_signals(tx, gw.settings.instance, now, states, failures)
        )

    async def job(self, payload: dict[str, Any]) -> None:
        """The scheduler job of one slot: evaluate, then schedule the next slot."""
        if not self.th.enabled:  # a slot left from a run with alarms on
            return
        try:
            await self.evaluate()
        finally:
            await self.schedule_next()

    async def schedule_next(self) -> None:
        """Schedule the next slot's job (every instance asks; the key makes it one job)."""
        gw = self.gw
        now = gw.clock()
        slot = slot_after(now, self.th.interval)
        old = iso(now - timedelta(hours=1))

        def work(tx: Tx) -> None:
            schedule_job(tx, JOB, iso(slot) or "", slot)
            tx.execute(
                "DELETE FROM jobs WHERE kind = ? AND state <> 'pending' AND run_at < ?", (JOB, old)
            )

        await gw.store.transact(work)
        gw.scheduler.wake()

    async def run(self) -> None:
        """Per instance, each interval: the database probe, the signals, the next slot's job.
        The first pass waits one interval: a starting gateway has nothing to alarm on yet."""
        while True:
            await asyncio.sleep(min(self.th.interval.total_seconds(), 60.0))
            try:
                await self.check_database()
                if "database" not in self.local:
                    await self.flush_signals()
                    await self.schedule_next()
            except Exception:
                log.exception("alarm monitor pass failed")


MONITOR = web.AppKey("alarm_monitor", AlarmMonitor)


def episode_json(row: Row) -> dict[str, Any]:
    """One stored episode as the API returns it."""
    return {
        "id": row["id"],
        "key": row["key"],
        "summary": row["summary"],
        "started_at": iso(_ts(row["started_at"])),
        "notified_at": iso(_ts(row["notified_at"])),
        "ended_at": iso(_ts(row["ended_at"])),
        "notices": row["notices"],
        "value": row["value"],
        "threshold": row["threshold"],
        "open": row["ended_at"] is None,
    }


def list_episodes(tx: Tx, *, open_only: bool, before: int | None, limit: int) -> list[Row]:
    """Newest first, keyset-paginated by id."""
    sql = "SELECT * FROM alarm_episodes WHERE 1 = 1"
    params: list[Any] = []
    if open_only:
        sql += " AND ended_at IS NULL"
    if before is not None:
        sql += " AND id < ?"
        params.append(before)
    return tx.all(sql + " ORDER BY id DESC LIMIT ?", (*params, limit))


def setup(gw: Gateway, probe: Probe = write_probe) -> AlarmMonitor:
    """Wire the alarms into a gateway: migration, job handler, per-instance loop."""
    gw.add_migrations("alarms", MIGRATIONS)
    monitor = AlarmMonitor(gw, probe)
    gw.app[MONITOR] = monitor
    gw.scheduler.register(JOB, monitor.job)

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        enabled = monitor.th.enabled
        task = asyncio.create_task(monitor.run(), name="alarm-monitor") if enabled else None
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    gw.app.cleanup_ctx.append(ctx)
    return monitor
