"""Outbound mail through a loopback relay: acknowledgements, agent replies, threading back,
bounces about our mail, header injection, and a relay that is down, refusing or missing.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from typing import Any

from gateway.core.replies import queue_reply
from tests.adapters.email.conftest import (
    Relay,
    attempted,
    delivered,
    fixture,
    free_port,
    incident_json,
    mail,
    outbox_rows,
    send,
    tracking_of,
)
from tests.conftest import CLOSED_TIME


async def accepted(gw: Any, raw: bytes, **kw: Any) -> str:
    code, text = await send(gw, raw, **kw)
    assert code == 250, text
    return tracking_of(text)


async def test_acknowledgement_is_a_threaded_rfc3834_auto_reply(start_email, relay) -> None:
    gw = await start_email()
    tracking = await accepted(
        gw, mail(msgid="<q1@cliente.com>", headers={"References": "<q0@cliente.com>"})
    )
    [ack] = await relay.wait(1)
    mail_from, rcpts, _ = relay.messages[0]
    assert (mail_from, rcpts) == ("soporte@callmyway.com", ["ana@cliente.com"])
    assert ack["Subject"] == f"[{tracking}] Recibimos su solicitud: Sin tono en la línea"
    assert ack["Auto-Submitted"] == "auto-replied"
    assert ack["In-Reply-To"] == "<q1@cliente.com>"
    assert ack["References"].split() == ["<q0@cliente.com>", "<q1@cliente.com>"]
    assert ack["X-Loop"] == "soporte@callmyway.com"
    assert ack["Message-ID"].endswith("@callmyway.com>")
    text = ack.get_content()
    assert tracking in text and "lunes a viernes de 06:00 a 21:00" in text
    rows = await delivered(gw, 1)
    assert rows[0]["provider_id"] == ack["Message-ID"]


async def test_our_ehlo_name_is_this_host_looked_up_once(start_email, relay, monkeypatch) -> None:
    """The relay hears this host's FQDN in EHLO, as before; it is looked up once per process,
    not once per mail (aiosmtplib's own default asks socket.getfqdn on every connection)."""
    from types import SimpleNamespace

    from adapters.email import send as email_send

    lookups: list[int] = []

    def getfqdn(name: str = "") -> str:
        lookups.append(1)
        return "core-a.callmyway.test"

    # Only the sender's lookups (the test's own SMTP client asks getfqdn too).
    monkeypatch.setattr(email_send, "socket", SimpleNamespace(getfqdn=getfqdn))
    gw = await start_email()
    await accepted(gw, mail(msgid="<ehlo-1@cliente.com>", sender="ana@cliente.com"))
    await accepted(gw, mail(msgid="<ehlo-2@cliente.com>", sender="luis@cliente.com"))
    await gw.outbox.drain_once()
    await relay.wait(2)
    assert relay.ehlo_names == ["core-a.callmyway.test", "core-a.callmyway.test"]
    assert len(lookups) == 1


async def test_sends_that_start_together_share_one_ehlo_lookup(start_email, monkeypatch) -> None:
    """The outbox starts many sends at once: they wait for the one lookup under way instead of
    each asking the resolver (the flaky 'looked up once' above, made certain)."""
    import time
    from types import SimpleNamespace

    from adapters.email import send as email_send

    lookups: list[int] = []

    def getfqdn(name: str = "") -> str:
        lookups.append(1)
        time.sleep(0.05)  # a resolver that takes a moment: the other sends start meanwhile
        return "core-a.callmyway.test"

    monkeypatch.setattr(email_send, "socket", SimpleNamespace(getfqdn=getfqdn))
    gw = await start_email()
    sender = email_send.EmailSender(gw)
    names = await asyncio.gather(*(sender.ehlo_name() for _ in range(8)))
    assert names == ["core-a.callmyway.test"] * 8 and len(lookups) == 1


async def test_after_hours_acknowledgement_says_when_we_open(start_email, relay, clock) -> None:
    clock.set(CLOSED_TIME)
    gw = await start_email()
    await accepted(gw, mail())
    [ack] = await relay.wait(1)
    assert "fuera de nuestro horario" in ack.get_content()
    assert "Abrimos el lunes 30/11/2026 a las 06:00, hora de Costa Rica" in ack.get_content()


async def test_english_writer_gets_an_english_acknowledgement(start_email, relay) -> None:
    gw = await start_email()
    tracking = await accepted(gw, fixture("windows1252.eml"))
    [ack] = await relay.wait(1)
    assert ack["Subject"] == f"[{tracking}] We received your request: Calls drop after 30 seconds"
    assert "Our support hours are" in ack.get_content()


async def test_customer_reply_to_our_acknowledgement_joins_the_incident(start_email, relay) -> None:
    gw = await start_email()
    tracking = await accepted(gw, mail())
    [ack] = await relay.wait(1)
    await delivered(gw, 1)
    reply = mail(subject="otra cosa", body="Más datos.", headers={"In-Reply-To": ack["Message-ID"]})
    assert await accepted(gw, reply) == tracking
    ooo = fixture("outlook_ooo.eml").replace(b"{{ORIGINAL_ID}}", ack["Message-ID"].encode())
    assert await accepted(gw, ooo) == tracking  # the out-of-office joins too, unanswered
    assert len(await relay.wait(1)) == 1
    assert len((await incident_json(gw, tracking))["messages"]) == 3


async def test_agent_reply_is_threaded_and_its_answer_comes_back(start_email, relay) -> None:
    gw = await start_email()
    tracking = await accepted(gw, mail(msgid="<c1@cliente.com>"))
    await relay.wait(1)
    incident = await gw.store.read(lambda tx: tx.incident_by_tracking(tracking))
    now = gw.clock()
    await gw.store.transact(
        lambda tx: queue_reply(tx, incident, text="Reiniciamos su línea.", author="Marta", now=now)
    )
    await gw.outbox.drain_once()
    _, reply = await relay.wait(2)
    await delivered(gw, 2)
    assert reply["Subject"] == f"Re: Sin tono en la línea [{tracking}]"
    assert reply["In-Reply-To"] == "<c1@cliente.com>"
    assert reply["Auto-Submitted"] is None and reply["X-Loop"] == "soporte@callmyway.com"
    assert reply.get_content().startswith("Reiniciamos su línea.")
    body = await incident_json(gw, tracking)
    assert body["messages"][-1]["delivery_status"] == "sent"
    answer = mail(
        subject="gracias", body="Ya funciona.", headers={"References": reply["Message-ID"]}
    )
    assert await accepted(gw, answer) == tracking


async def test_injected_headers_never_reach_our_mail(start_email, relay) -> None:
    gw = await start_email()
    raw = (
        mail(subject="SUBJECT", sender="NAME <ana@cliente.com>")
        .replace(b"Subject: SUBJECT", b"Subject: =?utf-8?q?Hola=0D=0ABcc=3A_victim=40x.example?=")
        .replace(b"From: NAME", b"From: =?utf-8?q?Ana=0D=0ABcc=3A_v=40x.example?=")
    )
    await accepted(gw, raw)
    [ack] = await relay.wait(1)
    assert ack["Bcc"] is None and relay.messages[0][1] == ["ana@cliente.com"]
    assert "\n" not in ack["Subject"] and "Hola Bcc: victim@x.example" in ack["Subject"]


async def test_relay_down_then_up(start_email, clock) -> None:
    port = free_port()
    gw = await start_email(GATEWAY_SMTP_RELAY=f"127.0.0.1:{port}")
    tracking = await accepted(gw, mail())  # intake does not care about the relay
    row = await attempted(gw)
    assert row["status"] == "pending"
    assert "relay unreachable" in row["last_error"]
    relay = await Relay(port=port).start()
    try:
        clock.advance(minutes=20)
        await gw.outbox.drain_once()
        [ack] = await relay.wait(1)
        assert tracking in ack["Subject"]
    finally:
        await relay.aclose()


async def test_relay_4xx_is_retried_and_5xx_is_final(start_email, relay, clock) -> None:
    gw = await start_email()
    relay.answer = "451 4.7.1 greylisted, try later"
    tracking = await accepted(gw, mail())
    row = await attempted(gw)
    assert row["status"] == "pending" and "451" in row["last_error"]
    relay.answer = "550 5.1.1 mailbox unavailable"
    clock.advance(minutes=20)
    row = await attempted(gw, 2)
    assert row["status"] == "dead" and "550" in row["last_error"]
    events = (await incident_json(gw, tracking))["events"]
    assert any(e["kind"] == "delivery_failed" for e in events)


async def test_without_a_relay_mail_waits_in_the_outbox(start_email) -> None:
    gw = await start_email(with_relay=False)
    await accepted(gw, mail())
    assert await gw.outbox.drain_once() == 0
    assert [r["status"] for r in await outbox_rows(gw)] == ["pending"]


async def test_bounce_of_our_acknowledgement_is_linked_never_a_new_incident(start_email, relay):
    gw = await start_email()
    tracking = await accepted(gw, mail())
    [ack] = await relay.wait(1)
    await delivered(gw, 1)
    dsn = fixture("dsn.eml").replace(b"{{ORIGINAL_ID}}", ack["Message-ID"].encode())
    assert await accepted(gw, dsn, mail_from="") == tracking
    assert await accepted(gw, dsn, mail_from="") == tracking  # a retried DSN: same answer
    body = await incident_json(gw, tracking)
    failed = [e for e in body["events"] if e["kind"] == "delivery_failed"]
    assert len(failed) == 1 and failed[0]["detail"]["recipients"] == ["ana@cliente.com"]
    assert "5.1.1" in failed[0]["detail"]["reason"] and "contact_bounced" in body["flags"]
    count = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents"))
    assert count["n"] == 1
    bounced = await gw.store.read(lambda tx: tx.all("SELECT address FROM email_bounces"))
    assert bounced == [{"address": "ana@cliente.com"}]


async def test_long_folded_references_of_a_gmail_thread_stay_well_formed(start_email, relay):
    gw = await start_email()
    refs = " ".join(f"<CAthread{i:02d}+x@mail.gmail.com>" for i in range(40))
    await accepted(gw, mail(msgid="<last@mail.gmail.com>", headers={"References": refs}))
    [ack] = await relay.wait(1)
    ids = ack["References"].split()
    assert len(ids) <= 21 and ids[-1] == "<last@mail.gmail.com>"
    assert all(i.startswith("<CAthread") or i == "<last@mail.gmail.com>" for i in ids)
    assert ack["In-Reply-To"] == "<last@mail.gmail.com>"


async def test_outbound_mail_is_byte_for_byte_what_the_smtp_policy_builds(
    start_email, monkeypatch
) -> None:
    """The sender's policy only reuses header classes: every kind of mail it builds, with
    non-ASCII names and subjects and long references, is the standard SMTP policy's output."""
    from email.policy import SMTP

    from adapters.email import send as email_send
    from gateway.core.model import OutboundItem

    gw = await start_email()
    sender = email_send.EmailSender(gw)
    monkeypatch.setattr(email_send.secrets, "token_hex", lambda n: "0" * (2 * n))
    incident = {"tracking": "CR-20261207-000001", "language": "es", "country": "CR",
                "subject": "Línea caída — oficina de Ñuñoa"}  # fmt: skip
    refs = [f"<ref{n}.{'x' * 40}@cliente.com>" for n in range(12)]
    payloads = {
        "ack": {"name": "Ana María Pérez-Ñúñez", "in_reply_to": "<q1@cliente.com>",
                "references": refs, "subject": "Sin tono en la línea"},
        "reply": {"text": "Hola Ana, ya revisamos su línea.\n" * 40, "author": "Lucía Gómez"},
        "notice": {"text": "Resolvimos su caso: era un cable dañado."},
        "confirm": {"link": "https://soporte.callmyway.com/chat/confirm?t=abc"},
    }  # fmt: skip
    items = [
        OutboundItem(
            id=number,
            channel="email",
            kind=kind,
            recipient="ana@cliente.com",
            incident_id=1,
            tracking=incident["tracking"],
            message_id=None,
            payload=payload,
            attempts=1,
        )
        for number, (kind, payload) in enumerate(payloads.items(), 1)
    ]
    ours = [sender.build(item, "ana@cliente.com", incident).as_bytes() for item in items]
    # Built again: the repeating headers now come from the policy's memo.
    again = [sender.build(item, "ana@cliente.com", incident).as_bytes() for item in items]
    monkeypatch.setattr(email_send, "OUT_POLICY", SMTP)
    standard = [sender.build(item, "ana@cliente.com", incident).as_bytes() for item in items]
    for item, mine, second, theirs in zip(items, ours, again, standard, strict=True):
        assert _without_date(mine) == _without_date(theirs), item.kind
        assert _without_date(second) == _without_date(theirs), item.kind


def test_the_outbound_header_memo_stays_bounded_and_keeps_utf8_folding_apart() -> None:
    from adapters.email import send as email_send

    for second in range(3 * email_send._MEMO_LIMIT):  # a Date per second for an hour or so
        msg = EmailMessage(policy=email_send.OUT_POLICY)
        msg["Date"] = f"Mon, 07 Dec 2026 12:{second // 60 % 60:02d}:{second % 60:02d} +0000"
        msg["From"] = "Soporte CallMyWay <soporte@callmyway.com>"
        msg.as_bytes()
    assert len(email_send._PARSED) <= email_send._MEMO_LIMIT
    assert len(email_send._HELD) == len(email_send._PARSED)
    # The same memoised header folds by each policy's own rules (aiosmtplib clones the policy
    # with utf8=True for an SMTPUTF8 relay): a non-ASCII name stays raw only there.
    msg = EmailMessage(policy=email_send.OUT_POLICY)
    msg["From"] = "Soporte Atención <soporte@callmyway.com>"
    ascii_only = msg.as_bytes()
    raw = msg.as_bytes(policy=email_send.OUT_POLICY.clone(utf8=True))
    assert b"=?utf-8?" in ascii_only and "Atención".encode() in raw
    assert msg.as_bytes() == ascii_only


def _without_date(raw: bytes) -> bytes:
    return b"\r\n".join(line for line in raw.split(b"\r\n") if not line.startswith(b"Date: "))
