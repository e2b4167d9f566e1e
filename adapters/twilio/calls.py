"""Outbound calls through Twilio's REST API: placing, looking up, and agents' replies read aloud.

Every API request is bounded in time here (the shared async client does not apply its own
timeout). Errors are classified so callers know whether a call may exist: a 4xx answer means
none was created; a 5xx, a 429 or no answer at all means "unknown" (reconcile before retrying).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.twiml.voice_response import VoiceResponse

from adapters.twilio.client import twilio_client
from adapters.twilio.twiml import say_options, spoken_tracking
from gateway.core.model import OutboundItem, SendError
from gateway.core.timeutil import parse_iso

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
CALL_API = "voice_call_api"  # key in gw.extras
STATUS_PATH = "/webhooks/twilio/status"
TWIML_MAX_CHARS = 4000  # Calls API: the Twiml parameter's maximum length


class CallFailed(Exception):
    """The API answered with an error: no call was created (`permanent`), or it may exist."""

    def __init__(self, reason: str, *, created_unknown: bool):
        super().__init__(reason)
        self.reason = reason
        self.created_unknown = created_unknown


@dataclass
class CallApi:
    """Calls.create / Calls.list on the shared client, each bounded by `timeout` seconds."""

    gw: Gateway
    timeout: float = 10.0

    async def create(self, **params: Any) -> str:
        """Place a call; return its CallSid or raise CallFailed."""
        client = twilio_client(self.gw)
        try:
            call = await asyncio.wait_for(client.calls.create_async(**params), self.timeout)
        except TwilioRestException as exc:
            # https://www.twilio.com/docs/usage/requests-to-twilio: 4xx = refused (e.g. 21215
            # geo permissions, 21211 invalid To); 429 and 5xx may be retried.
            unknown = exc.status >= 500 or exc.status == 429
            reason = f"Twilio {exc.status} {exc.code or ''} {exc.msg}".strip()
            raise CallFailed(reason, created_unknown=unknown) from None
        except (TimeoutError, aiohttp.ClientError, TwilioException, OSError) as exc:
            reason = f"no answer from Twilio: {type(exc).__name__}"
            raise CallFailed(reason, created_unknown=True) from exc
        return str(call.sid)

    async def find(self, *, to: str, from_: str, since: datetime, exclude: set[str]) -> str | None:
        """The CallSid of a call to `to` from `from_` created since `since` (reconciliation)."""
        client = twilio_client(self.gw)
        calls = await asyncio.wait_for(
            client.calls.list_async(to=to, from_=from_, limit=20), self.timeout
        )
        window = since - timedelta(minutes=2)  # tolerate clock skew between us and Twilio
        for call in calls:
            created = call.date_created
            if call.sid not in exclude and (created is None or created >= window):
                return str(call.sid)
        return None


def call_api(gw: Gateway) -> CallApi:
    """The gateway's CallApi (one per gateway, shared by voice and Click2Call)."""
    api = gw.extras.get(CALL_API)
    if api is None:
        api = gw.extras[CALL_API] = CallApi(gw)
    return api


async def add_event(gw: Gateway, incident_id: int, tracking: str, kind: str, detail: dict) -> None:
    """Append an event to an incident's timeline and tell live views."""
    now = gw.clock()
    await gw.store.transact(lambda tx: tx.insert_event(incident_id, now, "system", kind, detail))
    gw.after_commit({"type": "incident", "event": "updated", "tracking": tracking})


async def _reconcile(gw: Gateway, api: CallApi, item: OutboundItem, line: str) -> str | None:
    """The CallSid of a call this reply row already placed, if Twilio has one; raises SendError
    (retried later, never a blind second call) when Twilio cannot be asked."""

    def known(tx: Any) -> tuple[str | None, set[str]]:
        row = tx.one("SELECT created_at FROM outbox WHERE id = ?", (item.id,))
        sids = tx.all(
            "SELECT provider_id FROM outbox WHERE recipient = ? AND provider_id IS NOT NULL"
            " AND channel IN ('voice', 'click2call')",
            (item.recipient,),
        )
        return (row["created_at"] if row else None), {r["provider_id"] for r in sids}

    created_at, exclude = await gw.store.read(known)
    since = parse_iso(created_at) or gw.clock()
    try:
        return await api.find(to=item.recipient, from_=line, since=since, exclude=exclude)
    except Exception as exc:
        raise SendError(
            f"could not check Twilio for an earlier call: {type(exc).__name__}"
        ) from None


def reply_sender(gw: Gateway) -> Any:
    """Outbox sender for kind 'reply' on voice/Click2Call: call the customer, read the reply."""

    async def send(item: OutboundItem) -> str | None:
        if item.kind != "reply":
            raise SendError(f"{item.channel} cannot deliver '{item.kind}' rows", permanent=True)
        tracking = item.tracking or item.payload.get("tracking")
        row = await gw.store.read(
            lambda tx: tx.one(
                "SELECT line, language FROM incidents WHERE tracking = ?", (tracking,)
            )
        )
        if row is None or not tracking:
            raise SendError(f"incident {tracking} not found", permanent=True)
        language = item.payload.get("language") or row["language"]
        resp = VoiceResponse()
        speech = gw.texts.render(
            "voice_reply",
            language,
            text=item.payload.get("text", ""),
            spoken=spoken_tracking(tracking),
        )
        resp.say(speech, **say_options(gw.settings, language))
        resp.hangup()
        twiml = str(resp)
        if len(twiml) > TWIML_MAX_CHARS:
            raise SendError("the reply is too long to be read in a call", permanent=True)
        api = call_api(gw)
        if item.attempts > 1:
            # An earlier attempt may have rung the customer (its answer lost, or the process
            # died mid-call): look the call up by its marker before any new one (checklist T12).
            found = await _reconcile(gw, api, item, row["line"])
            if found is not None:
                log.info("%s reply row %s reconciled with call %s", item.channel, item.id, found)
                return found
        try:
            return await api.create(
                to=item.recipient,
                from_=row["line"],  # caller ID: the incident's country line
                twiml=twiml,
                status_callback=gw.settings.public_url + STATUS_PATH,
            )
        except CallFailed as exc:
            raise SendError(exc.reason, permanent=not exc.created_unknown) from None

    return send
