"""The queue query is served by the partial index on open incidents (no full scan, no sort)."""

from __future__ import annotations

import sqlite3

from gateway.store.schema import CORE
from gateway.store.sqlite import SqliteTx, _statements
from gateway.web.api import queue_rows


def _plan(conn: sqlite3.Connection, **kw) -> str:
    captured: list[tuple[str, tuple]] = []

    class Spy(SqliteTx):
        def raw(self, sql, params=()):
            captured.append((sql, tuple(params)))
            return super().raw(sql, params)

    queue_rows(Spy(conn), **kw)
    sql, params = captured[0]
    rows = conn.execute("EXPLAIN QUERY PLAN " + sql, params).fetchall()
    return " | ".join(str(r[3]) for r in rows)


def test_queue_query_uses_the_partial_index() -> None:
    conn = sqlite3.connect(":memory:")
    conn.row_factory = sqlite3.Row
    for statement in _statements(CORE[0].sqlite):
        conn.execute(statement)
    plan = _plan(conn, level="L1", team_first=None, filters={}, limit=50)
    assert "USING INDEX incidents_queue" in plan and "TEMP B-TREE" not in plan, plan
    assert "SEARCH c USING INTEGER PRIMARY KEY" in plan, plan  # contact joined by its key
    filtered = _plan(conn, level="L1", team_first=None, filters={"channel": "email"}, limit=50)
    assert "USING INDEX incidents_queue" in filtered, filtered
    team = _plan(conn, level="L2", team_first="redes", filters={}, limit=50)
    assert "USING INDEX incidents_queue" in team and "TEMP B-TREE" not in team, team
