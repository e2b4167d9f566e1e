"""The queue page reads the queue index in order on SQLite, whatever statistics the planner has:
with statistics gathered before the counting index `incidents_open_depth` existed (an operator's
ANALYZE, then an upgrade), SQLite chose that index and sorted every open incident of the level
for each page (150 ms a page at 1 M incidents in bench/queue.py)."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest

from gateway.app import create_app, prepare_store
from gateway.core.services import GW
from gateway.web.api import queue_rows

pytestmark = pytest.mark.sqlite_only


class PlanTx:
    """Just enough of a Tx for `queue_rows`: its `raw` returns SQLite's plan of the query."""

    def __init__(self, conn: sqlite3.Connection, dialect: str) -> None:
        self.conn, self.dialect, self.plans = conn, dialect, []

    def raw(self, sql: str, params: Any = ()) -> list[Any]:
        self.plans.append([r[3] for r in self.conn.execute("EXPLAIN QUERY PLAN " + sql, params)])
        return []


async def test_the_queue_never_sorts_the_open_incidents(settings: Any) -> None:
    gw = create_app(settings, adapters={})[GW]
    await prepare_store(gw)
    await gw.store.close()
    path = settings.db_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path)
    conn.execute("ANALYZE")
    conn.execute("DELETE FROM sqlite_stat1")
    conn.executemany(  # a big database analyzed before the counting index came
        "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)",
        [("incidents", None, "1000000"), ("incidents", "incidents_queue", "100000 33334 1")],
    )
    conn.commit()
    conn.close()
    conn = sqlite3.connect(path)  # statistics are read when the schema is
    for team in (None, "voz"):
        generic, ours = PlanTx(conn, "postgresql"), PlanTx(conn, "sqlite")
        queue_rows(generic, level="L1", team_first=team, filters={}, limit=50)
        queue_rows(ours, level="L1", team_first=team, filters={"country": "CR"}, limit=50)
        assert any("TEMP B-TREE" in step for plan in generic.plans for step in plan)
        for plan in ours.plans:
            assert not any("TEMP B-TREE" in step for step in plan), plan
            assert any("incidents_queue" in step for step in plan), plan
    conn.close()
