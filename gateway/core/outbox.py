"""The outbox worker: delivers queued rows through per-channel senders registered by adapters.

Rows are leased (status 'sending' with a lease of 25 s, renewed while the send runs) before
sending, so a crashed worker's rows are taken again after the lease, by any instance;
delivery is at-least-once. Failures retry with capped exponential
backoff and full jitter; permanent failures or too many attempts dead-letter the row with its
reason, visible on the incident. One failing row never stops the loop.

No stuck work: each send is bounded by SEND_TIMEOUT (below the lease, so a hung provider call is
a retryable failure before anyone else could take the row), and each channel has at most
PER_CHANNEL sends in flight, so a channel whose provider hangs never holds the others'. The
attempt is counted when the row is claimed, before the send: a row whose send crashed the
process is seen again with its attempts spent and dead-letters instead of looping for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from config.settings import OutboxSettings
from gateway.core.bus import Bus
from gateway.core.lease import LEASE, kept_alive
from gateway.core.model import OutboundItem, SendError
from gateway.core.timeutil import Clock, iso, parse_iso
from gateway.store.protocol import Store
from gateway.store.tx import Row, Tx

log = logging.getLogger(__name__)
Sender = Callable[[OutboundItem], Awaitable[str | None]]
POLL = 1.0
SEND_TIMEOUT = timedelta(seconds=20)  # one provider call; below the 25 s lease
PER_CHANNEL = 32  # sends in flight per channel (bounded by the provider, not by our commits)
CRASHED = "the gateway stopped while sending this row ({n} attempts); not retried"


def retry_delay(attempts: int, settings: OutboxSettings, rnd: random.Random) -> timedelta:
    """Capped exponential backoff with jitter: half to all of the capped delay."""
    ceiling = min(settings.max_delay, settings.base_delay * (2 ** max(attempts - 1, 0)))
    return ceiling * (0.5 + rnd.random() / 2)


def _item(row: Row, tracking: str | None) -> OutboundItem:
    return OutboundItem(
        id=row["id"],
        channel=row["channel"],
        kind=row["kind"],
        recipient=row["recipient"],
        incident_id=row["incident_id"],
        tracking=tracking,
        message_id=row["message_id"],
        payload=json.loads(row["payload"] or "{}"),
        attempts=row["attempts"],
    )


def _claim(
    tx: Tx,
    now: datetime,
    free: dict[str, int],
    lease: timedelta = LEASE,
    max_attempts: int | None = None,
) -> list[OutboundItem]:
    """Lease due rows, at most `free[channel]` per channel, counting the attempt now.

    A row that comes back with its attempts spent was being sent when its worker died (each
    failure that spends the last attempt dead-letters at once): it is dead-lettered here.
    """
    items = []
    for channel, limit in free.items():
        if limit <= 0:
            continue
        for row in tx.claim_outbox(now, now + lease, [channel], limit):
            if max_attempts is not None and row["attempts"] >= max_attempts:
                item = _item(row, None)
                error = SendError(CRASHED.format(n=row["attempts"]), permanent=True)
                _record(tx, item, now, provider_id=None, error=error, next_at=None)
                log.error("outbox row %s dead-lettered: %s", item.id, error.reason)
                continue
            tx.execute("UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (row["id"],))
            inc = tx.incident(row["incident_id"]) if row["incident_id"] else None
            item = _item({**row, "attempts": row["attempts"] + 1}, inc["tracking"] if inc else None)
            items.append(item)
    return items


def _outlook(tx: Tx, channels: Sequence[str], now: str) -> tuple[str | None, bool]:
    """When the next pending row of `channels` is due, and whether a claim is worth its write
    transaction now: a row is due, or a row leased by a worker that died is due again."""
    due = tx.next_outbox_due(channels)
    if due is not None and due <= now:
        return due, True
    marks = ", ".join("?" * len(channels))
    expired = tx.one(
        "SELECT 1 FROM outbox WHERE status = 'sending' AND lease_until < ?"
        f" AND channel IN ({marks}) LIMIT 1",
        (now, *channels),
    )
    return due, expired is not None


def _renew(tx: Tx, ids: Sequence[int], until: datetime) -> None:
    marks = ", ".join("?" * len(ids))
    tx.execute(
        f"UPDATE outbox SET lease_until = ? WHERE status = 'sending' AND id IN ({marks})",
        (iso(until), *ids),
    )


def _record(
    tx: Tx,
    item: OutboundItem,
    now: datetime,
    *,
    provider_id: str | None,
    error: SendError | None,
    next_at: datetime | None,
) -> None:
    attempts = item.attempts  # counted when the row was claimed
    tx.outbox_attempt(item.id, now, error is None, error.reason if error else None)
    if error is None:
        tx.execute(
            "UPDATE outbox SET status = 'sent', attempts = ?, sent_at = ?, provider_id = ?,"
            " lease_until = NULL, last_error = NULL WHERE id = ?",
            (attempts, iso(now), provider_id, item.id),
        )
        if item.message_id:
            tx.execute(
                "UPDATE messages SET delivery_status = 'sent',"
                " external_ref = coalesce(external_ref, ?) WHERE id = ?",
                (provider_id, item.message_id),
            )
        return
    if next_at is not None:
        tx.execute(
            "UPDATE outbox SET status = 'pending', attempts = ?, next_attempt_at = ?,"
            " lease_until = NULL, last_error = ? WHERE id = ?",
            (attempts, iso(next_at), error.reason, item.id),
        )
        return
    tx.execute(
        "UPDATE outbox SET status = 'dead', attempts = ?, lease_until = NULL, last_error = ?"
        " WHERE id = ?",
        (attempts, error.reason, item.id),
    )
    if item.message_id:
        tx.execute(
            "UPDATE messages SET delivery_status = 'failed', delivery_error = ? WHERE id = ?",
            (error.reason, item.message_id),
        )
    if item.incident_id:
        tx.insert_event(
            item.incident_id,
            now,
            "system",
            "delivery_failed",
            {
                "channel": item.channel,
                "kind": item.kind,
                "reason": error.reason,
                "attempts": attempts,
            },
        )


class Outbox:
    """Runs registered senders over due outbox rows until stopped."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        settings: OutboxSettings,
        bus: Bus | None = None,
        metrics: Any = None,
        seed: int | None = None,
        lease: timedelta = LEASE,
        send_timeout: timedelta = SEND_TIMEOUT,
        per_channel: int = PER_CHANNEL,
    ):
        self.store = store
        self.lease = lease  # how long a claimed row is this worker's (renewed while sending)
        self.clock = clock
        self.settings = settings
        self.metrics = metrics
        self.senders: dict[str, Sender] = {}
        self._ack_text: set[str] = set()  # channels whose sender reads payload["text"] of acks
        self.render_ack: Callable[[dict[str, Any]], str] | None = None
        self._wake = asyncio.Event()
        self._rnd = random.Random(seed)
        self._bus = bus
        self.send_timeout = send_timeout
        self.per_channel = per_channel
        self._busy: dict[str, set[int]] = {}  # channel -> ids of rows being sent here
        self._inflight: list[int] = []  # every row being sent here (leases renewed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._keeper: asyncio.Task[None] | None = None

    def register(self, channel: str, sender: Sender, *, ack_text: bool = True) -> None:
        """Deliver rows of `channel` with `sender`; rows of channels without one wait.

        With `ack_text`, acknowledgements reach the sender with payload["text"] rendered from
        the customer templates; a sender that builds its own message (email) opts out.
        """
        self.senders[channel] = sender
        if ack_text:
            self._ack_text.add(channel)
        else:
            self._ack_text.discard(channel)
        self.wake()

    def wake(self) -> None:
        """Look for due rows now (called after intake or an agent reply commits)."""
        self._wake.set()

    async def drain_once(self, limit: int = 50) -> int:
        """Send every row due now (within the channels' free slots) and wait for those sends;
        returns how many were attempted."""
        tasks, _ = await self._pump(limit)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        return len(tasks)

    def _free(self) -> dict[str, int]:
        return {
            c: self.per_channel - len(self._busy.get(c, ()))
            for c in sorted(self.senders)
            if len(self._busy.get(c, ())) < self.per_channel
        }

    async def _pump(self, limit: int = 50) -> tuple[list[asyncio.Task[None]], str | None]:
        """Claim due rows of channels with free slots and start their sends; returns the sends
        and when the next pending row of those channels is due (as read by this pass)."""
        free = {c: min(n, limit) for c, n in self._free().items()}
        if not free:
            return [], None
        channels = sorted(free)
        now = self.clock()
        # A read first: claiming is a write transaction (an fsync), wasted when nothing is due.
        # One read answers both questions (each read is a hop to the database's thread).
        due, claim = await self.store.read(lambda tx: _outlook(tx, channels, iso(now)))
        if not claim:
            return [], due
        lease, most = self.lease, self.settings.max_attempts
        items = await self.store.transact(lambda tx: _claim(tx, now, free, lease, most))
        tasks = []
        for item in items:
            self._busy.setdefault(item.channel, set()).add(item.id)
            self._inflight.append(item.id)
            task = asyncio.create_task(self._send(item), name=f"outbox-{item.channel}-{item.id}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            tasks.append(task)
        if items and (self._keeper is None or self._keeper.done()):
            self._keeper = asyncio.create_task(self._keep_leases(), name="outbox-leases")
        return tasks, due

    async def _keep_leases(self) -> None:
        async with kept_alive(self.store, self.clock, _renew, self._inflight, self.lease):
            while self._inflight:  # noqa: ASYNC110 - a list the sends shrink
                await asyncio.sleep(self.lease.total_seconds() / 6)

    def _release_slot(self, item: OutboundItem) -> None:
        busy = self._busy.get(item.channel, set())
        if item.id in busy:
            busy.discard(item.id)
            self.wake()  # a slot is free

    async def _send(self, item: OutboundItem) -> None:
        try:
            await self._deliver(item)
        finally:
            self._release_slot(item)  # also when the send never started
            with contextlib.suppress(ValueError):
                self._inflight.remove(item.id)
            if not self._inflight and self._keeper is not None:
                self._keeper.cancel()

    async def _deliver(self, item: OutboundItem) -> None:
        sender = self.senders[item.channel]
        provider_id: str | None = None
        error: SendError | None = None
        try:
            wants_text = item.kind == "ack" and item.channel in self._ack_text
            if wants_text and "text" not in item.payload and self.render_ack is not None:
                item.payload["text"] = self.render_ack(item.payload)
            budget = self.send_timeout.total_seconds()
            try:
                # asyncio.timeout, not wait_for: no extra task, so a cancellation at shutdown
                # reaches the sender directly.
                async with asyncio.timeout(budget):
                    provider_id = await sender(item)
            except TimeoutError:
                raise SendError(f"no answer from the provider within {budget:g} s") from None
            finally:
                # The provider is done with this row: its slot serves the next one while the
                # result is committed (the row stays leased until then).
                self._release_slot(item)
        except SendError as exc:
            error = exc
        except Exception as exc:  # a sender bug is one row's failure, not the worker's
            log.exception("sender %s failed on outbox row %s", item.channel, item.id)
            error = SendError(f"{type(exc).__name__}: {exc}"[:500])
        now = self.clock()
        next_at = None
        if error is not None and not error.permanent and item.attempts < self.settings.max_attempts:
            delay = retry_delay(item.attempts, self.settings, self._rnd)
            if error.retry_after is not None:
                delay = max(delay, timedelta(seconds=error.retry_after))
            next_at = now + delay
        if error is not None:
            level = logging.WARNING if next_at else logging.ERROR
            log.log(
                level,
                "outbox %s %s row %s (%s): %s",
                item.channel,
                item.kind,
                item.id,
                item.tracking,
                error.reason,
            )
        if self.metrics is not None:
            result = "sent" if error is None else ("retry" if next_at else "dead")
            self.metrics.outbox_result(item.channel, result)
        try:
            await self.store.transact(
                lambda tx: _record(
                    tx, item, now, provider_id=provider_id, error=error, next_at=next_at
                )
            )
        except Exception:
            log.exception("could not record outbox row %s; its lease will expire", item.id)
        if self._bus is not None and item.incident_id:
            self._bus.publish({"type": "delivery", "tracking": item.tracking, "id": item.id})

    async def run(self) -> None:
        """Loop forever: start sends of due rows, then sleep until woken or the next row is due."""
        try:
            while True:
                self._wake.clear()  # a wake from here on (an intake's commit) means look again
                due: str | None = None
                try:
                    started, due = await self._pump()
                except Exception:
                    log.exception("outbox pass failed")
                    started = []
                if started:
                    continue
                timeout = POLL
                if (next_at := parse_iso(due)) is not None:
                    timeout = min(POLL, max(0.0, (next_at - self.clock()).total_seconds()))
                with contextlib.suppress(TimeoutError):
                    # Not asyncio.wait_for: on Python 3.11 it returns the result and swallows a
                    # cancellation that arrives as the event is set (gh-86296), and the worker
                    # then outlives its shutdown; asyncio.timeout keeps the cancellation.
                    async with asyncio.timeout(max(timeout, 0.01)):
                        await self._wake.wait()
        finally:
            # Sends in flight stop with the worker; their rows' leases expire and any instance
            # takes them again (the attempt is already counted).
            for task in [*self._tasks, *([self._keeper] if self._keeper else [])]:
                task.cancel()
            if self._tasks:  # a sender that ignores cancellation must not hold the shutdown
                await asyncio.wait(list(self._tasks), timeout=5)
