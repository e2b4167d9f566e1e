"""Click2Call's own tables and their SQL: rate-limit hits, idempotency keys, callbacks, attempts.

Plain synchronous functions of a `Tx` (they run in the store's database thread; no awaits).
Persisting counters, keys and per-attempt markers here is what makes the guard hold across
restarts and instances and keeps a callback from ever being placed twice.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from gateway.core.errors import Conflict
from gateway.core.scheduler import schedule_job
from gateway.core.timeutil import iso, parse_iso
from gateway.store.tx import Row, Tx

JOB = "click2call_callback"
WINDOW = timedelta(hours=1)
KEY_TTL = timedelta(days=1)
FINAL_STATES = ("placed", "failed", "finished")
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE click2call_hits (
            id INTEGER PRIMARY KEY,
            scope TEXT NOT NULL,          -- 'phone:+E164' or 'ip:ADDRESS'
            at TEXT NOT NULL
        );
        CREATE INDEX click2call_hits_scope ON click2call_hits(scope, at);

        CREATE TABLE click2call_keys (
            key TEXT PRIMARY KEY,         -- the Idempotency-Key header
            request_id TEXT NOT NULL,     -- provider id of the intake (dedupes a replay)
            phone TEXT NOT NULL,
            body TEXT,                    -- the 202 body, once known
            created_at TEXT NOT NULL
        );

        CREATE TABLE click2call_requests (
            tracking TEXT PRIMARY KEY,
            incident_id INTEGER NOT NULL REFERENCES incidents(id),
            request_id TEXT NOT NULL UNIQUE,
            phone TEXT NOT NULL,
            name TEXT,
            line TEXT NOT NULL,           -- country code of the line calling back
            language TEXT NOT NULL,
            created_at TEXT NOT NULL
        );

        -- One row per call attempt; `state` is written BEFORE the API call ('placing') so a
        -- crash or timeout leaves a marker to reconcile instead of a blind second call.
        CREATE TABLE click2call_attempts (
            tracking TEXT NOT NULL REFERENCES click2call_requests(tracking),
            attempt INTEGER NOT NULL,
            state TEXT NOT NULL CHECK (state IN
                ('scheduled', 'placing', 'unknown', 'placed', 'failed', 'finished')),
            call_sid TEXT UNIQUE,
            marked_at TEXT,
            outcome TEXT,
            duration INTEGER,
            error TEXT,
            PRIMARY KEY (tracking, attempt)
        );
        """,
    )
]


@dataclass(frozen=True)
class Admission:
    """Outcome of the guard: go on, replay a stored answer, or 429."""

    request_id: str
    body: dict[str, Any] | None = None  # set: answer this again (same Idempotency-Key)
    retry_after: int | None = None  # set: rate limited, seconds until a slot frees
    scope: str | None = None  # "phone" or "ip" when limited


def admit(
    tx: Tx,
    *,
    key: str | None,
    phone: str,
    ip: str,
    request_id: str,
    now: datetime,
    limits: dict[str, int],
) -> Admission:
    """Replay a known key, or apply per-number and per-IP hourly limits and store the key."""
    tx.execute("DELETE FROM click2call_keys WHERE created_at < ?", (iso(now - KEY_TTL),))
    if key is not None:
        row = tx.one("SELECT * FROM click2call_keys WHERE key = ?", (key,))
        if row is not None:
            if row["phone"] != phone:
                raise Conflict(
                    "this Idempotency-Key was used for another request", field="Idempotency-Key"
                )
            body = json.loads(row["body"]) if row["body"] else None
            return Admission(request_id=row["request_id"], body=body)
    since = iso(now - WINDOW)
    tx.execute("DELETE FROM click2call_hits WHERE at <= ?", (since,))
    scopes = {"phone": f"phone:{phone}", "ip": f"ip:{ip}"}
    for name, scope in scopes.items():
        row = tx.one(
            "SELECT count(*) AS n, min(at) AS first FROM click2call_hits"
            " WHERE scope = ? AND at > ?",
            (scope, since),
        )
        assert row is not None
        if row["n"] >= limits[name]:
            first = parse_iso(row["first"]) or now
            wait = max(1, math.ceil((first + WINDOW - now).total_seconds()))
            return Admission(request_id=request_id, retry_after=wait, scope=name)
    for scope in scopes.values():
        tx.execute("INSERT INTO click2call_hits (scope, at) VALUES (?, ?)", (scope, iso(now)))
    if key is not None:
        tx.execute(
            "INSERT INTO click2call_keys (key, request_id, phone, created_at) VALUES (?, ?, ?, ?)",
            (key, request_id, phone, iso(now)),
        )
    return Admission(request_id=request_id)


def register(
    tx: Tx, *, request: Row, key: str | None, body: dict[str, Any], run_at: datetime, now: datetime
) -> tuple[dict[str, Any], bool]:
    """Persist the callback, its first attempt and its job; (202 body, True when new)."""
    before = tx.one("SELECT 1 FROM click2call_requests WHERE tracking = ?", (request["tracking"],))
    if before is None:
        tx.execute(
            "INSERT INTO click2call_requests (tracking, incident_id, request_id, phone, name,"
            " line, language, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                request["tracking"],
                request["incident_id"],
                request["request_id"],
                request["phone"],
                request["name"],
                request["line"],
                request["language"],
                iso(now),
            ),
        )
        tx.execute(
            "INSERT INTO click2call_attempts (tracking, attempt, state) VALUES (?, 1, 'scheduled')",
            (request["tracking"],),
        )
        # In hours `run_at` is a watchdog shortly after now: if this process dies before the
        # call is placed, the job places (or reconciles) it; otherwise it finds it placed.
        schedule_job(
            tx, JOB, request["tracking"], run_at, {"tracking": request["tracking"], "attempt": 1}
        )
        tx.insert_event(
            request["incident_id"],
            now,
            "system",
            "callback_requested",
            {"scheduled_for": body["scheduled_for"], "phone": request["phone"]},
        )
    if key is not None:
        tx.execute(
            "UPDATE click2call_keys SET body = coalesce(body, ?) WHERE key = ?",
            (json.dumps(body), key),
        )
    return body, before is None


def attempt_of(tx: Tx, tracking: str, attempt: int) -> Row | None:
    """One attempt joined with its callback request."""
    return tx.one(
        "SELECT a.*, r.incident_id, r.phone, r.name, r.line, r.language FROM click2call_attempts a"
        " JOIN click2call_requests r ON r.tracking = a.tracking"
        " WHERE a.tracking = ? AND a.attempt = ?",
        (tracking, attempt),
    )


def transition(
    tx: Tx,
    tracking: str,
    attempt: int,
    from_states: tuple[str, ...],
    to_state: str,
    **fields: Any,
) -> bool:
    """Move an attempt between states only if it is still in one of `from_states`."""
    sets = ", ".join(["state = ?", *(f"{c} = ?" for c in fields)])
    marks = ", ".join("?" * len(from_states))
    changed = tx.execute(
        f"UPDATE click2call_attempts SET {sets} WHERE tracking = ? AND attempt = ?"
        f" AND state IN ({marks})",
        (to_state, *fields.values(), tracking, attempt, *from_states),
    )
    return changed == 1


def record_outcome(
    tx: Tx,
    *,
    sid: str,
    to: str | None,
    from_line: str | None,
    status: str,
    duration: int | None,
    now: datetime,
    retry_at: Callable[[str], datetime],
) -> Row | None:
    """A final call status: event, then one retry if the customer was not reached."""
    row = tx.one("SELECT tracking, attempt FROM click2call_attempts WHERE call_sid = ?", (sid,))
    if row is None and to and from_line:
        # An attempt whose Calls.create answer was lost: match it by the marker's numbers.
        row = tx.one(
            "SELECT a.tracking, a.attempt FROM click2call_attempts a JOIN click2call_requests r"
            " ON r.tracking = a.tracking WHERE a.call_sid IS NULL"
            " AND a.state IN ('placing', 'unknown') AND r.phone = ? ORDER BY a.marked_at DESC",
            (to,),
        )
    if row is None:
        return None
    att = attempt_of(tx, row["tracking"], row["attempt"])
    if att is None or att["outcome"] is not None:
        return None  # a repeated callback
    tx.execute(
        "UPDATE click2call_attempts SET state = 'finished', call_sid = ?, outcome = ?,"
        " duration = ? WHERE tracking = ? AND attempt = ?",
        (sid, status, duration, att["tracking"], att["attempt"]),
    )
    incident = att["incident_id"]
    detail = {"attempt": att["attempt"], "status": status, "duration": duration, "call_sid": sid}
    tx.insert_event(incident, now, "system", f"callback_{status.replace('-', '_')}", detail)
    if status == "completed":
        return att
    if att["attempt"] == 1:
        at = retry_at(att["line"])
        tx.execute(
            "INSERT OR IGNORE INTO click2call_attempts (tracking, attempt, state)"
            " VALUES (?, 2, 'scheduled')",
            (att["tracking"],),
        )
        schedule_job(
            tx, JOB, f"{att['tracking']}:retry", at, {"tracking": att["tracking"], "attempt": 2}
        )
        tx.insert_event(
            incident, now, "system", "callback_retry_scheduled", {"at": iso(at), "reason": status}
        )
    else:
        tx.insert_event(
            incident,
            now,
            "system",
            "callback_not_reached",
            {
                "reason": status,
                "attempts": att["attempt"],
                "note": "left in the queue for an agent to call back",
            },
        )
    return att
