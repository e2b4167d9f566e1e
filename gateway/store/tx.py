"""The transaction's SQL (`Tx`): plain synchronous methods over one database connection.

`Tx` runs inside the store's database thread, within a transaction the store opened: it never
commits, never awaits and holds no decision logic — the intake and the life cycle decide, this
module only reads and writes rows. SQL is written once, in the dialect both databases speak
(`?` placeholders, `ON CONFLICT`, `RETURNING`); the few places where SQLite and PostgreSQL
differ are the primitives each subclass implements (`SqliteTx` here, `PgTx` in
`gateway.store.postgres`): fetching rows, inserting with an id, tracking serials, row claims and
key locks. Timestamps travel as `iso()` text and JSON as text on both, so callers never see
which database answered.
"""

from __future__ import annotations

import contextlib
import secrets
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson

from gateway.core.timeutil import iso

Row = dict[str, Any]


def to_json(value: Any) -> str:
    """JSON text for a JSON column (orjson: several times faster than json on the hot path)."""
    return orjson.dumps(value, default=str).decode()


OPEN_SQL = "status IN ('new', 'in_progress', 'waiting_customer')"
_INSERT_SQL: dict[tuple[str, ...], str] = {}


class Tx(ABC):
    """Row-level reads and writes; every method is one or a few statements.

    Subclasses implement the primitives (`one`, `all`, `execute`, `executemany`, `insert`,
    `next_tracking`, `lock_key`, `flush`, `close`) and set `dialect` and `skip_locked`.
    """

    dialect = "abstract"
    # Appended to a SELECT that claims rows for work (outbox, jobs): other instances' claims
    # skip the rows this transaction locked instead of waiting (PostgreSQL); SQLite's single
    # writer needs nothing.
    skip_locked = ""

    # primitives --------------------------------------------------------------------------------
    @abstractmethod
    def one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        """The first row of a query, as a dict, or None."""

    @abstractmethod
    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Every row of a query, as dicts."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; returns how many rows it changed."""

    @abstractmethod
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """Run one statement for each parameter row."""

    @abstractmethod
    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run an INSERT into a table with an `id` column; returns the new row's id."""

    @abstractmethod
    def next_tracking(self, at: datetime) -> str:
        """The next tracking number, never handed out before."""

    @abstractmethod
    def lock_key(self, key: str) -> None:
        """Hold `key` until this transaction ends: concurrent transactions naming the same key
        run one after the other (a no-op where transactions are already serial)."""

    @abstractmethod
    def json_field(self, column: str, key: str) -> str:
        """SQL for the text of `key` in the JSON object in `column`."""

    @abstractmethod
    def json_has(self, column: str, item: str) -> str:
        """SQL that is true when the JSON array of strings in `column` holds `item` (a literal
        condition, so a partial index written with the same condition serves it)."""

    @abstractmethod
    def flush(self) -> None:
        """Write what this transaction kept in memory; the store calls it before COMMIT."""

    @abstractmethod
    def close(self) -> None:
        """Let go of cursors when the transaction or read ends."""

    def raw(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a hot read path (the queue); stores may bind it straight to `all`."""
        return self.all(sql, params)

    # generic -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def savepoint(self, name: str = "part") -> Iterator[None]:
        """A part of the transaction that an exception takes back alone (the same SQL on
        SQLite and PostgreSQL); the transaction goes on either way."""
        self.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self.execute(f"ROLLBACK TO SAVEPOINT {name}")
            self.execute(f"RELEASE SAVEPOINT {name}")
            raise
        self.execute(f"RELEASE SAVEPOINT {name}")

    def ping(self) -> bool:
        row = self.one("SELECT 1 AS ok")
        return row is not None and row["ok"] == 1

    def _insert_row(self, table: str, fields: Row) -> int:
        """INSERT a dict of columns; the statement text is built once per column set."""
        key = (table, *fields)
        sql = _INSERT_SQL.get(key)
        if sql is None:
            cols = ", ".join(fields)
            sql = _INSERT_SQL[key] = (
                f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(fields))})"
            )
        return self.insert(sql, tuple(fields.values()))

    def meta_get(self, key: str) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key = ?", (key,))
        return row["value"] if row else None

    def meta_set_default(self, key: str, value: str) -> str:
        """Store `value` unless the key exists; return what is stored."""
        self.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING", (key, value)
        )
        return self.meta_get(key) or value

    # receipts --------------------------------------------------------------------------------
    def receipt(self, channel: str, provider_id: str) -> Row | None:
        return self.one(
            "SELECT * FROM receipts WHERE channel = ? AND provider_id = ?", (channel, provider_id)
        )

    def insert_receipt(
        self,
        channel: str,
        provider_id: str,
        at: datetime,
        *,
        incident_id: int | None,
        message_id: int | None,
        raw: bytes | None = None,
        state: str = "done",
        error: str | None = None,
    ) -> int:
        # A shunted receipt (processing failed earlier) is completed in place on replay.
        return self.insert(
            "INSERT INTO receipts (channel, provider_id, received_at, incident_id, message_id,"
            " raw, state, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (channel, provider_id) DO UPDATE SET incident_id = excluded.incident_id,"
            " message_id = excluded.message_id, state = excluded.state, error = excluded.error,"
            " raw = coalesce(excluded.raw, receipts.raw)",
            (channel, provider_id, iso(at), incident_id, message_id, raw, state, error),
        )

    # contacts and tracking -------------------------------------------------------------------
    def find_contact(self, field: str, value: str) -> Row | None:
        assert field in ("email", "phone", "telegram_chat_id", "visitor_id")
        return self.one(f"SELECT * FROM contacts WHERE {field} = ? ORDER BY id LIMIT 1", (value,))

    def insert_contact(self, at: datetime, **fields: Any) -> int:
        get = fields.get
        return self.insert(
            "INSERT INTO contacts (name, email, phone, telegram_chat_id, visitor_id, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (
                get("name"),
                get("email"),
                get("phone"),
                get("telegram_chat_id"),
                get("visitor_id"),
                iso(at),
            ),
        )

    def fill_contact(self, contact: Row, **fields: Any) -> None:
        """Set fields that are still empty (never overwrite what a customer said before)."""
        missing = {k: v for k, v in fields.items() if v and not contact.get(k)}
        if missing:
            sets = ", ".join(f"{col} = ?" for col in missing)
            self.execute(
                f"UPDATE contacts SET {sets} WHERE id = ?", (*missing.values(), contact["id"])
            )

    def contact(self, contact_id: int) -> Row | None:
        return self.one("SELECT * FROM contacts WHERE id = ?", (contact_id,))

    # incidents -------------------------------------------------------------------------------
    def incident(self, incident_id: int) -> Row | None:
        return self.one("SELECT * FROM incidents WHERE id = ?", (incident_id,))

    def incident_by_tracking(self, tracking: str) -> Row | None:
        return self.one("SELECT * FROM incidents WHERE tracking = ?", (tracking,))

    def open_incident_by_conversation(self, key: str) -> Row | None:
        return self.one(
            f"SELECT * FROM incidents WHERE conversation_key = ? AND {OPEN_SQL}"
            " ORDER BY id DESC LIMIT 1",
            (key,),
        )

    def incident_by_message_refs(self, refs: Iterable[str]) -> Row | None:
        refs = [r for r in refs if r][:50]
        if not refs:
            return None
        marks = ", ".join("?" * len(refs))
        row = self.one(
            "SELECT i.* FROM messages m JOIN incidents i ON i.id = m.incident_id"
            f" WHERE m.external_ref IN ({marks}) ORDER BY m.id DESC LIMIT 1",
            refs,
        )
        if row is not None:
            return row
        # Acknowledgements have no message row: their provider id (our Message-ID) is only in
        # the outbox. Indexed by the email adapter's migration `outbox_provider`.
        return self.one(
            "SELECT i.* FROM outbox o JOIN incidents i ON i.id = o.incident_id"
            f" WHERE o.provider_id IN ({marks}) ORDER BY o.id DESC LIMIT 1",
            refs,
        )

    def incidents_of_contact(self, field: str, value: str, *, open_only: bool = False) -> list[Row]:
        """A customer's incidents by a contact field (their chat, phone...), oldest first."""
        assert field in ("email", "phone", "telegram_chat_id", "visitor_id")
        condition = f" AND i.{OPEN_SQL}" if open_only else ""
        return self.all(
            "SELECT i.* FROM incidents i JOIN contacts c ON c.id = i.contact_id"
            f" WHERE c.{field} = ?{condition} ORDER BY i.id",
            (value,),
        )

    def is_participant(self, incident_id: int, sender: str) -> bool:
        """The sender is the incident's contact or has written to it before."""
        sender = sender.lower()
        row = self.one(
            "SELECT 1 FROM incidents i JOIN contacts c ON c.id = i.contact_id WHERE i.id = ?"
            " AND (lower(c.email) = ? OR c.phone = ? OR c.telegram_chat_id = ?"
            " OR c.visitor_id = ?)",
            (incident_id, sender, sender, sender, sender),
        ) or self.one(
            "SELECT 1 FROM messages WHERE incident_id = ? AND direction = 'in'"
            " AND lower(sender) = ? LIMIT 1",
            (incident_id, sender),
        )
        return row is not None

    def insert_incident(self, fields: Row) -> int:
        return self._insert_row("incidents", fields)

    def update_incident(self, incident_id: int, fields: Row) -> None:
        if not fields:
            return
        sets = ", ".join(f"{c} = ?" for c in fields)
        self.execute(f"UPDATE incidents SET {sets} WHERE id = ?", [*fields.values(), incident_id])

    # messages, attachments, events -----------------------------------------------------------
    def insert_message(self, fields: Row) -> int:
        return self._insert_row("messages", fields)

    def insert_attachment(
        self,
        message_id: int,
        *,
        filename: str,
        content_type: str,
        size: int,
        data: bytes | None,
        url: str | None = None,
        inline: bool = False,
        state: str = "stored",
    ) -> int:
        # 128-bit random token: attachment URLs grant nothing guessable (checklist A1).
        return self.insert(
            "INSERT INTO attachments (message_id, token, filename, content_type, size, inline,"
            " url, state, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                message_id,
                secrets.token_urlsafe(16),
                filename,
                content_type,
                size,
                int(inline),
                url,
                state,
                data,
            ),
        )

    def insert_attachments(self, message_id: int, attachments: Iterable[Any]) -> None:
        """Store a message's files (`AttachmentIn`); without bytes yet, 'pending'."""
        for att in attachments:
            self.insert_attachment(
                message_id,
                filename=att.filename,
                content_type=att.content_type,
                size=att.size,
                data=att.data,
                url=getattr(att, "url", None),
                inline=att.inline,
                state="stored" if att.data is not None else "pending",
            )

    def pending_attachments(self, channel: str, provider_id: str) -> list[Row]:
        """Files of one inbound item (by its receipt) still waiting for their bytes."""
        return self.all(
            "SELECT a.id, a.url, a.filename, m.incident_id, i.tracking FROM receipts r"
            " JOIN messages m ON m.id = r.message_id JOIN incidents i ON i.id = m.incident_id"
            " JOIN attachments a ON a.message_id = m.id"
            " WHERE r.channel = ? AND r.provider_id = ? AND a.state = 'pending' ORDER BY a.id",
            (channel, provider_id),
        )

    def settle_attachment(
        self,
        pending: Row,
        at: datetime,
        *,
        channel: str,
        data: bytes | None,
        content_type: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Store a fetched file's bytes, or mark it failed with an event agents see (once)."""
        if data is not None:
            self.execute(
                "UPDATE attachments SET data = ?, size = ?,"
                " content_type = coalesce(?, content_type), state = 'stored'"
                " WHERE id = ? AND state = 'pending'",
                (data, len(data), content_type, pending["id"]),
            )
            return
        changed = self.execute(
            "UPDATE attachments SET state = 'failed' WHERE id = ? AND state = 'pending'",
            (pending["id"],),
        )
        if changed:
            detail = {"channel": channel, "filename": pending["filename"], "reason": reason}
            self.insert_event(pending["incident_id"], at, "system", "attachment_failed", detail)

    def insert_event(
        self, incident_id: int, at: datetime, actor: str, kind: str, detail: Row | None = None
    ) -> int:
        return self.insert(
            "INSERT INTO events (incident_id, at, actor, kind, detail) VALUES (?, ?, ?, ?, ?)",
            (incident_id, iso(at), actor, kind, to_json(detail or {})),
        )

    def insert_events(
        self, incident_id: int, events: Sequence[tuple[datetime, str, str, Row | None]]
    ) -> None:
        """Several audit entries of one incident in one statement."""
        self.executemany(
            "INSERT INTO events (incident_id, at, actor, kind, detail) VALUES (?, ?, ?, ?, ?)",
            [
                (incident_id, iso(at), actor, kind, to_json(detail or {}))
                for at, actor, kind, detail in events
            ],
        )

    def messages(self, incident_id: int) -> list[Row]:
        return self.all(
            "SELECT * FROM messages WHERE incident_id = ? ORDER BY at, id", (incident_id,)
        )

    def attachments_of(self, message_ids: Sequence[int]) -> list[Row]:
        if not message_ids:
            return []
        marks = ", ".join("?" * len(message_ids))
        return self.all(
            "SELECT id, message_id, token, filename, content_type, size, inline, state"
            f" FROM attachments WHERE message_id IN ({marks}) ORDER BY id",
            list(message_ids),
        )

    def events(self, incident_id: int) -> list[Row]:
        return self.all("SELECT * FROM events WHERE incident_id = ? ORDER BY id", (incident_id,))

    # outbox ----------------------------------------------------------------------------------
    def insert_outbox(
        self,
        *,
        channel: str,
        kind: str,
        recipient: str,
        at: datetime,
        payload: Row,
        incident_id: int | None = None,
        message_id: int | None = None,
        status: str = "pending",
    ) -> int:
        at_iso = iso(at)
        return self.insert(
            "INSERT INTO outbox (channel, kind, recipient, incident_id, message_id, payload,"
            " status, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                channel,
                kind,
                recipient,
                incident_id,
                message_id,
                to_json(payload),
                status,
                at_iso,
                at_iso,
            ),
        )

    def outbox_sent_since(self, channel: str, kind: str, recipient: str, since: datetime) -> bool:
        return (
            self.one(
                "SELECT 1 FROM outbox WHERE channel = ? AND kind = ? AND recipient = ?"
                " AND created_at >= ? LIMIT 1",
                (channel, kind, recipient, iso(since)),
            )
            is not None
        )

    def claim_outbox(
        self, now: datetime, lease_until: datetime, channels: Sequence[str], limit: int
    ) -> list[Row]:
        """Lease due rows (pending, or sending with an expired lease) for the given channels."""
        if not channels:
            return []
        marks = ", ".join("?" * len(channels))
        # Another instance's claim skips the rows this one locked (tx.skip_locked).
        rows = self.all(
            "SELECT * FROM outbox WHERE ((status = 'pending' AND next_attempt_at <= ?)"
            " OR (status = 'sending' AND lease_until < ?))"
            f" AND channel IN ({marks}) ORDER BY next_attempt_at, id LIMIT ?{self.skip_locked}",
            (iso(now), iso(now), *channels, limit),
        )
        for row in rows:
            self.execute(
                "UPDATE outbox SET status = 'sending', lease_until = ? WHERE id = ?",
                (iso(lease_until), row["id"]),
            )
        return rows

    def outbox_attempt(self, outbox_id: int, at: datetime, ok: bool, error: str | None) -> None:
        self.execute(
            "INSERT INTO outbox_attempts (outbox_id, at, ok, error) VALUES (?, ?, ?, ?)",
            (outbox_id, iso(at), int(ok), error),
        )

    def next_outbox_due(self, channels: Sequence[str]) -> str | None:
        """When the next pending row of these channels is due (rows of other channels wait)."""
        if not channels:
            return None
        marks = ", ".join("?" * len(channels))
        row = self.one(
            "SELECT min(next_attempt_at) AS due FROM outbox WHERE status = 'pending'"
            f" AND channel IN ({marks})",
            list(channels),
        )
        return row["due"] if row else None
