"""Body extraction after the `250`: the raw message is committed first, its body filled in later.

A message is stored with the flag `body_pending`; this worker finds pending messages in the
database (woken by the SMTP handler after each commit, and every POLL seconds otherwise), leases
a batch of them (`work_claims`, so with several instances each body is worked on by one),
parses each (`body`, one after the other in a worker thread, each under `email.parse_timeout`)
and updates each message, its attachments and the new incident's description in a transaction
job of its own — all the batch's jobs handed to the store at once, so its group commit writes
many bodies per COMMIT and a failing one is rolled back alone. It prefers a quiet SMTP
listener but never waits more than MAX_LAG for one, and a backlog is drained pass after pass
without waiting, so the lag stays bounded under sustained load. A failure is retried
in-process with capped backoff; after MAX_ATTEMPTS the raw text is stored as a degraded body.
Whatever left a body pending (a crash between the two commits, a cancelled DATA handler, a
replayed or released item) is picked up without a restart. Never decides routing, threading or
language (fixed at intake).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from adapters.email.body import Body, extract_body, fallback_text
from gateway.core import quarantine
from gateway.core.lease import LEASE, kept_alive
from gateway.core.timeutil import iso
from gateway.store.tx import Row, Tx

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
PENDING = "body_pending"
KIND = "email_body"  # work_claims kind
# Bodies per pass: as many as the raw bytes allow (at least one). bench/smtp.py, 500 x 8 KB
# messages from 50 clients: 16 per pass with a 1 s wait for quiet each left bodies 6-10 s behind.
BATCH = 128
BATCH_BYTES = 8 * 1024 * 1024
MAX_LAG = 0.1  # seconds a pass may wait for a quiet SMTP listener before it runs anyway
MAX_PARSED = 1024  # bodies parsed before their commit, kept for the worker (else parsed again)
QUIET_POLL = 0.02
POLL = 1.0  # seconds between looks for pending bodies when nothing wakes the worker
MAX_ATTEMPTS = 5  # failed extractions before the raw text is stored as a degraded body
MAX_BACKOFF = 300.0


def retry_after(attempts: int) -> timedelta:
    """Capped exponential backoff of a failed extraction: 2, 4, 8... seconds, at most 5 min."""
    return timedelta(seconds=min(MAX_BACKOFF, 2.0**attempts))


def pending_bodies(tx: Tx, now: datetime, limit: int, max_bytes: int = BATCH_BYTES) -> list[Row]:
    """Pending messages nobody holds and whose retry is due, oldest first, with their raw
    text: at most `limit`, and no more raw bytes than `max_bytes` (but always the first)."""
    rows = tx.all(
        # From the pending messages (the partial index of `bounce`, in id order) to their
        # receipts: never through every email receipt there is. CROSS JOIN keeps SQLite's
        # planner to that order (it has no statistics); PostgreSQL's chooses it by itself.
        "SELECT m.id, length(r.raw) AS size FROM messages m CROSS JOIN receipts r"
        # written literally by the dialect: matches the partial index of `bounce`
        f" WHERE {tx.json_has('m.flags', PENDING)}"
        " AND r.message_id = m.id AND r.channel = 'email'"
        " AND NOT EXISTS (SELECT 1 FROM work_claims c WHERE c.kind = ? AND c.ref = m.id"
        " AND (c.lease_until >= ? OR c.next_at > ?))"
        " ORDER BY m.id LIMIT ?",
        (KIND, iso(now), iso(now), limit),
    )
    ids: list[int] = []
    total = 0
    for row in rows:
        total += int(row["size"] or 0)
        if ids and total > max_bytes:
            break
        ids.append(int(row["id"]))
    if not ids:
        return []
    marks = ", ".join("?" * len(ids))
    raws = tx.all(
        f"SELECT message_id AS id, raw FROM receipts WHERE message_id IN ({marks})"
        " AND channel = 'email'",
        ids,
    )
    by_id = {int(r["id"]): r["raw"] for r in raws}
    return [{"id": mid, "raw": by_id.get(mid)} for mid in ids]


def renew_claims(tx: Tx, ids: Sequence[int], until: datetime) -> None:
    """Push the lease of these claimed bodies forward (a long pass keeps its batch)."""
    if ids:
        marks = ", ".join("?" * len(ids))
        tx.execute(
            f"UPDATE work_claims SET lease_until = ? WHERE kind = ? AND ref IN ({marks})",
            (iso(until), KIND, *ids),
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
    # One read for the message, its incident and the incident's first inbound message.
    msg = tx.one(
        "SELECT m.flags, m.incident_id, i.id, i.flags AS incident_flags, i.description,"
        " i.subject, i.tracking, (SELECT min(f.id) FROM messages f"
        " WHERE f.incident_id = m.incident_id AND f.direction = 'in') AS first_id"
        " FROM messages m LEFT JOIN incidents i ON i.id = m.incident_id WHERE m.id = ?",
        (message_id,),
    )
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
    assert msg["id"] is not None  # the message's incident
    incident = {**msg, "flags": msg["incident_flags"]}
    fields: dict[str, object] = {}
    iflags = [f for f in json.loads(incident["flags"] or "[]") if f != PENDING]
    if body.degraded and "parse_degraded" not in iflags:
        iflags.append("parse_degraded")
    if iflags != json.loads(incident["flags"] or "[]"):
        fields["flags"] = json.dumps(sorted(iflags))
    if msg["first_id"] == message_id:
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
        self.parsed: dict[int, Body] = {}  # bodies parsed before the commit (replies' previews)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="email-parse")  # DATA handlers
        # The worker's batches parse in a thread of their own: a DATA handler's parse is not
        # queued behind a batch, and a timeout on one side never cancels the other's parses.
        self.batch_executor = ThreadPoolExecutor(1, thread_name_prefix="email-parse-batch")
        self.task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._passes = 0
        self._last_found = 0
        self._backlog = False  # the last pass was full: the next one does not wait for quiet
        self._changed = asyncio.Condition()

    def submit(
        self, message_id: int, raw: bytes = b"", body: Body | None = None
    ) -> asyncio.Future[None]:
        """Extract this message's body soon; the future resolves once it is committed.

        The raw text is read back from the database (any pending message is found without this
        call; it only wakes the worker now). `body`, when the caller already parsed the message
        (a reply's preview), is used by this process instead of parsing it again."""
        if body is not None and len(self.parsed) < MAX_PARSED:
            self.parsed[message_id] = body
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
        self.batch_executor.shutdown(wait=False, cancel_futures=True)
        for future in self.inflight.values():
            future.cancel()
        self.inflight.clear()
        self.parsed.clear()

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
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this handler is being cancelled
            # Another handler's timeout replaced the thread while this parse was queued on it.
            return await self.parse(raw)

    async def parse_many(self, raws: Sequence[bytes]) -> list[Body | Exception]:
        """extract_body of each message, queued at once to the worker thread (no round trip
        to the event loop between two messages), each bounded by email.parse_timeout; a
        message whose parse raised gets its exception in its place."""
        loop = asyncio.get_running_loop()
        budget = self.gw.settings.email.parse_timeout.total_seconds()
        limit = self.gw.settings.email.max_attachment_bytes
        executor = self.batch_executor
        calls = [loop.run_in_executor(executor, extract_body, raw, limit) for raw in raws]
        out: list[Body | Exception] = []
        for n, call in enumerate(calls):
            try:
                # The thread parses them in order: this one's clock starts about when the
                # previous one finished, that is now.
                out.append(await asyncio.wait_for(call, timeout=budget))
            except TimeoutError:
                log.warning("email body extraction exceeded %.1fs; stored raw, degraded", budget)
                # The stuck parse keeps its thread: the rest go to a new one.
                executor.shutdown(wait=False, cancel_futures=True)
                self.batch_executor = ThreadPoolExecutor(1, thread_name_prefix="email-parse-batch")
                for rest in calls[n + 1 :]:
                    rest.cancel()
                note = "[No se pudo interpretar el mensaje a tiempo: ver el original.]"
                out.append(degraded_body(raws[n], note))
                return out + await self.parse_many(raws[n + 1 :])
            except Exception as exc:
                out.append(exc)
        return out

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
                async with asyncio.timeout(POLL):  # not wait_for: see Outbox.run
                    await self._wake.wait()

    async def run_once(self) -> int:
        """Claim and extract one batch of pending bodies; how many were claimed."""
        store = self.gw.store
        loop = asyncio.get_running_loop()
        if not self._backlog:
            # A moment without SMTP DATA first (at most MAX_LAG): the bodies that arrive
            # meanwhile join this pass. A backlog (the last pass was full) is not kept waiting.
            started = loop.time()
            while not self.quiet() and loop.time() - started < MAX_LAG:  # noqa: ASYNC110
                await asyncio.sleep(QUIET_POLL)
        rows = await store.read(lambda tx: pending_bodies(tx, self.gw.clock(), BATCH))
        self._backlog = len(rows) >= BATCH or sum(len(r["raw"] or b"") for r in rows) > (
            BATCH_BYTES // 2
        )
        if not rows:
            self._settle_futures(set())
            return 0
        now = self.gw.clock()
        ids = [int(r["id"]) for r in rows]
        claimed = await store.transact(lambda tx: quarantine.claim_work(tx, KIND, ids, now, LEASE))
        mine = [(int(r["id"]), bytes(r["raw"] or b"")) for r in rows if int(r["id"]) in claimed]
        # A batch of slow parses (each up to email.parse_timeout) may outlast one lease.
        async with kept_alive(store, self.gw.clock, renew_claims, [m for m, _ in mine], LEASE):
            results = await self._extract(mine, claimed)
        pending = await store.read(lambda tx: still_pending(tx, list(self.inflight)))
        self._settle_futures(pending)
        for tracking in results:
            if tracking:
                self.gw.after_commit({"type": "incident", "event": "message", "tracking": tracking})
        return len(claimed)

    async def _extract(
        self, mine: list[tuple[int, bytes]], claimed: dict[int, int]
    ) -> list[str | None]:
        """Parse the claimed bodies and write them; the tracking of each body written."""
        todo = [(mid, raw) for mid, raw in mine if mid not in self.parsed]
        fresh = await self.parse_many([raw for _, raw in todo])
        parsed = dict(zip([mid for mid, _ in todo], fresh, strict=True))
        writes: list[Any] = []
        for mid, raw in mine:
            body = self.parsed.pop(mid, None) or parsed[mid]
            if isinstance(body, Exception):
                attempt = claimed[mid]
                log.error(
                    "email body extraction failed for message %s (attempt %d)",
                    mid,
                    attempt,
                    exc_info=body,
                )
                if attempt < MAX_ATTEMPTS:
                    writes.append(self._retry_later(mid, attempt, f"{type(body).__name__}: {body}"))
                    continue
                body = degraded_body(raw, "[No se pudo interpretar el mensaje: ver el original.]")
            writes.append(self._store_body(mid, body, claimed[mid]))
        # All at once: the store's group commit puts many bodies in one transaction, each job
        # in its own savepoint should one fail.
        return await asyncio.gather(*writes)

    def _settle_futures(self, pending: set[int]) -> None:
        for mid in [m for m in self.parsed if m not in pending]:
            del self.parsed[mid]  # extracted meanwhile (by another instance, say)
        for mid in [m for m in self.inflight if m not in pending]:
            future = self.inflight.pop(mid)
            if not future.done():
                future.set_result(None)

    async def _store_body(self, mid: int, body: Body, attempt: int) -> str | None:
        """Commit one extracted body and release its claim; on failure, retry it later."""
        now = self.gw.clock()

        def job(tx: Tx) -> str | None:
            tracking = apply_body(tx, mid, body, now)
            quarantine.done_work(tx, KIND, mid)
            return tracking

        try:
            return await self.gw.store.transact(job)
        except Exception as exc:
            log.error("could not store the extracted body of message %s: %s", mid, exc)
            await self._retry_later(mid, attempt, f"{type(exc).__name__}: {exc}")
            return None

    async def _retry_later(self, mid: int, attempt: int, error: str) -> None:
        """Release a failed claim until its backoff has passed (returns no tracking)."""
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
