"""Leases on claimed work, kept alive while the work runs.

Outbox rows and scheduled jobs are claimed with a short lease (`LEASE`) so that, when the
instance holding them dies, another instance takes them over within half a minute. Work that
runs longer than a lease (a slow relay, a large download) must not be taken twice: while it
runs, `kept_alive` pushes its rows' leases forward every third of a lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from gateway.core.timeutil import Clock
from gateway.store.protocol import Store
from gateway.store.tx import Tx

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=25)
Renew = Callable[[Tx, Sequence[int], datetime], Any]


@contextlib.asynccontextmanager
async def kept_alive(
    store: Store, clock: Clock, renew: Renew, ids: Sequence[int], lease: timedelta = LEASE
) -> AsyncIterator[None]:
    """While the body runs, renew the lease of `ids` (renew(tx, ids, until)) periodically;
    the caller may remove finished ids from the list meanwhile."""
    if not ids:
        yield
        return

    async def keep() -> None:
        while True:
            await asyncio.sleep(lease.total_seconds() / 3)
            until = clock() + lease
            if not ids:
                continue
            try:
                await store.transact(lambda tx, u=until, i=list(ids): renew(tx, i, u))
            except Exception as exc:  # the lease may lapse; the work is at-least-once anyway
                log.warning("could not renew the lease of %d claimed rows: %s", len(ids), exc)

    task = asyncio.create_task(keep(), name="lease-keeper")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
