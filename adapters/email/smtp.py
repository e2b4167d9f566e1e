"""SMTP intake for soporte@: an aiosmtpd server on the gateway's own event loop.

Refuses at RCPT anything but the configured mailboxes (no relaying, ever), bounds size, line
length, recipients, idle time and command counts, and answers `250` to DATA only after the
core committed the raw message — with the tracking number in the reply text. Decides from the
headers and the sender-authentication verdict (`auth`: a DMARC `fail` is a claim, never an
identity); the body is extracted after the commit (`extract`). Never touches SQL
except through `bounce.link_bounce` inside a store transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import weakref
from collections.abc import AsyncIterator
from dataclasses import replace
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from adapters.email.auth import SenderAuth, Verdict
from adapters.email.bounce import MIGRATIONS, link_bounce
from adapters.email.extract import PENDING, BodyExtractor
from adapters.email.parse import HeaderFacts, degraded_facts, read_headers
from adapters.email.send import EmailSender
from gateway.core import quarantine
from gateway.core.dns import DnsPythonResolver
from gateway.core.errors import TemporaryFailure
from gateway.core.model import Contact, Inbound, receipt_key

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
TEMPFAIL = "451 4.3.0 Temporary failure, please try again later"
UNVERIFIED = "sender_unverified"  # the incident flag of mail whose DMARC result is `fail`
# Per-connection budgets (aiosmtpd `command_call_limit`): a NOOP/RSET loop that dodges the idle
# timeout gets 421 and is disconnected (checklist E8); MAIL/RCPT/DATA allow long sessions.
CALL_LIMITS = {"NOOP": 20, "RSET": 200, "HELO": 5, "EHLO": 5, "VRFY": 5, "HELP": 5, "*": 20000}
BUSY = "421 4.3.2 Too many connections; try again later"
TOO_MUCH_IN_FLIGHT = "421 4.3.2 Too much mail in transit; try again later"
PREVIEW_CHARS = 2000  # of a reply's text, read before its commit (the rest follows)
QUIET_GAP = 0.05  # seconds without SMTP DATA before body extraction may use the CPU
SOURCE_ROUTE = re.compile(r"^\s*TO:\s*<\s*@", re.IGNORECASE)


def reservation(mail_options: list[str], limit: int) -> int:
    """Bytes one DATA may hold: the declared SIZE plus 10% and 4 KiB, at most `limit`."""
    for option in mail_options:
        key, _, value = option.partition("=")
        if key.upper() == "SIZE" and value.isdigit():
            return min(limit, int(value) + int(value) // 10 + 4096)
    return limit


class GatewaySMTP(SMTP):
    """aiosmtpd's protocol, with a per-address connection cap and no source routes."""

    def __init__(self, handler: EmailHandler, **kwargs: Any):
        super().__init__(handler, **kwargs)
        self.gateway = handler
        self.peer_ip: str | None = None
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else None
        counts = self.gateway.per_ip
        refusal = None
        if self.gateway.connections >= self.gateway.max_connections:
            refusal = BUSY  # all addresses together ([limits] smtp_max_connections)
        elif ip is not None and counts.get(ip, 0) >= self.gateway.max_per_ip:
            # Checklist E8: aiosmtpd has no per-address cap; refuse before any state exists.
            refusal = "421 4.7.0 Too many connections from your address"
        if refusal is not None:
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(refusal.encode() + b"\r\n")
            transport.close()
            self.refused = True
            return
        self.gateway.connections += 1
        if ip is not None:
            counts[ip] = counts.get(ip, 0) + 1
            self.peer_ip = ip
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.refused:
            return  # refused in connection_made: aiosmtpd never set up its session
        counts = self.gateway.per_ip
        self.gateway.connections -= 1
        if self.peer_ip is not None:
            counts[self.peer_ip] -= 1
            if counts[self.peer_ip] <= 0:
                del counts[self.peer_ip]
            self.peer_ip = None
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd holds a message's DATA in memory up to data_size_limit: each DATA reserves
        # its share of [limits] smtp_data_memory_bytes, so all connections together stay under
        # it; over it, 421 (RFC 5321 §4.2.3) and the sending MTA retries later. The share is
        # the size declared at MAIL FROM (RFC 1870, which MTAs and aiosmtplib send) with some
        # slack, and the message is then held to it (552 beyond); else the size limit.
        if self.envelope is None or not self.envelope.rcpt_tos:
            await super().smtp_DATA(arg)  # its own 503/501 answers
            return
        limit = self.data_size_limit or 0
        size = reservation(self.envelope.mail_options, limit)
        if self.gateway.data_reserved + size > self.gateway.data_budget:
            log.warning("SMTP DATA refused: %d bytes in transit", self.gateway.data_reserved)
            await self.push(TOO_MUCH_IN_FLIGHT)
            if self.transport is not None:
                self.transport.close()
            return
        self.gateway.data_reserved += size
        self.data_size_limit = size
        try:
            await super().smtp_DATA(arg)
        finally:
            self.data_size_limit = limit
            self.gateway.data_reserved -= size

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's own address parse for MAIL FROM, RCPT TO and VRFY, the same standard
        library calls and answers, without the `typing.Protocol` class its 1.4 version defines
        (for its type checker) on every call: building a class per address cost more than the
        parse, and each one was a reference cycle for the collector (bench/smtp.py one at a
        time)."""
        if not arg:
            return "", ""
        try:
            if arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
        except HeaderParseError:
            return None, None
        addr = address.addr_spec
        localpart = addr.rpartition("@")[0]
        if self.local_part_limit and len(localpart) > self.local_part_limit:
            return None, None
        return addr, rest

    async def smtp_RCPT(self, arg: str | None) -> None:
        # aiosmtpd drops the route and keeps `user@domain`; a route is a relay request: refuse.
        if arg and SOURCE_ROUTE.match(arg) and self.envelope and self.envelope.mail_from:
            await self.push("550 5.1.1 Source routes are not accepted here")
            return
        await super().smtp_RCPT(arg)


class EmailHandler:
    """aiosmtpd handler: RCPT policy, then one intake call per message."""

    def __init__(self, gw: Gateway, extractor: BodyExtractor):
        self.gw = gw
        self.extractor = extractor
        cfg = gw.settings.email
        resolver = gw.resolver or DnsPythonResolver(cfg.dns_timeout.total_seconds())
        self.auth = SenderAuth(cfg, resolver)
        self.accepted = {a.lower() for a in cfg.addresses}
        self.own = self.accepted | {cfg.from_address.lower()}
        self.loop_id = cfg.from_address.lower()
        self.hostname = cfg.from_address.partition("@")[2] or "localhost"
        self.in_flight = 0
        self.last_data = 0.0  # loop time the last DATA finished
        extractor.quiet = self.quiet
        self.protocols: weakref.WeakSet[SMTP] = weakref.WeakSet()
        self.per_ip: dict[str, int] = {}
        limits = gw.settings.limits
        self.max_per_ip = limits.smtp_connections_per_ip
        self.max_connections = limits.smtp_max_connections
        self.connections = 0  # open connections, all addresses
        self.data_budget = limits.smtp_data_memory_bytes
        self.data_reserved = 0  # bytes of DATA the open transactions may hold in memory

    def protocol(self) -> SMTP:
        """A protocol instance for one connection, with every limit set."""
        cfg = self.gw.settings.email
        proto = GatewaySMTP(
            self,
            data_size_limit=cfg.max_message_bytes,  # SIZE at MAIL FROM and DATA: 552
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=self.hostname,  # no getfqdn(): it can block on DNS
            ident="CallMyWay ESMTP",
            timeout=cfg.idle_timeout.total_seconds(),
            command_call_limit=CALL_LIMITS,
            loop=asyncio.get_running_loop(),
        )
        self.protocols.add(proto)
        return proto

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        """Only the support mailboxes, compared whole and case-insensitively (RFC 5321 §2.4)."""
        if len(envelope.rcpt_tos) >= self.gw.settings.email.max_recipients:
            return "452 4.5.3 Too many recipients"
        if address.lower() not in self.accepted:
            return "550 5.1.1 Recipient not accepted here; this server does not relay"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Commit, then answer 250 with the tracking number; 451 if nothing could be saved."""
        self.in_flight += 1
        try:
            raw = bytes(envelope.original_content or b"")
            mail_from = str(envelope.mail_from or "")
            facts = self._facts(raw, mail_from)
            if facts.loop:
                # RFC 5321 §6.3: refuse loops outright; the sending MTA reports it to its user.
                log.warning("mail loop refused (%s): %s", facts.loop, facts.message_id)
                return "554 5.4.6 Mail loop detected"
            tracking = await self._linked_bounce(raw, facts) if facts.is_bounce else None
            if tracking is None and facts.is_bounce:
                # Backscatter: a report naming no mail we sent goes to the quarantine, never
                # to the L1 queue (CONTRACT "Quarantine"); committed before the 250.
                inbound = self._inbound(raw, facts, mail_from, Verdict("unchecked", "none"))
                now = self.gw.clock()
                await self.gw.store.transact(
                    lambda tx: quarantine.hold(tx, inbound, "unmatched_bounce", now),
                    keys=(receipt_key(inbound.channel, inbound.provider_id),),
                )
                log.info("unmatched delivery report quarantined: %s", facts.provider_id)
                return "250 2.0.0 Accepted for review"
            if tracking is None:
                verdict = await self.auth.verdict(
                    raw,
                    peer=session.peer[0] if isinstance(session.peer, tuple) else None,
                    helo=session.host_name,
                    mail_from=mail_from,
                    sender=facts.from_address,
                )
                inbound = self._inbound(raw, facts, mail_from, verdict)
                if verdict.refused:
                    # The From domain asks receivers to reject what fails DMARC: held for a
                    # supervisor (CONTRACT "Quarantine"), committed before the 250.
                    now = self.gw.clock()
                    await self.gw.store.transact(
                        lambda tx: quarantine.hold(tx, inbound, "auth_refused", now),
                        keys=(receipt_key(inbound.channel, inbound.provider_id),),
                    )
                    log.warning("DMARC reject policy: quarantined %s", facts.provider_id)
                    return "250 2.0.0 Accepted for review"
                parsed = None
                if facts.tracking_hints or facts.references:
                    # A reply may be a 1-5 rating or a "gracias" to a resolved case: the core
                    # reads its words before deciding whether it reopens (the body still follows,
                    # from this parse: the extractor does not parse it again).
                    parsed = await self.extractor.parse(raw)
                    preview = parsed.text[:PREVIEW_CHARS]
                    inbound = replace(inbound, meta={**inbound.meta, "text_preview": preview})
                receipt = await self.gw.intake.accept(inbound)
                tracking = receipt.tracking
                if not receipt.duplicate and receipt.message_id is not None:
                    self.extractor.submit(receipt.message_id, raw, parsed)
            return f"250 2.0.0 Accepted as {tracking}"
        except TemporaryFailure as exc:
            log.error("email intake not committed: %s", exc.message)
            return TEMPFAIL
        finally:
            self.in_flight -= 1
            self.last_data = asyncio.get_running_loop().time()

    def quiet(self) -> bool:
        """No DATA in flight and none for QUIET_GAP: a moment to extract bodies."""
        idle = asyncio.get_running_loop().time() - self.last_data
        return self.in_flight == 0 and idle >= QUIET_GAP

    async def handle_exception(self, error: Exception) -> str:
        """Any unexpected error is temporary for the sender, and its text stays in our log."""
        log.error("SMTP session error", exc_info=error)
        return TEMPFAIL

    def _facts(self, raw: bytes, mail_from: str) -> HeaderFacts:
        try:
            return read_headers(
                raw, mail_from=mail_from, own_addresses=self.own, loop_id=self.loop_id
            )
        except Exception:  # a reader bug must not lose the mail: store it raw, for an operator
            log.exception("could not read the headers of a message; storing it raw")
            return degraded_facts(raw, mail_from)

    def _inbound(self, raw: bytes, facts: HeaderFacts, mail_from: str, verdict: Verdict) -> Inbound:
        cfg = self.gw.settings.email
        contact = Contact(name=facts.from_name, email=facts.from_address)
        claims: dict[str, str] = {}
        flags, acknowledge = facts.flags, facts.acknowledge
        if verdict.failed:
            # DMARC fail: the From is someone the sender is not. It stays visible as a claim;
            # it finds no contact, joins nothing, and gets no acknowledgement (backscatter).
            log.warning(
                "DMARC fail (%s) for %s: new unverified incident", verdict.source, facts.provider_id
            )
            contact = Contact()
            claims = {
                k: v for k, v in (("email", facts.from_address), ("name", facts.from_name)) if v
            }
            flags, acknowledge = (*flags, UNVERIFIED), False
        return Inbound(
            channel="email",
            provider_id=facts.provider_id,
            contact=contact,
            claims=claims,
            text="",  # filled in by the extractor right after the commit
            received_at=self.gw.clock(),
            subject=facts.subject or None,
            tracking_hints=facts.tracking_hints,
            references=facts.references,
            message_ref=facts.message_id,
            acknowledge=acknowledge,
            ack_window=cfg.ack_window,
            language=facts.language,
            author=facts.from_name or facts.from_address,
            raw=raw,
            flags=(*flags, PENDING),
            meta={"mail_from": mail_from, "dmarc": verdict.dmarc},
        )

    async def _linked_bounce(self, raw: bytes, facts: HeaderFacts) -> str | None:
        body = await self.extractor.parse(raw)  # DSNs are small; bounded by parse_timeout
        refs = [*facts.references, *body.original_ids]
        now = self.gw.clock()
        tracking = await self.gw.store.transact(
            lambda tx: link_bounce(
                tx,
                provider_id=facts.provider_id,
                refs=refs,
                recipients=body.failed_recipients,
                diagnostic=body.diagnostic,
                raw=raw,
                now=now,
            )
        )
        if tracking:
            log.info("delivery report linked to %s", tracking)
            self.gw.after_commit({"type": "incident", "event": "message", "tracking": tracking})
        return tracking

    async def drain(self, grace: float) -> None:
        """Wait (up to `grace` seconds) for messages being committed, then close connections."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.in_flight and loop.time() < deadline:  # noqa: ASYNC110 - a counter, polled
            await asyncio.sleep(0.05)
        for proto in list(self.protocols):
            if proto.transport is not None:
                proto.transport.close()


async def _smtp_ctx(gw: Gateway, handler: EmailHandler) -> AsyncIterator[None]:
    await handler.auth.warm()
    await handler.extractor.start()
    loop = asyncio.get_running_loop()
    host, port = gw.settings.smtp_host, gw.settings.smtp_port
    server = await loop.create_server(handler.protocol, host, port)
    gw.extras["smtp_port"] = server.sockets[0].getsockname()[1]
    log.info("SMTP listening on %s:%s", gw.settings.smtp_host, gw.extras["smtp_port"])
    yield
    server.close()  # stop accepting first (checklist D10), then let DATA in flight commit
    await handler.drain(gw.settings.shutdown_timeout.total_seconds())
    with contextlib.suppress(Exception):
        await asyncio.wait_for(server.wait_closed(), timeout=2)
    await handler.extractor.stop()


def setup(gw: Gateway) -> None:
    """Register the SMTP listener, the body extractor, migrations and (with a relay) the sender."""
    gw.add_migrations("email", MIGRATIONS)
    # aiosmtpd logs every command line at INFO (peer addresses included): keep only problems.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    extractor = BodyExtractor(gw)
    handler = EmailHandler(gw, extractor)
    gw.extras["email_extractor"] = extractor
    gw.extras["email_handler"] = handler
    if gw.settings.smtp_relay is not None:
        gw.outbox.register("email", EmailSender(gw).send, ack_text=False)

    async def ctx(app: web.Application) -> AsyncIterator[Any]:
        async for _ in _smtp_ctx(gw, handler):
            yield

    gw.app.cleanup_ctx.append(ctx)
