"""`python -m gateway migrate --from sqlite:///path.db`: an SQLite gateway's data into an empty
PostgreSQL database, verified.

Both databases are first brought to the latest schema (the same migrations as `migrate`); then
every table is copied in foreign-key order with COPY, keeping ids, the identity sequences and
the tracking-number sequence are moved past the highest copied value (no number is ever handed
out twice), and each table is verified: its row count and a checksum over its rows in a
canonical form (timestamps as UTC instants, JSON by value, bytes by content) must be equal on
both sides. Blocking: it runs in a worker thread of the command.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from gateway.core.timeutil import iso
from gateway.core.tracking import parse_tracking
from gateway.store.postgres import configure_session, connect_kwargs

CHUNK = 2000
Report = Callable[[str], None]


class TransferError(Exception):
    """The copy cannot be made (a target that is not empty, a schema mismatch)."""


@dataclass(frozen=True)
class TableCheck:
    """One table's verification: rows and checksum on each side."""

    table: str
    source_rows: int
    target_rows: int
    source_sum: str
    target_sum: str

    @property
    def ok(self) -> bool:
        return self.source_rows == self.target_rows and self.source_sum == self.target_sum


def copy_sqlite_to_postgres(
    sqlite_file: str, pg_url: str, report: Report = print
) -> list[TableCheck]:
    """Copy every table, then verify each; raises TransferError before writing if the target
    holds any data."""
    source = sqlite3.connect(f"file:{sqlite_file}?mode=ro", uri=True)
    try:
        with psycopg.connect(pg_url, **connect_kwargs("migrate-from")) as target:
            configure_session(target)
            tables = _tables_in_order(target)
            _require_empty(target, tables)
            kinds = {table: _column_types(target, table) for table in tables}
            with target.transaction():
                for table in tables:
                    copied = _copy_table(source, target, table, kinds[table])
                    report(f"copied {table}: {copied} rows")
                _move_sequences(source, target, [t for t in tables if "id" in kinds[t]])
            return [_verify(source, target, table, kinds[table]) for table in tables]
    finally:
        source.close()


def _tables_in_order(conn: psycopg.Connection[Any]) -> list[str]:
    """The gateway's tables, each after the tables its foreign keys point to."""
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        " AND table_type = 'BASE TABLE'"
        " AND table_name NOT IN ('schema_migrations', 'health_probe')"  # health_probe: scratch
    ).fetchall()
    tables = sorted(r["table_name"] for r in rows)  # type: ignore[call-overload]
    edges = conn.execute(
        "SELECT tc.table_name AS child, ccu.table_name AS parent"
        " FROM information_schema.table_constraints tc"
        " JOIN information_schema.constraint_column_usage ccu"
        " ON ccu.constraint_name = tc.constraint_name AND ccu.table_schema = tc.table_schema"
        " WHERE tc.constraint_type = 'FOREIGN KEY' AND tc.table_schema = 'public'"
    ).fetchall()
    parents: dict[str, set[str]] = {t: set() for t in tables}
    for edge in edges:
        child, parent = edge["child"], edge["parent"]  # type: ignore[call-overload]
        if child in parents and parent != child:
            parents[child].add(parent)
    ordered: list[str] = []
    while parents:
        ready = sorted(t for t, deps in parents.items() if deps <= set(ordered))
        if not ready:
            raise TransferError(f"foreign keys form a cycle among {sorted(parents)}")
        ordered += ready
        for table in ready:
            del parents[table]
    return ordered


def _require_empty(conn: psycopg.Connection[Any], tables: list[str]) -> None:
    for table in tables:
        row = conn.execute(f"SELECT count(*) AS n FROM {table}").fetchone()
        rows = int(row["n"]) if row else 0  # type: ignore[call-overload]
        if rows:
            raise TransferError(f"the PostgreSQL database is not empty: {table} has {rows} rows")


def _column_types(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
    rows = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position",
        (table,),
    ).fetchall()
    return {r["column_name"]: r["data_type"] for r in rows}  # type: ignore[call-overload]


def _source_columns(source: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in source.execute(f"PRAGMA table_info({table})")]


def _copy_table(
    source: sqlite3.Connection, target: psycopg.Connection[Any], table: str, kinds: dict[str, str]
) -> int:
    columns = [c for c in _source_columns(source, table) if c in kinds]
    if not columns:
        return 0  # a table SQLite does not have (nothing to copy)
    names = ", ".join(columns)
    copied = 0
    binary = [i for i, c in enumerate(columns) if kinds[c] == "bytea"]
    with target.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for row in _rows(source, f"SELECT {names} FROM {table}"):
            if binary:  # SQLite may hold text in a BLOB column: bytea wants its bytes
                values = list(row)
                for i in binary:
                    if isinstance(values[i], str):
                        values[i] = values[i].encode()
                row = tuple(values)
            copy.write_row(row)
            copied += 1
    return copied


def _rows(source: sqlite3.Connection, sql: str) -> Iterator[tuple[Any, ...]]:
    cursor = source.execute(sql)
    while chunk := cursor.fetchmany(CHUNK):
        yield from chunk


def _move_sequences(
    source: sqlite3.Connection, target: psycopg.Connection[Any], tables: list[str]
) -> None:
    """Identity sequences (of `tables`, those with an id) past the copied ids; the tracking
    sequence past every number used."""
    for table in tables:
        row = target.execute("SELECT pg_get_serial_sequence(%s, 'id') AS seq", (table,)).fetchone()
        sequence = row["seq"] if row else None  # type: ignore[call-overload]
        if sequence:
            target.execute(
                f"SELECT setval(%s, coalesce((SELECT max(id) FROM {table}), 0) + 1, false)",
                (sequence,),
            )
    highest = 0
    with_serial = source.execute(
        "SELECT seq FROM sqlite_sequence WHERE name = 'tracking_serial'"
    ).fetchone()
    if with_serial:
        highest = int(with_serial[0])
    for (tracking,) in source.execute("SELECT tracking FROM incidents"):
        if parse_tracking(tracking):
            highest = max(highest, int(tracking.split("-")[1]))
    target.execute("SELECT setval('tracking_serial', %s, true)", (max(highest, 1),))
    if highest == 0:
        target.execute("SELECT setval('tracking_serial', 1, false)")


def _canonical(value: Any, kind: str) -> Any:
    """One value as both databases agree on it."""
    if value is None:
        return None
    if kind.startswith("timestamp"):
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return iso(moment)
    if kind in ("json", "jsonb"):
        return json.loads(value) if isinstance(value, str | bytes) else value
    if kind == "bytea" or isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, int | float | str):
        return value
    return str(value)


def _checksum(rows: Iterable[Iterable[Any]], kinds: list[str]) -> tuple[int, str]:
    """(row count, checksum): the sum of every canonical row's hash, so the two databases'
    different sort orders (collations) do not matter."""
    total = 0
    count = 0
    for row in rows:
        canonical = [_canonical(v, k) for v, k in zip(row, kinds, strict=True)]
        line = json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()
        total = (total + int.from_bytes(hashlib.sha256(line).digest()[:8], "big")) % 2**64
        count += 1
    return count, f"{total:016x}"


def _verify(
    source: sqlite3.Connection, target: psycopg.Connection[Any], table: str, kinds: dict[str, str]
) -> TableCheck:
    columns = [c for c in _source_columns(source, table) if c in kinds]
    if not columns:
        count = target.execute(f"SELECT count(*) AS n FROM {table}").fetchone()
        n = int(count["n"]) if count else 0  # type: ignore[call-overload]
        return TableCheck(table, 0, n, "-", "-" if n == 0 else "?")
    names = ", ".join(columns)
    types = [kinds[c] for c in columns]
    source_rows, source_sum = _checksum(_rows(source, f"SELECT {names} FROM {table}"), types)
    with target.cursor(row_factory=psycopg.rows.tuple_row) as cursor:
        cursor.execute(f"SELECT {names} FROM {table}")
        target_rows, target_sum = _checksum(iter(cursor), types)
    return TableCheck(table, source_rows, target_rows, source_sum, target_sum)
