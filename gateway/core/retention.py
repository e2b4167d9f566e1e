"""Purge of old outbox and receipt rows ([retention]), never of what dedupe still needs.

Receipts are the intake's dedupe keys `(channel, provider id)`: one is deleted only when it was
processed (`state = 'done'`; shunted and pending ones stay for the operator) and is older than
`[retention] receipts`, which the configuration keeps at 7 days or more, past every provider's
retry window (SMTP senders retry for up to 5 days, RFC 5321 §4.5.4.1; Telegram for 24 h;
Twilio within minutes). Outbox rows are deleted once `sent` and older than `[retention] outbox`
(at least 1 day and the acknowledgement window that reads them); pending, held and dead rows
stay. Deletes go in small batches so no transaction holds the write lock for long.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from config.settings import RetentionSettings
from gateway.core.errors import TemporaryFailure
from gateway.core.timeutil import Clock, iso
from gateway.store.protocol import Store
from gateway.store.tx import Tx

log = logging.getLogger(__name__)
BATCH = 500


def purge_batch(tx: Tx, now: datetime, retention: RetentionSettings) -> tuple[int, int]:
    """Delete up to BATCH old sent outbox rows and BATCH old processed receipts."""
    outbox_cutoff = iso(now - retention.outbox)
    ids = [
        row["id"]
        for row in tx.all(
            "SELECT id FROM outbox WHERE status = 'sent' AND created_at < ? ORDER BY created_at"
            f" LIMIT {BATCH}",
            (outbox_cutoff,),
        )
    ]
    if ids:
        marks = ", ".join("?" * len(ids))
        tx.execute(f"DELETE FROM outbox_attempts WHERE outbox_id IN ({marks})", ids)
        tx.execute(f"DELETE FROM outbox WHERE id IN ({marks})", ids)
    receipt_cutoff = iso(now - retention.receipts)
    receipts = [
        row["id"]
        for row in tx.all(
            "SELECT id FROM receipts WHERE received_at < ? AND state = 'done'"
            f" ORDER BY received_at LIMIT {BATCH}",
            (receipt_cutoff,),
        )
    ]
    if receipts:
        marks = ", ".join("?" * len(receipts))
        tx.execute(f"DELETE FROM receipts WHERE id IN ({marks})", receipts)
    return len(ids), len(receipts)


async def purge(store: Store, now: datetime, retention: RetentionSettings) -> tuple[int, int]:
    """Purge everything past retention, batch by batch; returns (outbox rows, receipts)."""
    outbox = receipts = 0
    while True:
        done = await store.transact(lambda tx: purge_batch(tx, now, retention))
        outbox, receipts = outbox + done[0], receipts + done[1]
        if done[0] < BATCH and done[1] < BATCH:
            return outbox, receipts
        await asyncio.sleep(0)  # let intake transactions in between batches


async def run(store: Store, clock: Clock, retention: RetentionSettings) -> None:
    """Purge every `retention.interval` until cancelled; a failed pass is logged and retried."""
    while True:
        try:
            outbox, receipts = await purge(store, clock(), retention)
            if outbox or receipts:
                log.info("retention: purged %d outbox rows and %d receipts", outbox, receipts)
        except TemporaryFailure as exc:
            log.warning("retention purge postponed: %s", exc.message)
        except Exception:
            log.exception("retention purge failed")
        await asyncio.sleep(retention.interval.total_seconds())
