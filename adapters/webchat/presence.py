"""Which instance holds which visitor's chat sockets, kept in the database.

Several gateway instances share one database; a visitor's socket is held by one of them, an
agent's reply may be sent by another. Each instance records the visitors it holds (a row per
instance and visitor with the socket count) and refreshes its rows every `HEARTBEAT`; a row not
refreshed for `STALE` belongs to an instance that died and counts for nothing. The same rows
cap a visitor's sockets across instances. SQL only, inside the caller's transaction. Kept only
where the store is shared (PostgreSQL): an SQLite file belongs to one process, whose in-memory
hub already knows every socket, so a chat there spends no transaction on presence.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from gateway.core.timeutil import iso
from gateway.store.migration import Migration
from gateway.store.tx import Tx

HEARTBEAT = timedelta(seconds=10)
STALE = timedelta(seconds=30)
MIGRATIONS: list[Migration] = [
    Migration(
        1,
        """
        CREATE TABLE webchat_presence (
            instance TEXT NOT NULL,
            visitor_id TEXT NOT NULL,
            sockets INTEGER NOT NULL,
            seen_at TEXT NOT NULL,
            PRIMARY KEY (instance, visitor_id)
        );
        CREATE INDEX webchat_presence_visitor ON webchat_presence(visitor_id, seen_at);
        """,
        """
        CREATE TABLE webchat_presence (
            instance text NOT NULL,
            visitor_id text NOT NULL,
            sockets integer NOT NULL,
            seen_at timestamptz NOT NULL,
            PRIMARY KEY (instance, visitor_id)
        );
        CREATE INDEX webchat_presence_visitor ON webchat_presence(visitor_id, seen_at);
        """,
    )
]


def visitor_key(visitor: str) -> str:
    """The lock key `join` holds (declared to `Store.transact`)."""
    return f"webchat:visitor:{visitor}"


def join(tx: Tx, instance: str, visitor: str, now: datetime, cap: int) -> bool:
    """Count one more socket of `visitor` here, unless it holds `cap` across instances."""
    tx.lock_key(visitor_key(visitor))
    row = tx.one(
        "SELECT coalesce(sum(sockets), 0) AS n FROM webchat_presence"
        " WHERE visitor_id = ? AND seen_at > ?",
        (visitor, iso(now - STALE)),
    )
    if row is not None and int(row["n"]) >= cap:
        return False
    tx.execute(
        "INSERT INTO webchat_presence (instance, visitor_id, sockets, seen_at)"
        " VALUES (?, ?, 1, ?) ON CONFLICT (instance, visitor_id)"
        " DO UPDATE SET sockets = webchat_presence.sockets + 1, seen_at = excluded.seen_at",
        (instance, visitor, iso(now)),
    )
    return True


def leave(tx: Tx, instance: str, visitor: str) -> None:
    """One socket of `visitor` here closed."""
    tx.execute(
        "UPDATE webchat_presence SET sockets = sockets - 1 WHERE instance = ? AND visitor_id = ?",
        (instance, visitor),
    )
    tx.execute(
        "DELETE FROM webchat_presence WHERE instance = ? AND visitor_id = ? AND sockets <= 0",
        (instance, visitor),
    )


def refresh(tx: Tx, instance: str, now: datetime, counts: dict[str, int] | None = None) -> None:
    """This instance is alive; with `counts` (its open sockets per visitor), its rows are
    set to them (a close that could not be recorded is corrected). Long-dead rows go."""
    if counts is not None:
        rows = tx.all(
            "SELECT visitor_id, sockets FROM webchat_presence WHERE instance = ?", (instance,)
        )
        stored = {r["visitor_id"]: int(r["sockets"]) for r in rows}
        for visitor, n in stored.items():
            if counts.get(visitor, 0) != n:
                tx.execute(
                    "UPDATE webchat_presence SET sockets = ? WHERE instance = ? AND visitor_id = ?",
                    (counts.get(visitor, 0), instance, visitor),
                )
        tx.execute("DELETE FROM webchat_presence WHERE instance = ? AND sockets <= 0", (instance,))
    tx.execute("UPDATE webchat_presence SET seen_at = ? WHERE instance = ?", (iso(now), instance))
    tx.execute("DELETE FROM webchat_presence WHERE seen_at < ?", (iso(now - STALE * 10),))


def forget_instance(tx: Tx, instance: str) -> None:
    """At start: nothing of an earlier run of this instance is still open."""
    tx.execute("DELETE FROM webchat_presence WHERE instance = ?", (instance,))


def held_elsewhere(tx: Tx, instance: str, visitor: str, now: datetime) -> bool:
    """Whether a live instance other than this one holds a socket of `visitor`."""
    row = tx.one(
        "SELECT 1 AS yes FROM webchat_presence WHERE visitor_id = ? AND instance <> ?"
        " AND seen_at > ? AND sockets > 0 LIMIT 1",
        (visitor, instance, iso(now - STALE)),
    )
    return row is not None
