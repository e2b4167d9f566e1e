"""Agent actions on one incident, as functions of a `Tx` run inside one write transaction.

Each action: look the incident up through the caller's access (no access: 404, no oracle), apply
the pure life-cycle transition from `gateway.core.incident`, write the new state, its audit
events and recomputed SLA due times. No HTTP and no awaits here; the caller publishes after COMMIT.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from gateway.core import incident as life
from gateway.core import notices
from gateway.core.auth import User
from gateway.core.errors import Rejected
from gateway.core.intake import IntakeContext, late_breaches, recompute_sla, state_fields, state_of
from gateway.core.replies import ReplyGuard, queue_reply
from gateway.core.timeutil import iso
from gateway.store.tx import Row, Tx
from gateway.web.api import visible_incident

ACTIONS = ("claim", "reply", "note", "severity", "escalate", "resolve", "close", "reopen")
MAX_TEXT = 20_000


@dataclass(frozen=True)
class Outcome:
    """What an action changed: the incident's new row and the notice to publish after COMMIT."""

    tracking: str
    action: str
    row: Row
    notice: dict[str, Any]


@dataclass(frozen=True)
class ActionContext:
    """What actions need besides the transaction: settings, reply guards, the time."""

    intake: IntakeContext
    guards: Mapping[str, ReplyGuard]
    now: datetime


def text_field(body: Mapping[str, Any], name: str, *, required: bool = True) -> str | None:
    """A string field of a request body, trimmed; 400 naming the field when wrong."""
    value = body.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise Rejected(f"{name} is required", field=name, code="missing")
        return None
    if not isinstance(value, str):
        raise Rejected(f"{name} must be a string", field=name)
    if len(value) > MAX_TEXT:
        raise Rejected(f"{name} is longer than {MAX_TEXT} characters", field=name)
    return value.strip()


def _apply(
    tx: Tx, row: Row, change: life.Change, ctx: ActionContext, extra: Row | None = None
) -> Row:
    """Write a transition: state columns, SLA due times when clocks moved, events."""
    old = state_of(row)
    new, events = change
    fields = state_fields(new, row)
    if new.severity != old.severity or new.pauses != old.pauses:
        # Severity changes and pauses move the due times (the severity in force rule).
        fields.update(recompute_sla(ctx.intake, row, new, ctx.now, tx))
    fields.update(extra or {})
    fields["updated_at"] = iso(ctx.now)
    for kind in late_breaches(row, fields):
        fields[f"{kind}_breached"] = 1
        events = [*events, life.Event(ctx.now, "system", f"{kind}_breached", {"late": True})]
    tx.update_incident(row["id"], fields)
    for event in events:
        tx.insert_event(row["id"], event.at, event.actor, event.kind, event.detail)
    updated = tx.incident(row["id"])
    assert updated is not None
    return updated


def _claim(tx: Tx, user: User, row: Row, body: Mapping[str, Any], ctx: ActionContext) -> Row:
    state, events = life.claim(state_of(row), user.name, ctx.now)
    if row["level"] != "L1":
        # Seed: at L2/L3 the work after diagnosis is the investigation phase.
        events = [replace(e, detail={**e.detail, "phase": "investigacion"}) for e in events]
    return _apply(tx, row, (state, events), ctx)


def _reply(tx: Tx, user: User, row: Row, body: Mapping[str, Any], ctx: ActionContext) -> Row:
    text = text_field(body, "text")
    wait = body.get("wait_for_customer", False)
    if not isinstance(wait, bool):
        raise Rejected("wait_for_customer must be true or false", field="wait_for_customer")
    change = life.agent_reply(state_of(row), user.name, ctx.now, wait=wait)
    assert text is not None
    queue_reply(tx, row, text=text, author=user.name, now=ctx.now, guards=ctx.guards)
    return _apply(tx, row, change, ctx)


def _note(tx: Tx, user: User, row: Row, body: Mapping[str, Any], ctx: ActionContext) -> Row:
    text = text_field(body, "text")
    # Internal notes are messages with direction 'note': shown to agents, never queued to send.
    tx.insert_message(
        {
            "incident_id": row["id"],
            "direction": "note",
            "channel": row["channel"],
            "author": user.name,
            "body": text,
            "at": iso(ctx.now),
        }
    )
    tx.insert_event(row["id"], ctx.now, user.name, "note_added", {})
    tx.update_incident(row["id"], {"updated_at": iso(ctx.now)})
    return tx.incident(row["id"]) or row


def _severity(tx: Tx, user: User, row: Row, body: Mapping[str, Any], ctx: ActionContext) -> Row:
    severity = text_field(body, "severity")
    reason = text_field(body, "reason")
    assert severity is not None
    change = life.change_severity(state_of(row), user.name, ctx.now, severity.upper(), reason)
    return _apply(tx, row, change, ctx)


def _escalate(tx: Tx, user: User, row: Row, body: Mapping[str, Any], ctx: ActionContext) -> Row:
    level = (text_field(body, "level") or "").upper()
    team = text_field(body, "team", required=False)
    reason = text_field(body, "reason")
    teams = ctx.intake.settings.incidents.teams
    if team is not None:
        if team not in teams:
            raise Rejected(f"team must be one of: {', '.join(teams)}", field="team")
        if teams[team].level != level:
            raise Rejected(f"team {team} works {teams[team].level}, not {level}", field="team")
    assert reason is not None
    change = life.escalate(state_of(row), user.name, ctx.now, level, team, reason)
    return _apply(tx, row, change, ctx)


def _resolve(tx: Tx, user: User, row: Row, body: Mapping[str, Any], ctx: ActionContext) -> Row:
    category = text_field(body, "category")
    resolution = text_field(body, "resolution")
    assert category is not None and resolution is not None
    categories = ctx.intake.settings.incidents.categories
    change = life.resolve(state_of(row), user.name, ctx.now, category, resolution, categories)
    # A new resolution asks for a new rating: an earlier one belonged to the earlier solution.
    updated = _apply(tx, row, change, ctx, {"csat": None, "csat_at": None})
    notices.queue_resolution_notice(
        tx,
        updated,
        author=user.name,
        now=ctx.now,
        texts=ctx.intake.texts,
        settings=ctx.intake.settings,
        guards=ctx.guards,
    )
    return updated


def _close(tx: Tx, user: User, row: Row, body: Mapping[str, Any], ctx: ActionContext) -> Row:
    change = life.close(state_of(row), user.name, ctx.now)
    updated = _apply(tx, row, change, ctx, {"closed_at": iso(ctx.now)})
    notices.queue_status(tx, updated, "closed", ctx.now)
    return updated


def _reopen(tx: Tx, user: User, row: Row, body: Mapping[str, Any], ctx: ActionContext) -> Row:
    reason = text_field(body, "reason", required=False)
    change = life.reopen(state_of(row), user.name, ctx.now, reason)
    updated = _apply(tx, row, change, ctx, {"closed_at": None})
    notices.queue_status(tx, updated, "in_progress", ctx.now)
    return updated


Action = Callable[[Tx, User, Row, Mapping[str, Any], ActionContext], Row]
_HANDLERS: dict[str, Action] = {
    "claim": _claim,
    "reply": _reply,
    "note": _note,
    "severity": _severity,
    "escalate": _escalate,
    "resolve": _resolve,
    "close": _close,
    "reopen": _reopen,
}


def perform(
    tx: Tx, user: User, tracking: str, action: str, body: Mapping[str, Any], ctx: ActionContext
) -> Outcome:
    """Run one action on an incident the user may see; raises Rejected/Conflict/NotFound."""
    handler = _HANDLERS.get(action)
    if handler is None:
        raise Rejected(f"action must be one of: {', '.join(ACTIONS)}", field="action")
    row = visible_incident(tx, user, tracking)
    updated = handler(tx, user, row, body, ctx)
    notice: dict[str, Any] = {
        "type": "incident",
        "event": "escalated" if action == "escalate" else "changed",
        "action": action,
        "tracking": row["tracking"],
        "level": updated["level"],
        "from_level": row["level"],
        "team": updated["team"],
    }
    return Outcome(tracking=row["tracking"], action=action, row=updated, notice=notice)
