"""What `/healthz` reports about the database: can this instance read it, and write it?

`database_state` is the probe (reusable by anything that needs the same answer): "down" when a
trivial read fails, "read_only" when reads work but a tiny write does not (disk full, read-only
volume or file, an SQLite lock held past the busy timeout, PostgreSQL
`default_transaction_read_only` or a hot standby), "ok" otherwise. It never raises.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from gateway.core.errors import TemporaryFailure
from gateway.core.timeutil import iso
from gateway.store.migration import Migration
from gateway.store.protocol import Store
from gateway.store.tx import Tx

log = logging.getLogger(__name__)
OK, READ_ONLY, DOWN = "ok", "read_only", "down"
PROBE_TIMEOUT = 2.0  # seconds; a write still waiting for a lock after this is "read_only"

# Schema of the "robust_edge" component: the probe's one row, and the indexes /metrics and
# the retention purge read (so neither scans the outbox, the incidents or the receipts).
MIGRATIONS: list[Migration] = [
    Migration(
        1,
        """
        CREATE TABLE health_probe (id INTEGER PRIMARY KEY, at TEXT NOT NULL, instance TEXT);
        CREATE INDEX outbox_state ON outbox(status, created_at, channel);
        CREATE INDEX incidents_open_depth ON incidents(status, level, country);
        CREATE INDEX receipts_received ON receipts(received_at);
        """,
        """
        CREATE TABLE health_probe (id integer PRIMARY KEY, at text NOT NULL, instance text);
        CREATE INDEX outbox_state ON outbox(status, created_at, channel);
        CREATE INDEX incidents_open_depth ON incidents(status, level, country);
        CREATE INDEX receipts_received ON receipts(received_at);
        """,
    )
]


def _write_probe(tx: Tx, instance: str, now: datetime) -> None:
    # A real change of one row: PostgreSQL refuses it in a read-only transaction and on a
    # standby; SQLite needs its write lock, a writable file and disk space for the WAL frame.
    # (The table is scratch: `migrate --from` neither copies it nor counts it as data.)
    tx.execute(
        "INSERT INTO health_probe (id, at, instance) VALUES (1, ?, ?) ON CONFLICT (id)"
        " DO UPDATE SET at = excluded.at, instance = excluded.instance",
        (iso(now), instance),
    )


async def database_state(
    store: Store, instance: str, now: datetime, write_budget: float = PROBE_TIMEOUT
) -> str:
    """The database's state: OK, READ_ONLY or DOWN (see the module docstring); never raises."""
    try:
        if not await store.ping():
            return DOWN
    except Exception:  # a probe must answer, whatever the driver raised
        log.exception("database read probe failed")
        return DOWN
    try:
        await asyncio.wait_for(
            store.transact(lambda tx: _write_probe(tx, instance, now)), write_budget
        )
    except (TemporaryFailure, TimeoutError) as exc:
        log.warning("database answers reads but refuses writes: %s", exc)
        return READ_ONLY
    except Exception:
        log.exception("database write probe failed")
        return READ_ONLY
    return OK
