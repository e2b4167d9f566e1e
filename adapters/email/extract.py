"""Body extraction after the `250`: the raw message is committed first, its body filled in later.

A message is stored with the flag `body_pending`; this worker finds pending messages in the
database (woken by the SMTP handler after each commit, and every POLL seconds otherwise), leases
each one (`work_claims`, so with several instances each body is worked on by one), parses it
(`body`, in a worker thread under `email.parse_timeout`) and updates the message, its
attachments and the new incident's description in one transaction. It prefers a quiet SMTP
listener but never waits more than MAX_LAG for one, so the lag stays bounded under sustained
load. A failure is retried in-process with capped backoff; after MAX_ATTEMPTS the raw text is
stored as a degraded body. Whatever left a body pending (a crash between the two commits, a
cancelled DATA handler, a replayed or released item) is picked up without a restart. Never
decides routing, threading or language (fixed at intake).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from adapters.email.body import Body, extract_body, fallback_text
from gateway.core import quarantine
from gateway.core.lease import LEASE
from gateway.core.timeutil import iso
from gateway.store.tx import Row, Tx

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
PENDING = "body_pending"
KIND = "email_body"  # work_claims kind
BATCH = 16
MAX_LAG = 1.0  # seconds a batch may wait for a quiet SMTP listener before it is extracted anyway
QUIET_POLL = 0.02
POLL = 1.0  # seconds between looks for pending bodies when nothing wakes the worker
MAX_ATTEMPTS = 5  # failed extractions before the raw text is stored as a degraded body
MAX_BACKOFF = 300.0


def retry_after(attempts: int) -> timedelta:
    """Capped exponential backoff of a failed extraction: 2, 4, 8... seconds, at most 5 min."""
    return timedelta(seconds=min(MAX_BACKOFF, 2.0**attempts))


def pending_bodies(tx: Tx, now: datetime, limit: int) -> list[Row]:
    """Pending messages nobody holds and whose retry is due, oldest first."""
    return tx.all(
        "SELECT m.id, r.raw FROM messages m JOIN receipts r ON r.message_id = m.id"
        " AND r.channel = 'email'"
        # written literally by the dialect: matches the partial index of `bounce`
        f" WHERE {tx.json_has('m.flags', PENDING)}"
        " AND NOT EXISTS (SELECT 1 FROM work_claims c WHERE c.kind = ? AND c.ref = m.id"
        " AND (c.lease_until >= ? OR c.next_at > ?))"
        " ORDER BY m.id LIMIT ?",
        (KIND, iso(now), iso(now), limit),
    )


def still_pending(tx: Tx, ids: list[int]) -> set[int]:
    """Which of these messages still wait for their body."""
    if not ids:
        return set()
    marks = ", ".join("?" * len(ids))
    rows = tx.all(
        f"SELECT id FROM messages WHERE id IN ({marks}) AND {tx.json_has('flags', PENDING)}",
        ids,
    )
    return {int(r["id"]) for r in rows}


def apply_body(tx: Tx, message_id: int, body: Body, now: datetime) -> str | None:
    """Fill in one pending message (idempotent); returns the incident's tracking number."""
    msg = tx.one("SELECT id, incident_id, flags FROM messages WHERE id = ?", (message_id,))
    if msg is None or PENDING not in json.loads(msg["flags"] or "[]"):
        return None
    flags = [f for f in json.loads(msg["flags"]) if f != PENDING]
    if body.degraded:
        flags.append("parse_degraded")
    tx.execute(
        "UPDATE messages SET body = ?, html = ?, flags = ? WHERE id = ?",
        (body.text, body.html, json.dumps(flags), message_id),
    )
    tx.insert_attachments(message_id, body.attachments)
    incident = tx.incident(msg["incident_id"])
    assert incident is not None
    first = tx.one(
        "SELECT min(id) AS id FROM messages WHERE incident_id = ? AND direction = 'in'",
        (incident["id"],),
    )
    fields: dict[str, object] = {}
    iflags = [f for f in json.loads(incident["flags"] or "[]") if f != PENDING]
    if body.degraded and "parse_degraded" not in iflags:
        iflags.append("parse_degraded")
    if iflags != json.loads(incident["flags"] or "[]"):
        fields["flags"] = json.dumps(sorted(iflags))
    if first and first["id"] == message_id:
        if not incident["description"]:
            fields["description"] = body.text
        if not (incident["subject"] or "").strip():
            lines = (ln.strip() for ln in body.text.splitlines() if ln.strip())
            fields["subject"] = next(lines, "")[:200]
    if fields:
        tx.update_incident(incident["id"], fields)
    if body.degraded:
        tx.insert_event(incident["id"], now, "system", "parse_degraded", {"message_id": message_id})
    return str(incident["tracking"])


class BodyExtractor:
    """The worker that fills in pending bodies, from the database (durable, shared)."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        # Set by the SMTP handler: True when no DATA is being handled. Extraction prefers it,
        # so a burst is answered at intake speed and its bodies follow within MAX_LAG.
        self.quiet: Callable[[], bool] = lambda: True
        self.inflight: dict[int, asyncio.Future[None]] = {}
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="email-parse")
        self.task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._passes = 0
        self._last_found = 0
        self._changed = asyncio.Condition()

    def submit(self, message_id: int, raw: bytes = b"") -> asyncio.Future[None]:
        """Extract this message's body soon; the future resolves once it is committed.

        The body is read back from the database (any pending message is found without this
        call; it only wakes the worker now)."""
        future = self.inflight.get(message_id)
        if future is None:
            future = self.inflight[message_id] = asyncio.get_running_loop().create_future()
        self.wake()
        return future

    def wake(self) -> None:
        """Look for pending bodies now."""
        self._wake.set()

    async def start(self) -> None:
        """Start the worker; its first pass takes what a previous run left pending."""
        self.task = asyncio.create_task(self._run(), name="email-extract")

    async def stop(self) -> None:
        """Stop the worker (pending rows stay flagged; any instance takes them later)."""
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
        self.executor.shutdown(wait=False, cancel_futures=True)
        for future in self.inflight.values():
            future.cancel()
        self.inflight.clear()

    async def idle(self) -> None:
        """Wait until a pass finds nothing left to extract (tests and the benchmark)."""
        while self.task is not None and not self.task.done():
            async with self._changed:
                seen = self._passes
                self.wake()
                await self._changed.wait_for(lambda s=seen: self._passes > s + 1)
                if self._last_found == 0:
                    return

    async def parse(self, raw: bytes) -> Body:
        """extract_body in the worker thread, bounded by email.parse_timeout."""
        loop = asyncio.get_running_loop()
        budget = self.gw.settings.email.parse_timeout.total_seconds()
        limit = self.gw.settings.email.max_attachment_bytes
        try:
            call = loop.run_in_executor(self.executor, extract_body, raw, limit)
            return await asyncio.wait_for(call, timeout=budget)
        except TimeoutError:
            # The stuck parse cannot be interrupted: leave its thread to finish and use a new one.
            log.warning("email body extraction exceeded %.1fs; stored raw, degraded", budget)
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="email-parse")
            return degraded_body(
                raw, "[No se pudo interpretar el mensaje a tiempo: ver el original.]"
            )

    async def _run(self) -> None:
        while True:
            found = 0
            try:
                found = await self.run_once()
            except Exception:  # the worker must survive anything; rows stay pending, retried
                log.exception("email body extraction pass failed")
            async with self._changed:
                self._passes += 1
                self._last_found = found
                self._changed.notify_all()
            if found:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=POLL)

    async def run_once(self) -> int:
        """Claim and extract one batch of pending bodies; how many were claimed."""
        store = self.gw.store
        rows = await store.read(lambda tx: pending_bodies(tx, self.gw.clock(), BATCH))
        if not rows:
            self._settle_futures(set())
            return 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not self.quiet() and loop.time() - started < MAX_LAG:  # noqa: ASYNC110
            await asyncio.sleep(QUIET_POLL)
        now = self.gw.clock()
        ids = [int(r["id"]) for r in rows]
        claimed = await store.transact(lambda tx: quarantine.claim_work(tx, KIND, ids, now, LEASE))
        trackings: list[str] = []
        for row in rows:
            mid = int(row["id"])
            if mid in claimed:
                tracking = await self._one(mid, bytes(row["raw"] or b""), claimed[mid])
                if tracking:
                    trackings.append(tracking)
        pending = await store.read(lambda tx: still_pending(tx, list(self.inflight)))
        self._settle_futures(pending)
        for tracking in trackings:
            self.gw.after_commit({"type": "incident", "event": "message", "tracking": tracking})
        return len(claimed)

    def _settle_futures(self, pending: set[int]) -> None:
        for mid in [m for m in self.inflight if m not in pending]:
            future = self.inflight.pop(mid)
            if not future.done():
                future.set_result(None)

    async def _one(self, mid: int, raw: bytes, attempt: int) -> str | None:
        store = self.gw.store
        try:
            body = await self.parse(raw)
        except Exception as exc:
            log.exception("email body extraction failed for message %s (attempt %d)", mid, attempt)
            if attempt < MAX_ATTEMPTS:
                await self._retry_later(mid, attempt, f"{type(exc).__name__}: {exc}")
                return None
            body = degraded_body(raw, "[No se pudo interpretar el mensaje: ver el original.]")
        now = self.gw.clock()

        def job(tx: Tx) -> str | None:
            tracking = apply_body(tx, mid, body, now)
            quarantine.done_work(tx, KIND, mid)
            return tracking

        try:
            return await store.transact(job)
        except Exception as exc:
            log.error("could not store the extracted body of message %s: %s", mid, exc)
            await self._retry_later(mid, attempt, f"{type(exc).__name__}: {exc}")
            return None

    async def _retry_later(self, mid: int, attempt: int, error: str) -> None:
        now = self.gw.clock()
        at = now + retry_after(attempt)
        try:
            await self.gw.store.transact(
                lambda tx: quarantine.fail_work(tx, KIND, mid, now, at, error)
            )
        except Exception as exc:  # its lease runs out instead; retried then
            log.warning("could not schedule the retry of message %s: %s", mid, exc)


def degraded_body(raw: bytes, note: str) -> Body:
    """The raw text as the body, flagged degraded, when parsing gave up."""
    return Body(text=f"{fallback_text(raw)[:20000]}\n\n{note}", degraded=True)
