"""The intake pipeline: the one core entry point every channel adapter calls.

accept(inbound): dedupe on (channel, provider id) → thread into an existing incident (quoted
message ids; a quoted tracking number only for a participant; the contact's open conversation)
→ otherwise register a new incident routed by `routing/` → commit incident, message, event,
receipt and outbox rows in one transaction → return the `Receipt` the adapter acknowledges with.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

from config.settings import Settings
from gateway.core import feedback, quarantine
from gateway.core.bus import Bus
from gateway.core.errors import GatewayError, Shunted, TemporaryFailure
from gateway.core.incident import (
    IncidentState,
    change_severity,
    customer_message,
    urgent_due,
)
from gateway.core.language import detect_language
from gateway.core.model import Inbound, Receipt, inbound_from_json, inbound_to_json, receipt_key
from gateway.core.report import history_of
from gateway.core.texts import Texts
from gateway.core.timeutil import Clock, iso, parse_iso
from gateway.store.protocol import Store
from gateway.store.tx import Row, Tx, to_json
from routing.assign import assign
from routing.compliance import due_time
from routing.model import SEVERITIES
from routing.resolve import resolve_line

log = logging.getLogger(__name__)
T = TypeVar("T")
UNVERIFIED = "sender_unverified"  # flag of mail whose DMARC evaluation is `fail`


@dataclass(frozen=True)
class IntakeContext:
    """What the database-thread part of the intake needs besides the transaction."""

    settings: Settings
    texts: Texts


def state_of(row: Row) -> IncidentState:
    """An incident row's life-cycle state."""
    pauses = tuple((parse_iso(a), parse_iso(b)) for a, b in json.loads(row.get("pauses") or "[]"))
    return IncidentState(
        status=row["status"],
        level=row["level"],
        team=row["team"],
        severity=row["severity"],
        claimed_by=row["claimed_by"],
        attended_at=parse_iso(row["attended_at"]),
        resolved_at=parse_iso(row["resolved_at"]),
        category=row["category"],
        resolution=row["resolution"],
        pauses=pauses,  # type: ignore[arg-type]
    )


def state_fields(state: IncidentState, row: Row) -> Row:
    """Columns to write for a new state (urgent_due kept consistent with the SLA)."""
    due = urgent_due(state, parse_iso(row["attention_due"]), parse_iso(row["solution_due"]))
    return {
        "status": state.status,
        "level": state.level,
        "team": state.team,
        "severity": state.severity,
        "claimed_by": state.claimed_by,
        "attended_at": iso(state.attended_at),
        "resolved_at": iso(state.resolved_at),
        "category": state.category,
        "resolution": state.resolution,
        "pauses": to_json([[iso(a), iso(b)] for a, b in state.pauses]),
        "urgent_due": iso(due),
    }


# The contact field each channel proves (CONTRACT "Sender authentication"; README "Security
# model"). Click2Call proves nothing: its form is all claims.
IDENTITY_FIELD = {
    "email": "email",
    "telegram": "telegram_chat_id",
    "webchat": "visitor_id",
    "whatsapp": "phone",
    "voice": "phone",
}


def sender_identity(msg: Inbound) -> str | None:
    """The proven identity that threads this channel's messages: address, phone, chat or
    visitor; None when the channel proved none (a form, a spoofed sender, an unattested call)."""
    field = IDENTITY_FIELD.get(msg.channel)
    value = getattr(msg.contact, field) if field else None
    if value and field == "email":
        return str(value).lower()
    return value or None


def lock_keys(msg: Inbound) -> tuple[str, ...]:
    """The keys `apply_inbound` holds: the item's receipt and its sender's conversation.
    Declared to `Store.transact`, so a batch takes them first and in one order."""
    sender = sender_identity(msg)
    receipt = receipt_key(msg.channel, msg.provider_id)
    return (receipt, f"contact:{msg.channel}:{sender}") if sender else (receipt,)


def _find_contact(tx: Tx, msg: Inbound, now: datetime) -> int:
    """The contact of the identity the channel proved, created on first contact.

    Only that one identity is looked up and stored: what a customer types (`msg.claims`) never
    finds, fills or merges into a contact, so a form naming someone else's phone or address
    gives no hold on that person's incidents.
    """
    field = IDENTITY_FIELD.get(msg.channel)
    value = sender_identity(msg)
    name = msg.contact.name
    if field and value:
        row = tx.find_contact(field, value)
        if row:
            tx.fill_contact(row, name=name)
            return int(row["id"])
        return tx.insert_contact(now, name=name, **{field: value})
    return tx.insert_contact(now, name=name)


def _thread_target(tx: Tx, msg: Inbound, sender: str | None) -> tuple[Row | None, str]:
    """The incident this message continues, and why."""
    if UNVERIFIED in msg.flags:
        # DMARC failed: the From is forged or broken, so neither the sender nor a quoted
        # number or message id may join an existing incident (CONTRACT "Sender authentication").
        return None, ""
    if msg.references:
        row = tx.incident_by_message_refs(msg.references)
        if row:
            return row, "references a message of the incident"
    for tracking in msg.tracking_hints:
        row = tx.incident_by_tracking(tracking)
        if row and sender and tx.is_participant(row["id"], sender):
            return row, f"quotes {tracking} and the sender takes part in it"
        if row:
            log.info("tracking %s quoted by a non-participant: new incident", tracking)
    if msg.thread_by_contact and sender:
        row = tx.open_incident_by_conversation(f"{msg.channel}:{sender}")
        if row:
            return row, "open conversation of the same contact"
    return None, ""


def apply_inbound(tx: Tx, msg: Inbound, now: datetime, ctx: IntakeContext) -> Receipt:
    """The whole intake inside one transaction (runs in the database thread).

    With several instances on one database, the same item delivered to two of them, or two
    messages of one contact, wait for each other here (`lock_key`, released at COMMIT): the
    second then finds the first's receipt, or its open conversation, as one writer would.
    """
    for key in lock_keys(msg):
        tx.lock_key(key)  # no round trip where the store took them first (declared)
    previous = tx.receipt(msg.channel, msg.provider_id)
    if previous is not None and previous["incident_id"] is not None:
        incident = tx.incident(previous["incident_id"])
        assert incident is not None
        first = tx.one(
            "SELECT min(id) AS id FROM messages WHERE incident_id = ? AND direction = 'in'",
            (incident["id"],),
        )
        created = first is not None and first["id"] == previous["message_id"]
        return _receipt(ctx, tx, incident, previous["message_id"], created=created, duplicate=True)
    sender = sender_identity(msg)
    target, why = _thread_target(tx, msg, sender)
    incidents = ctx.settings.incidents
    windows = (incidents.csat_window, incidents.thanks_window)
    if target is None and msg.thread_by_contact and sender:
        # A conversation resolved or closed lately takes the customer's answer to the
        # resolution notice (a score, a thanks) or reopens; an older one gives a new incident.
        key = f"{msg.channel}:{sender}"
        target = feedback.recent_conversation(tx, key, now, max(windows))
        why = "recently resolved conversation of the same contact" if target else why
    contact_id = _find_contact(tx, msg, now)
    if target is not None and target["status"] in feedback.DONE_STATUSES:
        # A mail's body is extracted after the commit; its adapter reads a reply's words first.
        text = msg.text or str(msg.meta.get("text_preview") or "")
        kind, score = feedback.classify_row(target, text, now, windows, bool(msg.attachments))
        if kind != "message":
            outcome = (kind, score)
            return _record_follow_up(tx, msg, now, ctx, target, sender, previous, outcome)
    follow_up_of = None
    if target is not None and target["status"] == "closed":
        follow_up_of, target = target["tracking"], None
    created = target is None
    if target is None:
        target = _register(tx, msg, now, ctx, contact_id, sender)
        if follow_up_of:
            tx.insert_event(target["id"], now, "system", "follow_up_of", {"tracking": follow_up_of})
    else:
        tx.insert_event(target["id"], now, "customer", "message_received", {"threaded": why})
        _add_claims(tx, target, msg)
        state = state_of(target)
        new_state, events = customer_message(state, now)
        new_state, events = _customer_severity(new_state, events, msg, now)
        if events:
            fields = state_fields(new_state, target)
            moved = new_state.severity != state.severity or new_state.status != state.status
            if new_state.pauses != state.pauses or moved:
                fields.update(recompute_sla(ctx, target, new_state, now, tx))
            fields["updated_at"] = iso(now)
            tx.update_incident(target["id"], fields)
            for event in events:
                tx.insert_event(target["id"], event.at, event.actor, event.kind, event.detail)
            target = tx.incident(target["id"]) or target
    message_id = _keep(tx, msg, now, target, sender, previous)
    receipt = _receipt(
        ctx, tx, target, message_id, created=created, duplicate=False, name=display_name(msg)
    )
    if created and msg.acknowledge:
        _queue_ack(tx, msg, now, target, receipt)
    return receipt


def _keep(
    tx: Tx, msg: Inbound, now: datetime, target: Row, sender: str | None, previous: Row | None
) -> int:
    """Store the message on `target` and its receipt; a receipt shunted earlier (now processed
    by a retry or `replay`) leaves the quarantine. Returns the message id."""
    message_id = _store_message(tx, msg, now, target["id"], sender)
    if previous is not None and previous["state"] == "shunted":
        quarantine.resolve_shunted(tx, msg.channel, msg.provider_id, target["tracking"], now)
    tx.insert_receipt(
        msg.channel,
        msg.provider_id,
        now,
        incident_id=target["id"],
        message_id=message_id,
        raw=msg.raw,
    )
    return message_id


def _customer_severity(
    state: IncidentState, events: list[Any], msg: Inbound, now: datetime
) -> tuple[IncidentState, list[Any]]:
    """Impact answers given after the first message (the web chat's type-first form) raise
    the severity of an incident no agent has taken yet; they never lower it."""
    wanted = msg.severity
    if not wanted or state.status != "new" or wanted not in SEVERITIES:
        return state, events
    if SEVERITIES.index(wanted) >= SEVERITIES.index(state.severity):
        return state, events
    reason = "respuestas de impacto del cliente"
    new, more = change_severity(state, "customer", now, wanted, reason)
    return new, [*events, *more]


def _record_follow_up(
    tx: Tx,
    msg: Inbound,
    now: datetime,
    ctx: IntakeContext,
    target: Row,
    sender: str | None,
    previous: Row | None,
    outcome: tuple[feedback.FollowUp, int | None],
) -> Receipt:
    """A CSAT answer or a bare thanks: kept on the incident, which stays as it is."""
    feedback.record(tx, target, outcome[0], outcome[1], now)
    message_id = _keep(tx, msg, now, target, sender, previous)
    row = tx.incident(target["id"]) or target
    return _receipt(
        ctx,
        tx,
        row,
        message_id,
        created=False,
        duplicate=False,
        name=msg.contact.name,
        follow_up=outcome[0],
    )


def recompute_sla(ctx: IntakeContext, row: Row, state: IncidentState, now: datetime, tx: Tx) -> Row:
    """Attention/solution due times after a severity change or a pause, by the same rule as the
    month's report (`routing.compliance`: each severity spends its own budget while in force),
    so the queue's badges and the invoice agree."""
    cfg = ctx.settings.routing
    line = cfg.lines.get(row["country"], cfg.default_line)
    changes = tx.all(
        "SELECT at, detail FROM events WHERE incident_id = ? AND kind = 'severity_changed'"
        " ORDER BY id",
        (row["id"],),
    )
    history = history_of(row, changes)
    if history.severities[-1][1] != state.severity:  # the change being written now
        history = replace(history, severities=(*history.severities, (now, state.severity)))
    history = replace(history, pauses=state.pauses)
    attention, _ = due_time(cfg, line, history, "attention", now)
    solution, _ = due_time(cfg, line, history, "solution", now)
    fields: Row = {"attention_due": iso(attention), "solution_due": iso(solution)}
    fields["urgent_due"] = iso(urgent_due(state, attention, solution))
    return fields


def late_breaches(row: Row, fields: Row) -> list[str]:
    """SLA kinds an update makes breached: attended or resolved after its due time.

    The breach watch only scans open incidents through their index; a due time missed by an
    action between two of its passes is flagged here, in the action's own transaction.
    """
    merged = {**row, **fields}
    kinds = []
    for kind, done, due in (
        ("attention", "attended_at", "attention_due"),
        ("solution", "resolved_at", "solution_due"),
    ):
        if not row[f"{kind}_breached"] and merged[done] and merged[done] > merged[due]:
            kinds.append(kind)
    return kinds


def _register(
    tx: Tx, msg: Inbound, now: datetime, ctx: IntakeContext, contact_id: int, sender: str | None
) -> Row:
    cfg = ctx.settings.routing
    decision = resolve_line(
        cfg,
        # A typed phone still says which country line serves the customer (CONTRACT); it only
        # routes, it identifies no one.
        phone=msg.contact.phone or msg.claims.get("phone"),
        called=msg.called,
        chosen_country=msg.chosen_country,
    )
    a = assign(cfg, decision, now, msg.severity)
    language = msg.language or detect_language(msg.text) or a.line.language
    tracking = tx.next_tracking(now)
    subject = (msg.subject or "").strip() or _first_line(msg.text)
    now_iso = iso(now)
    fields: Row = {
        "tracking": tracking,
        "channel": msg.channel,
        "country": a.line.code,
        "line": a.line.number,
        "level": a.level,
        "severity": a.severity,
        "status": "new",
        "after_hours": int(a.after_hours),
        "opens_at": iso(a.opens_at),
        "subject": subject[:200],
        "description": msg.text,
        "contact_id": contact_id,
        "conversation_key": f"{msg.channel}:{sender}" if msg.thread_by_contact and sender else None,
        "language": language,
        "occurred_at": iso(msg.occurred_at or msg.received_at) or now_iso,
        "registered_at": now_iso,
        "registered_by": f"{msg.channel}:{sender or 'anonymous'}",
        "attention_due": iso(a.sla.attention_due),
        "solution_due": iso(a.sla.solution_due),
        "urgent_due": iso(a.sla.attention_due),
        "routing": to_json({"reasons": a.reasons, "resolved_country": a.country}),
        "flags": to_json(sorted({*a.flags, *msg.flags})),
        "updated_at": now_iso,
        "claims": to_json(claims) if (claims := _claims(msg)) else None,
    }
    incident_id = tx.insert_incident(fields)
    events: list[tuple[datetime, str, str, Row | None]] = [
        (
            now,
            "system",
            "registered",
            {"channel": msg.channel, "tracking": tracking, "phase": "registro"},
        ),
        (
            now,
            "system",
            "routed",
            {
                "level": a.level,
                "line": a.line.code,
                "reasons": list(a.reasons),
                "flags": list(a.flags),
            },
        ),
    ]
    if a.after_hours:
        events.append((now, "system", "after_hours", {"opens_at": iso(a.opens_at)}))
    tx.insert_events(incident_id, events)
    # The row as inserted (no re-read); columns left to their defaults are filled in here.
    return {**_NEW_INCIDENT_DEFAULTS, **fields, "id": incident_id}


_NEW_INCIDENT_DEFAULTS: Row = {
    "team": None,
    "claimed_by": None,
    "attended_at": None,
    "resolved_at": None,
    "closed_at": None,
    "attention_breached": 0,
    "solution_breached": 0,
    "pauses": "[]",
    "category": None,
    "resolution": None,
}


def _claims(msg: Inbound) -> dict[str, str]:
    """The customer's typed contact data worth keeping (empty values dropped)."""
    return {k: str(v)[:200] for k, v in msg.claims.items() if v and k in ("name", "email", "phone")}


def _add_claims(tx: Tx, row: Row, msg: Inbound) -> None:
    """Typed details given later in a conversation complete the incident's claims (never over
    what the customer said before)."""
    claims = _claims(msg)
    if not claims:
        return
    held = json.loads(row.get("claims") or "{}")
    merged = {**claims, **held}
    if merged != held:
        tx.update_incident(row["id"], {"claims": to_json(merged)})


def display_name(msg: Inbound) -> str | None:
    """The name to greet the customer with: proven or typed (a name proves nothing either way)."""
    return msg.contact.name or msg.claims.get("name") or None


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:120]
    return ""


def _message_time(msg: Inbound, now: datetime) -> datetime:
    """When the customer sent it (the timeline's order), if the channel's own time is
    plausible; providers retry for hours, but a clock far off is not trusted."""
    sent = msg.received_at
    if sent is not None and now - timedelta(hours=24) <= sent <= now:
        return sent
    return now


def _store_message(
    tx: Tx, msg: Inbound, now: datetime, incident_id: int, sender: str | None
) -> int:
    message_id = tx.insert_message(
        {
            "incident_id": incident_id,
            "direction": "in",
            "channel": msg.channel,
            "author": msg.author or display_name(msg) or sender or "cliente",
            "sender": sender,
            "body": msg.text,
            "html": msg.meta.get("html"),
            "at": iso(_message_time(msg, now)),
            "external_ref": msg.message_ref,
            "flags": to_json(list(msg.flags)),
        }
    )
    tx.insert_attachments(message_id, msg.attachments)
    return message_id


def _receipt(
    ctx: IntakeContext,
    tx: Tx,
    row: Row,
    message_id: int | None,
    *,
    created: bool,
    duplicate: bool,
    name: str | None = None,
    follow_up: str | None = None,
) -> Receipt:
    cfg = ctx.settings.routing
    line = cfg.lines.get(row["country"], cfg.default_line)
    after_hours = bool(row["after_hours"]) and created
    opens_at = parse_iso(row["opens_at"]) if after_hours else None
    if name is None:
        claimed = json.loads(row.get("claims") or "{}")
        name = (tx.contact(row["contact_id"]) or {}).get("name") or claimed.get("name")
    language, tracking = row["language"], row["tracking"]

    def render() -> str:
        template = "ack" if created else "joined"
        return ctx.texts.render(
            "csat_thanks" if follow_up == "csat" else template,
            language,
            tracking=tracking,
            name=name,
            line=line,
            after_hours=after_hours,
            opens_at=opens_at,
        )

    return Receipt(
        tracking=row["tracking"],
        incident_id=int(row["id"]),
        message_id=message_id,
        created=created,
        duplicate=duplicate,
        status=row["status"],
        country=row["country"],
        language=row["language"],
        after_hours=after_hours,
        opens_at=opens_at,
        render_ack=render,
        follow_up=follow_up,
    )


def _queue_ack(tx: Tx, msg: Inbound, now: datetime, row: Row, receipt: Receipt) -> None:
    recipient = sender_identity(msg)
    if not recipient:
        return
    if msg.ack_window and tx.outbox_sent_since(msg.channel, "ack", recipient, now - msg.ack_window):
        tx.insert_event(row["id"], now, "system", "ack_suppressed", {"reason": "rate limit"})
        return
    # No rendered text here: the outbox renders it at delivery for senders that want it
    # (email builds its own MIME from its templates), keeping the intake's thread lean.
    payload: dict[str, Any] = {
        "tracking": receipt.tracking,
        "country": receipt.country,
        "language": receipt.language,
        "after_hours": receipt.after_hours,
        "opens_at": iso(receipt.opens_at),
        "subject": row["subject"],
        "in_reply_to": msg.message_ref,
        "references": [*msg.references, *([msg.message_ref] if msg.message_ref else [])][-20:],
        "name": display_name(msg),
    }
    tx.insert_outbox(
        channel=msg.channel,
        kind="ack",
        recipient=recipient,
        at=now,
        payload=payload,
        incident_id=row["id"],
    )


# Types that hold no text: returned as they are without a look inside.
_NO_TEXT: frozenset[type] = frozenset({int, float, bool, type(None), bytes, datetime})


@lru_cache(maxsize=64)
def _field_names(kind: type) -> tuple[str, ...]:
    """A dataclass's field names (empty for any other type), looked up once per type."""
    return tuple(f.name for f in fields(kind)) if is_dataclass(kind) else ()


def _clean(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "replace").decode("utf-8")  # surrogates become "?"
        return value
    if kind in _NO_TEXT or not value:  # also (), [], {} and ""
        return value
    if isinstance(value, str):  # a str subclass
        return _clean(str(value))
    if isinstance(value, tuple | list):
        items = [_clean(v) for v in value]
        same = all(a is b for a, b in zip(items, value, strict=True))
        return value if same else type(value)(items)
    if isinstance(value, dict):
        pairs = [(_clean(k), _clean(v)) for k, v in value.items()]
        same = all(
            k is k0 and v is v0 for (k, v), (k0, v0) in zip(pairs, value.items(), strict=True)
        )
        return value if same else dict(pairs)
    names = _field_names(kind)
    if not names:
        return value
    changes = {}
    for name in names:
        old = getattr(value, name)
        new = _clean(old)
        if new is not old:
            changes[name] = new
    return replace(value, **changes) if changes else value


def without_surrogates(msg: Inbound) -> Inbound:
    """The inbound item with every lone UTF-16 surrogate in its texts replaced."""
    cleaned: Inbound = _clean(msg)
    return cleaned


def shunt(tx: Tx, msg: Inbound, now: datetime, exc: BaseException) -> None:
    """Keep an inbound item whose processing failed, for an operator to see and replay."""
    error = f"{type(exc).__name__}: {exc}"[:1000]
    tx.insert_receipt(
        msg.channel,
        msg.provider_id,
        now,
        incident_id=None,
        message_id=None,
        raw=inbound_to_json(msg).encode(),
        state="shunted",
        error=error,
    )
    # Supervisors see it in the quarantine; a later retry or `replay` that succeeds resolves it.
    quarantine.hold(tx, msg, "processing_failed", now)


def shunted(tx: Tx) -> list[tuple[int, Inbound, str]]:
    """Shunted items: (receipt id, the inbound item, the error)."""
    rows = tx.all("SELECT id, raw, error FROM receipts WHERE state = 'shunted' ORDER BY id")
    return [(r["id"], inbound_from_json(r["raw"].decode()), r["error"]) for r in rows]


class Intake:
    """The async face of the pipeline: one call per inbound item, answered after COMMIT."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        texts: Texts,
        bus: Bus,
        metrics: Any = None,
    ):
        self.ctx = IntakeContext(settings=settings, texts=texts)
        self.store = store
        self.clock = clock
        self.bus = bus
        self.metrics = metrics
        self.temporary_failures = 0  # since start: nothing committed, the sender retries (NOC)
        self.on_commit: Callable[[], None] | None = None  # wakes the outbox: an ack is queued
        self._turn_now: datetime | None = None

    def _now(self) -> datetime:
        """The clock, read once per event-loop turn.

        Contacts that arrive in the same turn are registered at the same instant (within the
        turn's microseconds, and they share one COMMIT anyway), so routing computes a line's
        schedule and SLA due times once per burst instead of once per contact.
        """
        if self._turn_now is None:
            self._turn_now = self.clock()
            asyncio.get_running_loop().call_soon(self._end_turn)
        return self._turn_now

    def _end_turn(self) -> None:
        self._turn_now = None

    async def replay_shunted(self) -> tuple[int, int]:
        """Process every shunted item again; returns (replayed, still failing)."""
        items = await self.store.read(shunted)
        done = failed = 0
        for _, msg, _ in items:
            try:
                await self.accept(msg)
                done += 1
            except TemporaryFailure:
                failed += 1
        return done, failed

    async def accept(self, msg: Inbound) -> Receipt:
        """Commit the inbound item (or find its earlier receipt); raise TemporaryFailure if not."""
        receipt, _ = await self.accept_with(msg, None)
        return receipt

    async def accept_with(
        self, msg: Inbound, also: Callable[[Tx, Receipt], T] | None
    ) -> tuple[Receipt, T | None]:
        """`accept`, and `also(tx, receipt)` in the same transaction: what the adapter would
        otherwise commit right after (a chat visitor's address confirmation) shares the
        intake's COMMIT, so the customer's answer waits for one group commit, not two.

        `also` runs in a savepoint after the intake, duplicates included: an exception in it
        takes back its own writes only, is logged, and gives None; the intake stands.
        """
        now = self._now()
        # A lone surrogate (Python's email package decodes undecodable bytes into them) can be
        # neither stored nor sent on: replaced here, so such input is never shunted for a
        # replay that would fail the same way. The raw bytes keep the original.
        msg = without_surrogates(msg)
        if msg.received_at is None:
            msg = replace(msg, received_at=now)
        started = time.perf_counter()
        outcome = "error"
        try:
            receipt, extra = await self.store.transact(
                lambda tx: _with_also(tx, apply_inbound(tx, msg, now, self.ctx), also),
                keys=lock_keys(msg),
            )
            outcome = "duplicate" if receipt.duplicate else ("new" if receipt.created else "joined")
        except TemporaryFailure:
            self.temporary_failures += 1
            raise
        except GatewayError:
            raise
        except Exception as exc:  # a processing bug: keep the input for replay, sender retries
            outcome = "shunted"
            log.exception("intake %s %s failed; shunted for replay", msg.channel, msg.provider_id)
            await self.store.transact(
                lambda tx, e=exc: shunt(tx, msg, now, e),
                keys=(receipt_key(msg.channel, msg.provider_id),),
            )
            raise Shunted("the message could not be processed; it is kept") from exc
        finally:
            if self.metrics is not None:
                self.metrics.intake(msg.channel, outcome, time.perf_counter() - started)
        if not receipt.duplicate:
            self.bus.publish(
                {
                    "type": "incident",
                    "event": "created" if receipt.created else "message",
                    "tracking": receipt.tracking,
                    "channel": msg.channel,
                }
            )
            # Only a new incident's acknowledgement is queued in the outbox by the intake: waking
            # the outbox for anything else would cost it a read per commit for nothing.
            if self.on_commit is not None and receipt.created and msg.acknowledge:
                self.on_commit()
        return receipt, extra


def _with_also(
    tx: Tx, receipt: Receipt, also: Callable[[Tx, Receipt], T] | None
) -> tuple[Receipt, T | None]:
    if also is None:
        return receipt, None
    try:
        with tx.savepoint("also"):
            return receipt, also(tx, receipt)
    except Exception:
        log.exception(
            "the work committed with intake %s failed; the intake stands", receipt.tracking
        )
        return receipt, None
