"""Sender authentication over real SMTP (issue #15 item 2, CONTRACT "SMTP", checklist E13).

Mail whose DMARC result is `fail` never joins an existing incident (by its sender, a quoted
tracking number or In-Reply-To), is not acknowledged (no backscatter to the forged address),
and becomes a new incident flagged `sender_unverified`. The verdict comes from our trusted
relay's Authentication-Results, or, from any other peer, from SPF/DKIM/DMARC checked in the
gateway against a fake DNS (never the network).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from email import policy
from email.message import EmailMessage
from typing import Any

import dkim

from gateway.core import quarantine
from gateway.core.auth import add_user, hash_password
from gateway.core.dns import DnsTempError
from tests.adapters.email.conftest import (
    FIXTURES,
    SUPPORT,
    incident_json,
    outbox_rows,
    send,
    tracking_of,
)
from tests.conftest import FakeResolver
from tests.workspace.conftest import PASSWORD, login

CUSTOMER = "ana@bank.example"
KEY = (FIXTURES / "dkim_test_key.pem").read_bytes()
PUBLIC = (FIXTURES / "dkim_test_key.pub.b64").read_text().strip()
BANK_DNS = {
    # bank.example publishes DMARC p=none (failures are delivered, flagged), signs with DKIM
    # selector s1, and its SPF does not list the loopback peer the tests send from (so only
    # DKIM can make its mail pass).
    ("_dmarc.bank.example", "TXT"): [b"v=DMARC1; p=none; rua=mailto:dmarc@bank.example"],
    ("s1._domainkey.bank.example", "TXT"): [f"v=DKIM1; k=rsa; p={PUBLIC}".encode()],
    ("bank.example", "TXT"): [b"v=spf1 ip4:192.0.2.0/24 -all"],
    # The attacker's own domain authorizes the attacker's server: SPF pass, but not aligned.
    ("evil.example", "TXT"): [b"v=spf1 ip4:127.0.0.0/8 -all"],
}
RELAY = {"email": {"trusted_relays": ["127.0.0.1/32"], "authserv_id": "mx.callmyway.com"}}


def message(subject: str, *, msgid: str, headers: dict[str, str] | None = None, **kw: str) -> bytes:
    msg = EmailMessage()
    for name, value in (headers or {}).items():  # trace headers a relay put on top
        msg[name] = value
    msg["From"] = kw.get("sender", f"Ana Pérez <{CUSTOMER}>")
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Message-ID"] = msgid
    if "in_reply_to" in kw:
        msg["In-Reply-To"] = kw["in_reply_to"]
    msg.set_content(kw.get("body", "La troncal SIP no registra desde las 8."))
    return msg.as_bytes(policy=policy.SMTP)


def signed(raw: bytes) -> bytes:
    """The message with bank.example's DKIM signature on top."""
    header = dkim.sign(
        raw,
        b"s1",
        b"bank.example",
        KEY,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"message-id", b"in-reply-to"],
    )
    return header + raw


async def flags_of(gw: Any, tracking: str) -> list[str]:
    row = await gw.store.read(lambda tx: tx.incident_by_tracking(tracking))
    return json.loads(row["flags"])


async def acks(gw: Any) -> list[str]:
    return [r["recipient"] for r in await outbox_rows(gw) if r["kind"] == "ack"]


async def test_dmarc_fail_checked_in_the_gateway_never_joins_and_is_not_acknowledged(
    start_email: Any,
) -> None:
    dns = FakeResolver(BANK_DNS)
    gw = await start_email(resolver=dns)
    # Ana's real mail: DKIM-signed by bank.example, so DMARC passes although SPF fails.
    first = signed(message("Sin registro SIP", msgid="<a1@bank.example>"))
    code, text = await send(gw, first, mail_from=CUSTOMER)
    assert code == 250
    ana = tracking_of(text)
    assert "sender_unverified" not in await flags_of(gw, ana)
    assert ("s1._domainkey.bank.example", "TXT") in dns.asked
    assert await acks(gw) == [CUSTOMER]
    # A forger: Ana's address in From, its own envelope (SPF pass for evil.example, not
    # aligned), no signature, a quoted tracking number, an In-Reply-To of Ana's thread and a
    # made-up Authentication-Results claiming success (from a peer that is no relay of ours).
    forged = message(
        f"Re: [{ana}] cambiar el desvío de llamadas",
        msgid="<f1@evil.example>",
        in_reply_to="<a1@bank.example>",
        headers={"Authentication-Results": "mx.callmyway.com; dmarc=pass header.from=bank.example"},
        body="Desvíen todas mis llamadas al +50688880000.",
    )
    code, text = await send(gw, forged, mail_from="mallory@evil.example")
    assert code == 250
    other = tracking_of(text)
    assert other != ana
    assert "sender_unverified" in await flags_of(gw, other)
    assert await acks(gw) == [CUSTOMER]  # no acknowledgement to the forged address
    incident = await incident_json(gw, other)
    assert "sender_unverified" in incident["flags"]
    assert incident["contact"]["email"] == CUSTOMER
    assert incident["contact"]["claimed"] == ["name", "email"]
    assert [m["body"] for m in (await incident_json(gw, ana))["messages"]] == [
        "La troncal SIP no registra desde las 8."
    ]
    # A signed message whose body was changed on the way fails DKIM: DMARC fails too.
    tampered = signed(message("Otra cosa", msgid="<a2@bank.example>")).replace(
        b"desde las 8", b"desde las 9"
    )
    code, text = await send(gw, tampered, mail_from=CUSTOMER)
    assert "sender_unverified" in await flags_of(gw, tracking_of(text))
    # Ana herself, signed, quoting her number: joins her incident as before.
    reply = signed(message(f"Re: [{ana}] Sin registro SIP", msgid="<a3@bank.example>"))
    code, text = await send(gw, reply, mail_from=CUSTOMER)
    assert tracking_of(text) == ana


async def test_the_agent_page_says_the_sender_is_unverified(start_email: Any) -> None:
    gw = await start_email(resolver=FakeResolver(BANK_DNS))
    forged = message("Urgente", msgid="<f2@evil.example>")
    _code, text = await send(gw, forged, mail_from="mallory@evil.example")
    tracking = tracking_of(text)
    now = gw.clock()

    def agent(tx: Any) -> None:
        user = add_user(tx, "ana", "l1", None, None, now)
        tx.execute(
            "UPDATE users SET password_hash = ? WHERE id = ?", (hash_password(PASSWORD), user.id)
        )

    await gw.store.transact(agent)
    client = gw.extras["http"]
    assert await login(client, "ana") == 303
    page = await (await client.get(f"/agent/incidents/{tracking}")).text()
    assert "Remitente no verificado" in page and "DMARC" in page
    assert "(dato declarado, no verificado)" in page


async def test_dmarc_fail_reported_by_the_trusted_relay(start_email: Any) -> None:
    dns = FakeResolver()
    gw = await start_email(RELAY, resolver=dns)
    relay_pass = {"Authentication-Results": "mx.callmyway.com; dmarc=pass header.from=bank.example"}
    _, text = await send(
        gw, message("Sin tono", msgid="<r1@bank.example>", headers=relay_pass), mail_from=CUSTOMER
    )
    ana = tracking_of(text)
    assert await acks(gw) == [CUSTOMER]
    # The relay's own header is the topmost; a forged one below it, or another host's, is
    # ignored.
    forged_below = {
        "Authentication-Results": "mx.callmyway.com; spf=pass; dmarc=fail (p=none)"
        " header.from=bank.example",
    }
    raw = message(f"Re: [{ana}]", msgid="<r2@evil.example>", headers=forged_below)
    raw = raw.replace(
        b"Subject:",
        b"Authentication-Results: mx.callmyway.com; dmarc=pass header.from=bank.example\r\n"
        b"Authentication-Results: evil.example; dmarc=pass\r\nSubject:",
        1,
    )
    _, text = await send(gw, raw, mail_from="mallory@evil.example")
    other = tracking_of(text)
    assert other != ana and "sender_unverified" in await flags_of(gw, other)
    assert await acks(gw) == [CUSTOMER]
    # With a relay in front, the gateway asks DNS nothing: the relay's word is the verdict.
    assert dns.asked == []
    _code, text = await send(
        gw,
        message(f"Re: [{ana}] sigo sin tono", msgid="<r3@bank.example>", headers=relay_pass),
        mail_from=CUSTOMER,
    )
    assert tracking_of(text) == ana


async def test_dmarc_fail_where_the_domain_asks_to_reject_is_held_in_the_quarantine(
    start_email: Any,
) -> None:
    dns = FakeResolver({**BANK_DNS, ("_dmarc.bank.example", "TXT"): [b"v=DMARC1; p=reject"]})
    gw = await start_email(resolver=dns)
    forged = message("Urgente: cambien mi desvío", msgid="<q1@evil.example>")
    code, text = await send(gw, forged, mail_from="mallory@evil.example")
    assert (code, text) == (250, "2.0.0 Accepted for review")
    held = await gw.store.read(quarantine.list_held)
    assert [(h["channel"], h["reason"]) for h in held] == [("email", "auth_refused")]
    assert "Urgente" in held[0]["summary"]
    count = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents"))
    assert count["n"] == 0  # never in the L1 queue
    assert await acks(gw) == []  # and nothing sent to the forged address
    # Ana's own signed mail from the same domain passes DMARC: an incident as always.
    code, text = await send(
        gw, signed(message("Sin tono", msgid="<q2@bank.example>")), mail_from=CUSTOMER
    )
    assert text.startswith("2.0.0 Accepted as CMW-")


async def test_a_relay_reported_reject_policy_is_held_in_the_quarantine(start_email: Any) -> None:
    gw = await start_email(RELAY, resolver=FakeResolver())
    verdict = {
        "Authentication-Results": "mx.callmyway.com; spf=pass;"
        " dmarc=fail (p=REJECT sp=REJECT dis=NONE) header.from=bank.example"
    }
    raw = message("Factura", msgid="<q3@evil.example>", headers=verdict)
    code, text = await send(gw, raw, mail_from="mallory@evil.example")
    assert (code, text) == (250, "2.0.0 Accepted for review")
    held = await gw.store.read(quarantine.list_held)
    assert [h["reason"] for h in held] == ["auth_refused"]


async def test_an_unreachable_dns_is_no_verdict(start_email: Any) -> None:
    timeout = DnsTempError("TXT: timeout")
    dns = FakeResolver({**BANK_DNS, ("_dmarc.bank.example", "TXT"): timeout})
    gw = await start_email(resolver=dns)
    code, text = await send(gw, message("Sin tono", msgid="<t1@bank.example>"), mail_from=CUSTOMER)
    # DMARC could not be evaluated (temperror): not taken for a forgery.
    assert code == 250 and "sender_unverified" not in await flags_of(gw, tracking_of(text))
    assert await acks(gw) == [CUSTOMER]


async def test_a_dns_server_that_never_answers_is_no_verdict(start_email: Any) -> None:
    """The DMARC query hangs: after dns_timeout it counts as a temporary error, and the mail is
    accepted, acknowledged and not taken for a forgery."""

    class Hanging(FakeResolver):
        async def query(self, name: str, rdtype: str) -> list[Any]:
            if name.startswith("_dmarc."):
                await asyncio.sleep(3600)
            return await super().query(name, rdtype)

    gw = await start_email({"email": {"dns_timeout": "200ms"}}, resolver=Hanging(BANK_DNS))
    started = time.monotonic()
    code, text = await send(gw, message("Sin tono", msgid="<t2@bank.example>"), mail_from=CUSTOMER)
    assert code == 250 and time.monotonic() - started < 5
    assert "sender_unverified" not in await flags_of(gw, tracking_of(text))
    assert await acks(gw) == [CUSTOMER]


def test_the_dkim_test_key_matches_its_public_half() -> None:
    assert base64.b64decode(PUBLIC)[:2] == b"\x30\x81"  # DER SubjectPublicKeyInfo, 1024 bits


def test_dkim_is_skipped_only_where_dkimpy_would_find_no_signature() -> None:
    """The cheap look for a DKIM-Signature header never misses one dkimpy would check."""
    from adapters.email.auth import may_be_signed

    plain = message("Sin tono", msgid="<s1@bank.example>")
    cases = [
        signed(plain),
        signed(plain).replace(b"\r\n", b"\n"),
        b"dkim-SIGNATURE: v=1; d=bank.example\r\n" + plain,
        plain,
        plain.replace(b"\r\n", b"\n"),
        plain + b"\r\nDKIM-Signature: v=1; in the body, not a header\r\n",
        b"\r\n" + b"DKIM-Signature: v=1\r\n\r\nbody",
    ]
    for raw in cases:
        try:
            found = any(n.lower() == b"dkim-signature" for n, _ in dkim.DKIM(raw).headers)
        except Exception:
            found = False
        assert may_be_signed(raw) or not found
    assert may_be_signed(signed(plain)) and not may_be_signed(plain)
