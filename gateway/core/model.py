"""Channel-neutral value types of the core: what adapters hand in and what they get back.

Adapters build an `Inbound` from their wire format and receive a `Receipt` to acknowledge with;
senders receive an `OutboundItem` from the outbox. No I/O here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, Literal

Channel = Literal["email", "whatsapp", "webchat", "click2call", "voice", "telegram"]
CHANNELS: tuple[str, ...] = ("email", "whatsapp", "webchat", "click2call", "voice", "telegram")
STATUSES: tuple[str, ...] = ("new", "in_progress", "waiting_customer", "resolved", "closed")
OPEN_STATUSES: tuple[str, ...] = ("new", "in_progress", "waiting_customer")


@dataclass(frozen=True)
class Contact:
    """Who wrote, as far as the channel proves it: any of these may be unknown.

    Only a proven identity goes here (a signed WhatsApp `From`, a Telegram chat, an email sender
    as far as its authentication goes, a signed chat token); typed data goes in `Inbound.claims`.
    """

    name: str | None = None
    email: str | None = None
    phone: str | None = None  # E.164
    telegram_chat_id: str | None = None
    visitor_id: str | None = None  # web chat visitor (signed token subject)


@dataclass(frozen=True)
class AttachmentIn:
    """A file that came with a message; `data` None when it is still to be fetched from `url`."""

    filename: str
    content_type: str
    size: int
    data: bytes | None = None
    url: str | None = None
    inline: bool = False


@dataclass(frozen=True)
class Inbound:
    """One customer contact or message, as any adapter hands it to the core."""

    channel: str
    provider_id: str  # dedupe key within the channel: Message-ID, MessageSid, update_id...
    contact: Contact
    text: str
    received_at: datetime  # the message's own time (aware UTC)
    subject: str | None = None
    occurred_at: datetime | None = None  # when the customer says the problem began
    attachments: tuple[AttachmentIn, ...] = ()
    tracking_hints: tuple[str, ...] = ()  # valid tracking numbers quoted by the customer
    references: tuple[str, ...] = ()  # channel message ids this one answers (email)
    message_ref: str | None = None  # this message's own id for later threading (Message-ID)
    called: str | None = None  # voice: the line number that was called
    chosen_country: str | None = None  # a form's country
    severity: str | None = None  # from the customer's impact answers, if asked
    thread_by_contact: bool = False  # join the contact's open incident on this channel
    acknowledge: bool = True  # queue an acknowledgement through the outbox
    ack_window: timedelta | None = None  # at most one outbox acknowledgement per recipient
    language: str | None = None  # the customer's language when detected
    author: str | None = None  # display name of the sender on the timeline
    raw: bytes | None = None  # the wire payload, kept for forensics and replay
    flags: tuple[str, ...] = ()  # e.g. "parse_degraded", "auto_submitted"
    meta: dict[str, Any] = field(default_factory=dict)
    # What the customer typed about themselves (a form's name, email, phone): shown to agents as
    # unverified, never used to find a contact, thread or make anyone a participant. `contact`
    # holds only what the channel proved.
    claims: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """What the core committed for an inbound item; adapters acknowledge from it."""

    tracking: str
    incident_id: int
    message_id: int | None
    created: bool  # a new incident was registered
    duplicate: bool  # this provider id had been accepted before: same receipt again
    status: str
    country: str
    language: str
    after_hours: bool
    opens_at: datetime | None
    render_ack: Callable[[], str] = field(repr=False, compare=False, default=lambda: "")
    follow_up: str | None = None  # "csat" or "thanks": an answer kept on a resolved incident

    @cached_property
    def ack_text(self) -> str:
        """The acknowledgement to show the customer (templates, customer's language).

        Rendered on first use, outside the database thread: most follow-ups never show it.
        """
        return self.render_ack()


@dataclass(frozen=True)
class OutboundItem:
    """One outbox row handed to a channel sender."""

    id: int
    channel: str
    kind: str  # "ack", "reply", "notice", ...
    recipient: str
    incident_id: int | None
    tracking: str | None
    message_id: int | None
    payload: dict[str, Any]
    attempts: int


class SendError(Exception):
    """A sender's failure: `permanent` ones are dead-lettered at once, others retried."""

    def __init__(self, reason: str, *, permanent: bool = False, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.retry_after = retry_after


def receipt_key(channel: str, provider_id: str) -> str:
    """The lock key of one provider item (`Tx.lock_key`): the same item delivered to two
    instances, or kept and processed at once, is handled one after the other."""
    return f"receipt:{channel}:{provider_id}"


def inbound_to_json(msg: Inbound) -> str:
    """Serialise an inbound item (bytes as base64) so a shunted one can be replayed."""

    def encode(value: Any) -> Any:
        if isinstance(value, bytes):
            return {"__b64__": base64.b64encode(value).decode()}
        if isinstance(value, datetime):
            return {"__dt__": value.isoformat()}
        if isinstance(value, timedelta):
            return {"__td__": value.total_seconds()}
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [encode(v) for v in value]
        return value

    return json.dumps(encode(asdict(msg)))


def inbound_from_json(text: str) -> Inbound:
    """Inverse of `inbound_to_json`."""

    def decode(value: Any) -> Any:
        if isinstance(value, dict):
            if "__b64__" in value:
                return base64.b64decode(value["__b64__"])
            if "__dt__" in value:
                return datetime.fromisoformat(value["__dt__"])
            if "__td__" in value:
                return timedelta(seconds=value["__td__"])
            return {k: decode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    data = decode(json.loads(text))
    data["contact"] = Contact(**data["contact"])
    data["attachments"] = tuple(AttachmentIn(**a) for a in data["attachments"])
    for name in (f.name for f in fields(Inbound)):
        if isinstance(data.get(name), list):
            data[name] = tuple(data[name])
    return Inbound(**data)
