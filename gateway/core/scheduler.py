"""Timed work inside the gateway: SLA breach watch, gauges, and durable scheduled jobs.

Jobs (scheduled callbacks, media fetch retries...) live in the `jobs` table keyed by
(kind, key), so scheduling the same job twice is a no-op and a restart resumes them. A running
job is leased by pushing its `run_at` forward; handlers must be idempotent (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from gateway.core.bus import Bus
from gateway.core.lease import LEASE, kept_alive
from gateway.core.metrics import Metrics
from gateway.core.timeutil import Clock, iso, parse_iso
from gateway.store.protocol import Store
from gateway.store.tx import Row, Tx

log = logging.getLogger(__name__)
JobHandler = Callable[[dict[str, Any]], Awaitable[None]]
JOB_MAX_ATTEMPTS = 5
BREACH_EVERY = 30.0
TICK = 1.0


def schedule_job(
    tx: Tx, kind: str, key: str, run_at: datetime, payload: dict[str, Any] | None = None
) -> bool:
    """Persist a job unless (kind, key) exists; True when it was new."""
    before = tx.one("SELECT 1 FROM jobs WHERE kind = ? AND key = ?", (kind, key))
    if before:
        return False
    tx.execute(
        "INSERT INTO jobs (kind, key, run_at, payload) VALUES (?, ?, ?, ?)",
        (kind, key, iso(run_at), json.dumps(payload or {}, default=str)),
    )
    return True


def mark_breaches(tx: Tx, now: datetime) -> list[Row]:
    """Flag open incidents whose attention or solution due time has passed; returns what was new.

    Only open incidents whose most urgent deadline (`urgent_due`) has passed can breach now, so
    the scan walks the queue's partial index, never the whole table (a million closed
    incidents cost nothing here). Late attention or resolution by an action is flagged by the
    action itself (gateway.core.intake.late_breaches).
    """
    stamp = iso(now)
    found: list[Row] = []
    # Conditions written literally to match the partial index incidents_queue.
    candidates = (
        " level IN ('L1', 'L2', 'L3') AND status IN ('new', 'in_progress', 'waiting_customer')"
        " AND urgent_due < ?"
    )
    attention = tx.all(
        f"UPDATE incidents SET attention_breached = 1 WHERE {candidates}"
        " AND attention_breached = 0 AND attended_at IS NULL AND attention_due < ?"
        " RETURNING id, tracking, severity",
        (stamp, stamp),
    )
    # A paused solution clock (waiting_customer) cannot breach; its due time moves on resume.
    solution = tx.all(
        f"UPDATE incidents SET solution_breached = 1 WHERE {candidates}"
        " AND solution_breached = 0 AND status <> 'waiting_customer' AND solution_due < ?"
        " RETURNING id, tracking, severity",
        (stamp, stamp),
    )
    for kind, rows in (("attention", attention), ("solution", solution)):
        for row in rows:
            tx.insert_event(row["id"], now, "system", f"{kind}_breached", {})
            found.append({**row, "kind": kind})
    return found


def _gauges(tx: Tx) -> tuple[list[Row], list[Row], list[Row]]:
    depth = tx.all(
        "SELECT level, country, count(*) AS n FROM incidents"
        " WHERE status IN ('new', 'in_progress', 'waiting_customer') GROUP BY level, country"
    )
    backlog = tx.all(
        "SELECT channel, status, count(*) AS n FROM outbox"
        " WHERE status IN ('pending', 'sending', 'dead', 'held') GROUP BY channel, status"
    )
    oldest = tx.all(
        "SELECT channel, min(created_at) AS since FROM outbox"
        " WHERE status IN ('pending', 'sending') GROUP BY channel"
    )
    return depth, backlog, oldest


def _next_job_due(tx: Tx, kinds: list[str]) -> str | None:
    marks = ", ".join("?" * len(kinds))
    row = tx.one(
        f"SELECT min(run_at) AS due FROM jobs WHERE state = 'pending' AND kind IN ({marks})",
        kinds,
    )
    return row["due"] if row else None


def _claim_jobs(tx: Tx, now: datetime, kinds: list[str]) -> list[Row]:
    marks = ", ".join("?" * len(kinds))
    rows = tx.all(
        f"SELECT * FROM jobs WHERE state = 'pending' AND run_at <= ? AND kind IN ({marks})"
        f" ORDER BY run_at LIMIT 20{tx.skip_locked}",
        (iso(now), *kinds),
    )
    for row in rows:
        tx.execute(
            "UPDATE jobs SET run_at = ?, attempts = attempts + 1 WHERE id = ?",
            (iso(now + LEASE), row["id"]),
        )
    return rows


def _renew_jobs(tx: Tx, ids: Sequence[int], until: datetime) -> None:
    marks = ", ".join("?" * len(ids))
    tx.execute(
        f"UPDATE jobs SET run_at = ? WHERE state = 'pending' AND id IN ({marks})",
        (iso(until), *ids),
    )


def _finish_job(tx: Tx, job_id: int, now: datetime, error: str | None, attempts: int) -> None:
    if error is None:
        tx.execute("UPDATE jobs SET state = 'done', last_error = NULL WHERE id = ?", (job_id,))
    elif attempts >= JOB_MAX_ATTEMPTS:
        tx.execute("UPDATE jobs SET state = 'failed', last_error = ? WHERE id = ?", (error, job_id))
    else:
        retry = now + timedelta(seconds=30 * 2**attempts)
        tx.execute(
            "UPDATE jobs SET run_at = ?, last_error = ? WHERE id = ?", (iso(retry), error, job_id)
        )


class Scheduler:
    """Breach watch every 30 s and due jobs every second."""

    def __init__(self, store: Store, clock: Clock, metrics: Metrics, bus: Bus):
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.bus = bus
        self.handlers: dict[str, JobHandler] = {}
        self._wake = asyncio.Event()
        self.breach_every = BREACH_EVERY  # seconds between breach checks

    def register(self, kind: str, handler: JobHandler) -> None:
        """Run jobs of `kind` with `handler(payload)`."""
        self.handlers[kind] = handler

    def wake(self) -> None:
        """Check for due jobs now."""
        self._wake.set()

    async def check_breaches(self) -> list[Row]:
        """Mark passed due times now; count, log and publish each new breach."""
        now = self.clock()
        found = await self.store.transact(lambda tx: mark_breaches(tx, now))
        for row in found:
            self.metrics.sla_breaches.labels(row["kind"], row["severity"]).inc()
            log.warning("SLA %s breached: %s (%s)", row["kind"], row["tracking"], row["severity"])
            self.bus.publish({"type": "incident", "event": "breach", "tracking": row["tracking"]})
        return found

    async def run_due_jobs(self) -> int:
        """Run every job due now; returns how many ran."""
        kinds = sorted(self.handlers)
        if not kinds:
            return 0
        now = self.clock()
        # A read first: claiming is a write transaction (an fsync), wasted when nothing is due.
        due = await self.store.read(lambda tx: _next_job_due(tx, kinds))
        if due is None or due > iso(now):
            return 0
        jobs = await self.store.transact(lambda tx: _claim_jobs(tx, now, kinds))
        running = [j["id"] for j in jobs]  # leases kept alive until each job is finished
        async with kept_alive(self.store, self.clock, _renew_jobs, running):
            for job in jobs:
                error = None
                try:
                    await self.handlers[job["kind"]](json.loads(job["payload"]))
                except Exception as exc:
                    log.exception("job %s/%s failed", job["kind"], job["key"])
                    error = f"{type(exc).__name__}: {exc}"[:500]
                attempts = job["attempts"] + 1
                done_at = self.clock()
                await self.store.transact(
                    lambda tx, j=job, e=error, a=attempts, d=done_at: _finish_job(
                        tx, j["id"], d, e, a
                    )
                )
                running.remove(job["id"])
        return len(jobs)

    async def refresh_gauges(self) -> None:
        """Queue depth, outbox backlog and the age of its oldest undelivered row."""
        depth, backlog, oldest = await self.store.read(_gauges)
        self.metrics.queue_depth.clear()
        for row in depth:
            self.metrics.queue_depth.labels(row["level"], row["country"]).set(row["n"])
        self.metrics.outbox_backlog.clear()
        for row in backlog:
            self.metrics.outbox_backlog.labels(row["channel"], row["status"]).set(row["n"])
        now = self.clock()
        self.metrics.outbox_oldest.clear()
        for row in oldest:
            since = parse_iso(row["since"])
            age = (now - since).total_seconds() if since else 0.0
            self.metrics.outbox_oldest.labels(row["channel"]).set(max(age, 0.0))

    async def run(self) -> None:
        """Loop until cancelled; a failing pass is logged and the loop goes on.

        Breach marking runs in its own task: a slow job (a media download, a Twilio call)
        never delays it."""
        breaches = asyncio.create_task(self.watch_breaches(), name="sla-breaches")
        try:
            while True:
                try:
                    await self.run_due_jobs()
                except Exception:
                    log.exception("scheduler pass failed")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=TICK)
        finally:
            breaches.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await breaches

    async def watch_breaches(self) -> None:
        """Mark breaches every `breach_every` seconds, whatever the jobs are doing."""
        while True:
            try:
                await self.check_breaches()
            except Exception:
                log.exception("SLA breach check failed")
            await asyncio.sleep(self.breach_every)
