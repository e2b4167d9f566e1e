"""Outbound mail through `GATEWAY_SMTP_RELAY` (aiosmtplib): acknowledgements, agent replies and
chat visitors' address confirmations.

Builds real MIME from outbox rows: `[CMW-…]` in the Subject, In-Reply-To/References, our
X-Loop, `Auto-Submitted: auto-replied` on acknowledgements (RFC 3834), and a Message-ID of
ours, returned as the provider id so a customer's reply to it threads. Every customer-supplied
header value is reduced to one clean line first: no header injection (checklist E15). Relay
4xx / unreachable → retried; 5xx → permanent. Reads the incident; never writes the store.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import socket
from email.message import EmailMessage
from email.policy import EmailPolicy
from email.utils import format_datetime, formataddr
from typing import TYPE_CHECKING, Any

import aiosmtplib

from adapters.email.body import HEADER_CLASSES
from adapters.email.parse import clean_line, message_ids, plain_address
from gateway.core.model import OutboundItem, SendError
from gateway.core.timeutil import parse_iso

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
# Headers whose values repeat from mail to mail: our From (one per language), X-Loop, the
# auto-reply marks, the MIME headers set_content writes, the Date within a second.
_REPEATING = frozenset(
    {"from", "x-loop", "auto-submitted", "x-auto-response-suppress", "mime-version",
     "content-type", "content-transfer-encoding", "date"}
)  # fmt: skip
_MEMO_LIMIT = 256  # entries before the memo starts over (Date values come and go)
_PARSED: dict[tuple[str, str], tuple[str, Any]] = {}
_FOLDED: dict[tuple[int, bool, str, int | None, str], bytes] = {}
_HELD: dict[int, Any] = {}  # id -> the memoised header object (kept alive: ids stay valid)


class OutPolicy(EmailPolicy):
    """`email.policy.SMTP` with one header class per kind (the standard registry makes a new
    class for each header set: 10 per mail) and repeating headers parsed and folded once per
    process instead of once per mail. Header objects are immutable, and folding depends only
    on the object and the policy's folding settings, so every mail's bytes are those of
    `email.policy.SMTP` (tests/adapters/email/test_email_outbound.py)."""

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        if type(value) is not str or name.lower() not in _REPEATING:  # a header object too
            return super().header_store_parse(name, value)
        key = (name, value)
        stored = _PARSED.get(key)
        if stored is None:
            stored = super().header_store_parse(name, value)  # may raise: nothing kept then
            if len(_PARSED) >= _MEMO_LIMIT:
                _PARSED.clear()
                _FOLDED.clear()
                _HELD.clear()
            _PARSED[key] = stored
            _HELD[id(stored[1])] = stored[1]
        return stored

    def fold_binary(self, name: str, value: Any) -> bytes:
        if _HELD.get(id(value)) is not value:
            return super().fold_binary(name, value)
        key = (id(value), self.utf8, self.cte_type, self.max_line_length, self.linesep)
        folded = _FOLDED.get(key)
        if folded is None:
            folded = _FOLDED[key] = super().fold_binary(name, value)
        return folded


# An acknowledgement built and flattened (timeit, 3,000 mails with their own To, Subject and
# ids): 1,237-1,286 µs with email.policy.SMTP, 753-808 with the header classes, 425-448 with
# the memo too.
OUT_POLICY = OutPolicy(linesep="\r\n", header_factory=HEADER_CLASSES)
SEND_TIMEOUT = 30.0
# "Re: Fwd: [CMW-0000042-7] ..." → the customer's own words, so prefixes do not pile up.
_PREFIX = re.compile(r"^\s*((re|fw|fwd|rv|aw|sv|tr)\s*:\s*|\[CMW-[0-9]{7,}-[0-9]\]\s*)+", re.I)


def clean_subject(subject: str | None, tracking: str | None) -> str:
    """The customer's subject as one safe line, without reply prefixes or our tracking tag."""
    text = _PREFIX.sub("", clean_line(subject or ""))
    if tracking:
        text = text.replace(f"[{tracking}]", "").replace(tracking, "")
    return clean_line(text)[:150]


class EmailSender:
    """The outbox sender of channel "email"."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        self.relay = gw.settings.smtp_relay
        self.from_address = gw.settings.email.from_address
        self.domain = self.from_address.partition("@")[2] or "localhost"
        self._ehlo_name: str | None = None  # this host's FQDN, looked up once
        self._ehlo_lookup: asyncio.Future[str] | None = None  # the lookup under way

    async def ehlo_name(self) -> str:
        """The name our EHLO gives the relay: this host's FQDN, as aiosmtplib would use, but
        looked up once per process (aiosmtplib asks `socket.getfqdn` in a thread per
        connection: 8 % of the gateway's CPU while chat confirmation mails went out). Sends
        that start together wait for the one lookup under way."""
        if self._ehlo_name is None:
            if self._ehlo_lookup is None:
                self._ehlo_lookup = asyncio.ensure_future(asyncio.to_thread(socket.getfqdn))
            try:
                # shield: a send cancelled while it waits leaves the lookup to the others
                found = await asyncio.shield(self._ehlo_lookup)
            except Exception:
                self._ehlo_lookup = None  # the next send asks again
                raise
            self._ehlo_name = found or self.domain
        return self._ehlo_name

    async def send(self, item: OutboundItem) -> str:
        """Deliver one outbox row; returns the Message-ID we gave it."""
        if item.kind not in ("ack", "reply", "notice", "confirm"):
            raise SendError(f"email cannot deliver rows of kind {item.kind!r}", permanent=True)
        recipient = plain_address(item.recipient)
        if recipient is None:
            raise SendError("the recipient is not a plain email address", permanent=True)
        incident = await self._incident(item.incident_id)
        try:
            msg = self.build(item, recipient, incident)
        except (ValueError, TypeError) as exc:  # a header the email package refuses
            reason = f"could not build the message: {type(exc).__name__}"
            raise SendError(reason, permanent=True) from exc
        try:
            await self._deliver(msg, recipient)
        except SendError as exc:
            # A permanent refusal is the relay answering: it is up (adapter health, NOC).
            if exc.permanent:
                self.gw.providers.ok("smtp")
            else:
                self.gw.providers.failed("smtp", exc.reason)
            raise
        self.gw.providers.ok("smtp")
        return str(msg["Message-ID"])

    async def _incident(self, incident_id: int | None) -> dict[str, Any]:
        if incident_id is None:
            return {}
        row = await self.gw.store.read(lambda tx: tx.incident(incident_id))
        return row or {}

    def build(self, item: OutboundItem, recipient: str, incident: dict[str, Any]) -> EmailMessage:
        """The MIME message for an ack or a reply (pure apart from the clock)."""
        p = item.payload
        tracking = item.tracking or p.get("tracking") or incident.get("tracking") or ""
        lang = incident.get("language") or p.get("language") or "es"
        subject = clean_subject(p.get("subject") or incident.get("subject"), tracking)
        name = clean_line(p.get("name") or "")[:100] or None
        texts = self.gw.texts
        if item.kind == "confirm":  # a chat visitor's address to confirm (adapters.webchat)
            body = texts.render("email_confirm", lang, link=p.get("link") or "")
            title = texts.render("email_confirm_subject", lang)
        elif item.kind == "ack":
            cfg = self.gw.settings.routing
            line = cfg.lines.get(incident.get("country") or "", cfg.default_line)
            opens_at = parse_iso(p.get("opens_at"))
            ctx: dict[str, Any] = {"tracking": tracking, "name": name, "line": line}
            ctx.update(after_hours=bool(p.get("after_hours")), subject=subject)
            if opens_at is not None:
                ctx["opens_at"] = opens_at
            body = texts.render("email_ack", lang, **ctx)
            title = texts.render("email_ack_subject", lang, tracking=tracking, subject=subject)
        elif item.kind == "notice":  # the resolution notice: answered by a 1-5 rating
            body = texts.render("email_notice", lang, text=p.get("text") or "", tracking=tracking)
            title = texts.render("email_notice_subject", lang, tracking=tracking, subject=subject)
        else:
            author = clean_line(p.get("author") or "")[:100]
            body = texts.render(
                "email_reply", lang, text=p.get("text") or "", author=author, tracking=tracking
            )
            title = texts.render("email_reply_subject", lang, tracking=tracking, subject=subject)
        msg = EmailMessage(policy=OUT_POLICY)
        msg["From"] = formataddr((texts.render("email_from_name", lang), self.from_address))
        msg["To"] = formataddr((name, recipient)) if name else recipient
        msg["Subject"] = clean_line(title)
        msg["Date"] = format_datetime(self.gw.clock())
        # Short enough never to be folded (some clients mis-thread folded ids); unique per row.
        msg["Message-ID"] = f"<{tracking}.{item.id}.{secrets.token_hex(6)}@{self.domain}>"
        in_reply_to = message_ids(p.get("in_reply_to"))
        refs = [r for ref in p.get("references") or [] for r in message_ids(str(ref))][-20:]
        if in_reply_to:
            msg["In-Reply-To"] = in_reply_to[0]
            refs = [*[r for r in refs if r != in_reply_to[0]], in_reply_to[0]]
        if refs:
            msg["References"] = " ".join(refs)  # folded by the policy (RFC 5322 §3.6.4)
        msg["X-Loop"] = self.from_address  # recognised at intake: our own mail never loops
        if item.kind == "confirm":
            msg["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5: not a reply to anything
        if item.kind == "ack":
            msg["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5
            msg["X-Auto-Response-Suppress"] = "All"  # keep Exchange out-of-office quiet
        msg.set_content(body, charset="utf-8")
        return msg

    async def _deliver(self, msg: EmailMessage, recipient: str) -> None:
        assert self.relay is not None
        host, port = self.relay
        try:
            # Envelope sender is our mailbox (not <>), so DSNs come back and get linked.
            await aiosmtplib.send(
                msg,
                hostname=host,
                port=port,
                sender=self.from_address,
                recipients=[recipient],
                timeout=SEND_TIMEOUT,
                local_hostname=await self.ehlo_name(),
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            permanent = bool(codes) and all(500 <= c < 600 for c in codes)
            raise SendError(f"relay refused the recipient ({codes})", permanent=permanent) from exc
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            raise SendError(f"relay answered {exc.code}", permanent=permanent) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise SendError(f"relay unreachable: {type(exc).__name__}") from exc
