"""Body extraction after the `250`: the raw message is committed first, its body filled in later.

A message is stored with the flag `body_pending`; this worker parses it (`body`, in a
worker thread under `email.parse_timeout`) when the SMTP listener is quiet (or the oldest body
waited MAX_LAG), and updates the message, its attachments and the new incident's description in
one transaction. Pending messages are re-extracted at start, so a crash between the two commits
loses nothing. Never decides routing, threading or language (fixed at intake).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TYPE_CHECKING

from adapters.email.body import Body, extract_body, fallback_text
from gateway.store.tx import Tx

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
PENDING = "body_pending"
BATCH = 16
MAX_LAG = 30.0  # seconds a body may wait for a quiet moment before it is extracted anyway
QUIET_POLL = 0.02


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
    """Queue of committed messages whose body is still to be extracted."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        self.queue: asyncio.Queue[tuple[int, bytes, float]] = asyncio.Queue()
        # Set by the SMTP handler: True when no DATA is being handled. Extraction waits for it,
        # so a burst is answered at intake speed and its bodies follow (CPU goes to the 250s).
        self.quiet: Callable[[], bool] = lambda: True
        self.inflight: dict[int, asyncio.Future[None]] = {}
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="email-parse")
        self.task: asyncio.Task[None] | None = None

    def submit(self, message_id: int, raw: bytes) -> asyncio.Future[None]:
        """Extract this message's body soon; the future resolves once it is committed."""
        if message_id not in self.inflight:
            self.inflight[message_id] = asyncio.get_running_loop().create_future()
            self.queue.put_nowait((message_id, raw, asyncio.get_running_loop().time()))
        return self.inflight[message_id]

    async def start(self) -> None:
        """Start the worker and re-queue what a previous run left pending."""
        self.task = asyncio.create_task(self._run(), name="email-extract")
        rows = await self.gw.store.read(
            lambda tx: tx.all(
                "SELECT m.id, r.raw FROM messages m JOIN receipts r ON r.message_id = m.id"
                " AND r.channel = 'email'"
                # written literally by the dialect: matches the partial index of `bounce`
                f" WHERE {tx.json_has('m.flags', PENDING)} ORDER BY m.id"
            )
        )
        for row in rows:
            self.submit(int(row["id"]), bytes(row["raw"] or b""))
        if rows:
            log.info("re-extracting %d email bodies left pending", len(rows))

    async def stop(self) -> None:
        """Stop the worker (pending rows stay flagged and are taken at the next start)."""
        if self.task:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self.executor.shutdown(wait=False, cancel_futures=True)
        for future in self.inflight.values():
            future.cancel()
        self.inflight.clear()

    async def idle(self) -> None:
        """Wait until everything submitted so far is committed (tests and the benchmark)."""
        while self.inflight:
            await asyncio.gather(*list(self.inflight.values()), return_exceptions=True)

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
            note = "[No se pudo interpretar el mensaje a tiempo: ver el original.]"
            return Body(text=f"{fallback_text(raw)[:20000]}\n\n{note}", degraded=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self.queue.get()]
            while not self.quiet() and loop.time() - batch[0][2] < MAX_LAG:  # noqa: ASYNC110
                await asyncio.sleep(QUIET_POLL)
            while not self.queue.empty() and len(batch) < BATCH:
                batch.append(self.queue.get_nowait())
            try:
                trackings = await self._extract(batch)
            except Exception:  # the worker must survive anything; rows stay pending for a restart
                log.exception("email body extraction failed for %d messages", len(batch))
                trackings = []
            for mid, _, _ in batch:
                future = self.inflight.pop(mid, None)
                if future is not None and not future.done():
                    future.set_result(None)
            for tracking in trackings:
                self.gw.after_commit({"type": "incident", "event": "message", "tracking": tracking})

    async def _extract(self, batch: list[tuple[int, bytes, float]]) -> list[str]:
        bodies = [(mid, await self.parse(raw)) for mid, raw, _ in batch]
        now = self.gw.clock()

        def job(mid: int, body: Body) -> Callable[[Tx], str | None]:
            return lambda tx: apply_body(tx, mid, body, now)

        # One job per message: a bug in one body rolls back only its own SAVEPOINT.
        results = await asyncio.gather(
            *(self.gw.store.transact(job(mid, body)) for mid, body in bodies),
            return_exceptions=True,
        )
        for error in (r for r in results if isinstance(r, BaseException)):
            log.error("could not store an extracted body (retried at next start): %s", error)
        return [r for r in results if isinstance(r, str)]
