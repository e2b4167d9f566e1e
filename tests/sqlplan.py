"""Query plans for tests that hold a query to its index, on SQLite and PostgreSQL alike."""

from __future__ import annotations

from typing import Any

from gateway.store.tx import Tx


class Recorder:
    """A Tx stand-in that records the SQL (and parameters) a read function runs, written in
    the dialect of `tx` (its `json_has`) when one is given."""

    def __init__(self, tx: Tx | None = None) -> None:
        self.tx = tx
        self.sql: list[tuple[str, Any]] = []

    def json_has(self, column: str, item: str) -> str:
        assert self.tx is not None, "json_has is written by a dialect: give the Recorder a tx"
        return self.tx.json_has(column, item)

    def all(self, sql: str, params: Any = ()) -> list[Any]:
        self.sql.append((sql, params))
        return []


def query_plan(tx: Tx, sql: str, params: Any = ()) -> str:
    """The query plan's text, run inside a write transaction (`store.transact`). On PostgreSQL
    sequential scans are priced out, so the plan says whether an index can serve the query at
    all (an empty table would be scanned)."""
    if tx.dialect == "postgresql":
        tx.execute("SET LOCAL enable_seqscan = off")
        return " | ".join(r["QUERY PLAN"] for r in tx.all("EXPLAIN " + sql, params))
    return " | ".join(r["detail"] for r in tx.all("EXPLAIN QUERY PLAN " + sql, params))
