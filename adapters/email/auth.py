"""Sender authentication of inbound mail: is the From address really the sender's?

From a peer in `[email] trusted_relays`, the relay's `Authentication-Results` header (RFC 8601)
under our `[email] authserv_id` is believed: the topmost one, which the relay adds on top of what
the message brought (RFC 8601 §5: the relay should also drop any claiming its id). Every other
such header, and all of them from any other peer, are ignored: a sender can write anything.
From any other peer the gateway checks SPF (pyspf), DKIM (dkimpy) and DMARC (`dmarc`) itself,
DNS through the injected `Resolver` with `[email] dns_timeout` per query. Only the verdict
leaves this module; the SMTP handler decides what a `fail` means for the intake.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import Any

import authres
import dkim
import spf

from adapters.email.dmarc import Record, evaluate, org_domain, parse_record
from adapters.email.parse import header_block, split_headers
from config.settings import EmailSettings
from gateway.core.dns import DnsTempError, Resolver

log = logging.getLogger(__name__)
MAX_SIGNATURES = 5  # DKIM signatures checked per message
MAX_SPF_QUERIES = 40  # RFC 7208 §4.6.4 allows 10 mechanism look-ups, each with a few queries
_HEADER_END = re.compile(rb"\n\r?\n")  # dkimpy's end of headers: the first empty line


def may_be_signed(raw: bytes) -> bool:
    """False when the header section, split as dkimpy splits it, names no DKIM-Signature:
    dkimpy would find nothing to check (parsing the message for that cost ~0.2 ms)."""
    end = _HEADER_END.search(raw)
    head = raw[: end.start()] if end else raw
    return b"dkim-signature" in head.lower()


@dataclass(frozen=True)
class Verdict:
    """What authentication says of a message's From: the DMARC result and where it came from."""

    dmarc: str  # pass | fail | none | temperror | permerror | unchecked
    source: str  # "relay" (its Authentication-Results), "gateway" (checked here) or "none"
    spf: str = "none"
    dkim: str = "none"
    policy: str = "none"  # what the From domain's DMARC record asks of a failing message

    @property
    def failed(self) -> bool:
        """DMARC evaluated to `fail`: the From is not the sender's (CONTRACT "SMTP")."""
        return self.dmarc == "fail"

    @property
    def refused(self) -> bool:
        """DMARC `fail` where the From domain asks receivers to quarantine or reject what fails
        (`p=quarantine`, `p=reject`): the mail is held in the gateway's quarantine for a
        supervisor, never put in the L1 queue. Under `p=none` it is delivered, flagged."""
        return self.failed and self.policy in ("quarantine", "reject")


def relay_verdict(raw: bytes, authserv_id: str) -> Verdict:
    """The DMARC result of the topmost Authentication-Results under our authserv-id."""
    for value in split_headers(header_block(raw)).get("authentication-results", []):
        try:
            header = authres.AuthenticationResultsHeader.parse_value(value)
        except authres.AuthResError:
            continue
        if str(header.authserv_id).lower() != authserv_id.lower():
            continue  # another host's (or a forged) header: says nothing to us
        results = {r.method.lower(): str(r.result).lower() for r in header.results}
        return Verdict(
            dmarc=results.get("dmarc", "none"),
            source="relay",
            spf=results.get("spf", "none"),
            dkim=results.get("dkim", "none"),
            policy=_relay_policy(header, value),
        )
    return Verdict(dmarc="none", source="relay")


_POLICY_COMMENT = re.compile(r"dmarc\s*=\s*fail\s*\([^)]*\bp\s*=\s*(\w+)", re.IGNORECASE)


def _relay_policy(header: Any, value: str) -> str:
    """The DMARC policy a relay reported: `policy.dmarc=` (RFC 7489 §11.2) or the common
    `dmarc=fail (p=REJECT …)` comment."""
    for result in header.results:
        if result.method.lower() != "dmarc":
            continue
        for prop in result.properties:
            if (prop.type, prop.name) == ("policy", "dmarc") and prop.value:
                return str(prop.value).lower()
    match = _POLICY_COMMENT.search(value)
    return match.group(1).lower() if match else "none"


class _Pending(Exception):
    """pyspf asked for a DNS answer not fetched yet."""

    def __init__(self, key: tuple[str, str]):
        super().__init__(key)
        self.key = key


class _ReplayQuery(spf.query):  # type: ignore[misc]
    """pyspf's evaluation with its DNS answered from a dict filled asynchronously.

    pyspf resolves synchronously; instead of a thread per check, the evaluation is run again
    after each missing answer is fetched on the event loop (it is cheap CPU; answers are kept).
    """

    answers: dict[tuple[str, str], list[Any] | Exception]

    def dns(self, name: str, qtype: str, cnames: Any = None, ignore_void: bool = False) -> list:
        name = str(name).lower().rstrip(".")
        if not name or any(not 0 < len(label) < 64 for label in name.split(".")):
            return []  # not a DNS name (pyspf's own rule)
        key = (name, qtype)
        if key not in self.answers:
            raise _Pending(key)
        result = self.answers[key]
        if isinstance(result, Exception):
            raise spf.TempError(f"DNS {result}")
        if not result and not ignore_void:
            self.void_lookups += 1
            if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} exceeded")
        if qtype in ("TXT", "SPF"):
            return [[text] for text in result]  # pyspf: each TXT record is a list of strings
        return list(result)


class SenderAuth:
    """The sender-authentication verdict of each inbound message."""

    def __init__(self, cfg: EmailSettings, resolver: Resolver):
        self.cfg = cfg
        self.resolver = resolver
        self.relays = [ipaddress.ip_network(n, strict=False) for n in cfg.trusted_relays]
        self.timeout = cfg.dns_timeout.total_seconds()

    async def warm(self) -> None:
        """Load the Public Suffix List (DMARC's organizational domains) in a thread now, rather
        than on the event loop during the first message (~0.1 s)."""
        if self.cfg.verify_sender:
            await asyncio.to_thread(org_domain, "example.com")

    def trusted(self, peer: str | None) -> bool:
        """The peer is one of our relays."""
        try:
            ip = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        return any(ip in net for net in self.relays)

    async def verdict(
        self, raw: bytes, *, peer: str | None, helo: str | None, mail_from: str, sender: str | None
    ) -> Verdict:
        """Believe our relay, else check here; never raises (a failure is `temperror`)."""
        if self.trusted(peer):
            return relay_verdict(raw, self.cfg.authserv_id)
        if not self.cfg.verify_sender or not sender or "@" not in sender:
            return Verdict(dmarc="unchecked", source="none")
        try:
            budget = self.timeout * 4  # a handful of sequential queries at most
            # asyncio.timeout, not wait_for: no task per call (wait_for's costs 8 us; ~4 a mail)
            async with asyncio.timeout(budget):
                return await self._check(raw, peer, helo, mail_from, sender)
        except TimeoutError:
            return Verdict(dmarc="temperror", source="gateway")
        except Exception:  # a library bug must not lose the mail: it is simply not verified
            log.exception("sender authentication failed for a message from %s", peer)
            return Verdict(dmarc="temperror", source="gateway")

    async def _query(self, name: str, rdtype: str) -> list[Any]:
        try:
            async with asyncio.timeout(self.timeout):
                return await self.resolver.query(name, rdtype)
        except TimeoutError:
            raise DnsTempError(f"{rdtype} {name}: timeout") from None

    async def _check(
        self, raw: bytes, peer: str | None, helo: str | None, mail_from: str, sender: str
    ) -> Verdict:
        from_domain = sender.rpartition("@")[2].lower()
        envelope = mail_from.strip("<>")
        spf_identity = envelope if "@" in envelope else f"postmaster@{helo or ''}"
        spf_domain = spf_identity.rpartition("@")[2].lower()
        spf_result, signatures, record = await asyncio.gather(
            self._spf(peer or "", spf_identity, helo or spf_domain),
            self._dkim(raw),
            self._dmarc_record(from_domain),
        )
        policy = record.policy if isinstance(record, Record) else "none"
        if record == "temperror":
            dmarc = "temperror"
        else:
            dmarc = evaluate(
                record, from_domain, spf=spf_result, spf_domain=spf_domain, dkim=signatures
            )
        dkim_summary = next((r for r, _ in signatures if r == "pass"), None)
        dkim_summary = dkim_summary or (signatures[0][0] if signatures else "none")
        return Verdict(
            dmarc=dmarc, source="gateway", spf=spf_result, dkim=dkim_summary, policy=policy
        )

    async def _spf(self, ip: str, identity: str, helo: str) -> str:
        try:
            query = _ReplayQuery(i=ip, s=identity, h=helo)
        except Exception:  # pyspf refuses the address or names outright
            return "permerror"
        query.answers = {}
        for _ in range(MAX_SPF_QUERIES):
            try:
                result, _code, _why = query.check()
                return str(result)
            except _Pending as pending:
                try:
                    query.answers[pending.key] = await self._query(*pending.key)
                except DnsTempError as exc:
                    query.answers[pending.key] = exc
        return "permerror"

    async def _dkim(self, raw: bytes) -> list[tuple[str, str]]:
        """(result, d= domain) of each DKIM-Signature (the first MAX_SIGNATURES)."""
        if not may_be_signed(raw):
            return []
        try:
            message = dkim.DKIM(raw, minkey=1024)
        except Exception:  # unparsable headers: no signature can be checked
            return []
        count = sum(1 for name, _ in message.headers if name.lower() == b"dkim-signature")
        results = []
        for idx in range(min(count, MAX_SIGNATURES)):
            try:
                prep = message.verify_headerprep(idx)
            except dkim.DKIMException:
                results.append(("permerror", ""))
                continue
            if not prep:
                continue
            sig = prep[0]
            domain = sig.get(b"d", b"").decode("ascii", "replace").lower()
            selector = sig.get(b"s", b"").decode("ascii", "replace").lower()
            try:
                keys = await self._query(f"{selector}._domainkey.{domain}", "TXT")
            except DnsTempError:
                results.append(("temperror", domain))
                continue
            key = keys[0] if keys else None
            # Body hashing and RSA are CPU work on possibly large mail: off the event loop.
            ok = await asyncio.to_thread(_verify_signature, message, idx, key)
            results.append(("pass" if ok else "fail", domain))
        return results

    async def _dmarc_record(self, from_domain: str) -> Any:
        """The policy record of the From domain or its organizational domain; "temperror"."""
        try:
            record = parse_record(await self._query(f"_dmarc.{from_domain}", "TXT"))
            org = org_domain(from_domain)
            if record is None and org != from_domain:
                record = parse_record(await self._query(f"_dmarc.{org}", "TXT"))
        except DnsTempError:
            return "temperror"
        return record


def _verify_signature(message: Any, idx: int, key: bytes | None) -> bool:
    try:
        return bool(message.verify(idx, dnsfunc=lambda _name, timeout=5: key))
    except dkim.DKIMException:
        return False
