"""Two gateway processes on one PostgreSQL database, through the wire (CONTRACT "Several
instances"): the same provider ids delivered to both give one incident and one tracking number;
SIGKILL of one instance under load, with clients retrying on the other, loses no acknowledged
contact and duplicates none; an agent on A sees a contact that arrived on B, and an agent on a
newcomer sees one that arrived on an instance that had run alone and quiet; a chat visitor on
A gets a reply made on B; a killed instance's leased outbox rows are delivered by the other,
once, within 30 s."""

from __future__ import annotations

import asyncio
import random
import re
import time
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Any

import aiohttp
import aiosmtplib
import psycopg
import pytest
from multidict import MultiDict

from tests.adapters.whatsapp.wa_kit import (
    inbound_form,
    signature,
)
from tests.instances import PUBLIC_URL, Instance, agent_session, csrf_of

pytestmark = pytest.mark.postgresql_only
WHATSAPP = "/webhooks/twilio/whatsapp"
TRACKING = re.compile(r"CMW-[0-9]{7,}-[0-9]")
PASSWORD = "una clave larga de verdad"


async def post_whatsapp(
    session: aiohttp.ClientSession, instance: Instance, form: MultiDict[str]
) -> tuple[int, str]:
    headers = {"X-Twilio-Signature": signature(WHATSAPP, form, url=PUBLIC_URL)}
    async with session.post(instance.url + WHATSAPP, data=form, headers=headers) as resp:
        return resp.status, await resp.text()


def mail(msgid: str, sender: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Cliente <{sender}>"
    msg["To"] = "soporte@callmyway.com"
    msg["Subject"] = "Sin tono en la central"
    msg["Message-ID"] = msgid
    msg.set_content("No tenemos tono en ninguna extensión desde las 8.")
    return msg


async def deliver(instance: Instance, msg: EmailMessage) -> str:
    """One SMTP delivery; the tracking number of the 250 reply."""
    _, reply = await aiosmtplib.send(msg, hostname="127.0.0.1", port=instance.smtp_port, timeout=20)
    found = TRACKING.search(reply)
    assert found, reply
    return found.group(0)


def query(url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


async def test_the_same_provider_ids_on_both_instances_make_one_incident_each(
    instances: Any, cluster_db: str
) -> None:
    a, b = await instances("core-a", "core-b")
    forms = [inbound_form(f"+5068800{i:04d}", f"Sin servicio {i}") for i in range(20)]
    mails = [mail(make_msgid(domain="cliente.com"), f"c{i}@example.com") for i in range(15)]
    # One contact writing twice at the same moment, each message to another instance.
    pairs = [
        (
            inbound_form(f"+5068811{i:04d}", "Hola"),
            inbound_form(f"+5068811{i:04d}", "¿Hay alguien?"),
        )
        for i in range(10)
    ]
    async with aiohttp.ClientSession() as http:
        whatsapp = await asyncio.gather(
            *(post_whatsapp(http, node, form) for form in forms for node in (a, b, a))
        )
        follow_ups = await asyncio.gather(
            *(
                post_whatsapp(http, node, form)
                for pair in pairs
                for node, form in zip((a, b), pair, strict=True)
            )
        )
    emails = await asyncio.gather(*(deliver(node, msg) for msg in mails for node in (a, b)))
    assert all(status == 200 for status, _ in whatsapp + follow_ups)
    for i in range(len(forms)):  # every answer for one MessageSid names the same number
        numbers = {TRACKING.search(text).group(0) for _, text in whatsapp[3 * i : 3 * i + 3]}  # type: ignore[union-attr]
        assert len(numbers) == 1
    for i in range(len(mails)):
        assert emails[2 * i] == emails[2 * i + 1]
    per_contact = query(
        cluster_db,
        "SELECT c.phone, count(DISTINCT i.id), count(m.id) FROM incidents i"
        " JOIN contacts c ON c.id = i.contact_id JOIN messages m ON m.incident_id = i.id"
        " WHERE i.channel = 'whatsapp' GROUP BY c.phone",
    )
    assert len(per_contact) == 30 and all(n == 1 for _, n, _ in per_contact)
    assert sorted(m for _, _, m in per_contact) == [1] * 20 + [2] * 10  # one conversation each
    [(emailed,)] = query(cluster_db, "SELECT count(*) FROM incidents WHERE channel = 'email'")
    [(trackings,)] = query(cluster_db, "SELECT count(DISTINCT tracking) FROM incidents")
    assert emailed == 15 and trackings == 45


async def test_sigkill_under_load_loses_no_acknowledged_contact_and_duplicates_none(
    instances: Any, cluster_db: str
) -> None:
    a, b = await instances("core-a", "core-b")
    rnd = random.Random(7)
    acknowledged: dict[str, str] = {}  # MessageSid (or Message-ID) -> tracking number
    killed = asyncio.Event()

    async def whatsapp_client(http: aiohttp.ClientSession, i: int) -> None:
        form = inbound_form(f"+5068822{i:04d}", f"Mensaje {i}")
        order = [a, b] if rnd.random() < 0.5 else [b, a]
        for attempt in range(20):  # Twilio retries, here on the other instance
            node = order[attempt % 2]
            try:
                status, text = await post_whatsapp(http, node, form)
            except (aiohttp.ClientError, OSError):
                continue
            if status == 200:
                acknowledged[form["MessageSid"]] = TRACKING.search(text).group(0)  # type: ignore[union-attr]
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"message {i} was never acknowledged")

    async def smtp_client(i: int) -> None:
        msg = mail(make_msgid(domain="cliente.com"), f"k{i}@example.com")
        order = [a, b] if rnd.random() < 0.5 else [b, a]
        for attempt in range(20):  # a mail server retries, here on the other MX
            try:
                acknowledged[msg["Message-ID"]] = await deliver(order[attempt % 2], msg)
                return
            except (aiosmtplib.SMTPException, OSError, AssertionError):
                await asyncio.sleep(0.05)
        raise AssertionError(f"mail {i} was never acknowledged")

    async def killer() -> None:
        await asyncio.sleep(0.4)
        a.kill()
        killed.set()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(
            killer(),
            *(whatsapp_client(http, i) for i in range(60)),
            *(smtp_client(i) for i in range(30)),
        )
    assert killed.is_set() and len(acknowledged) == 90
    rows = query(
        cluster_db,
        "SELECT r.provider_id, i.tracking FROM receipts r JOIN incidents i ON i.id = r.incident_id",
    )
    # The email adapter's provider id is "<Message-ID> sender": key both by what the client knew.
    stored = {pid.split(" ")[0]: tracking for pid, tracking in rows}
    assert len(rows) == len(stored)  # no provider id twice
    for pid, tracking in acknowledged.items():
        assert stored.get(pid) == tracking, pid  # every acknowledged contact, as acknowledged
    [(incidents,)] = query(cluster_db, "SELECT count(*) FROM incidents")
    assert incidents == 90  # and none twice
    assert (await b.healthy())["status"] in ("ok", "degraded")


async def test_an_agent_on_a_sees_a_contact_arriving_on_b_within_a_second(
    instances: Any,
) -> None:
    a, b = await instances("core-a", "core-b")
    a.cli("user", "add", "ana", "--role", "l1", "--password-stdin", stdin=PASSWORD + "\n")
    agent = await agent_session(a, "ana", PASSWORD)
    try:
        csrf = await csrf_of(agent)
        async with agent.ws_connect(f"/agent/ws?csrf={csrf}") as ws:
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello"
            started = time.monotonic()
            async with aiohttp.ClientSession() as http:
                status, text = await post_whatsapp(http, b, inbound_form("+50688333333"))
            assert status == 200
            tracking = TRACKING.search(text).group(0)  # type: ignore[union-attr]
            while True:
                frame = await ws.receive_json(timeout=5)
                if frame.get("tracking") == tracking:
                    break
            assert time.monotonic() - started < 1.0
            assert frame["event"] == "created"
        queue = await agent.get("/agent/")
        assert tracking in await queue.text()
    finally:
        await agent.close()


async def notifying(http: aiohttp.ClientSession, instance: Instance) -> str:
    """`gateway_change_notifications` as the instance's /metrics says it: "0.0" or "1.0"."""
    async with http.get(instance.url + "/metrics") as resp:
        text = await resp.text()
    return re.search(r"^gateway_change_notifications (\S+)$", text, re.M).group(1)  # type: ignore[union-attr]


async def test_an_instance_that_ran_alone_shows_its_contacts_to_an_agent_on_a_newcomer(
    instances: Any,
) -> None:
    """A alone stops notifying its changes (nobody listens); B starts, and a contact arriving on
    A reaches B's agent on the live page as that contact, within a second, not as a re-read."""
    (a,) = await instances("core-a")
    async with aiohttp.ClientSession() as http:
        deadline = time.monotonic() + 20
        while await notifying(http, a) != "0.0":  # three quiet polls of 2 s
            assert time.monotonic() < deadline, "A never found itself alone"
            await asyncio.sleep(0.2)
        (b,) = await instances("core-b")
        b.cli("user", "add", "ana", "--role", "l1", "--password-stdin", stdin=PASSWORD + "\n")
        agent = await agent_session(b, "ana", PASSWORD)
        try:
            csrf = await csrf_of(agent)
            async with agent.ws_connect(f"/agent/ws?csrf={csrf}") as ws:
                assert (await ws.receive_json(timeout=5))["type"] == "hello"
                deadline = time.monotonic() + 5
                while await notifying(http, a) != "1.0":  # B's beacon reached A
                    assert time.monotonic() < deadline, "A never heard B"
                    await asyncio.sleep(0.05)
                started = time.monotonic()
                status, text = await post_whatsapp(http, a, inbound_form("+50688333334"))
                assert status == 200
                tracking = TRACKING.search(text).group(0)  # type: ignore[union-attr]
                while True:
                    frame = await ws.receive_json(timeout=5)
                    assert frame.get("type") != "resync", frame
                    if frame.get("tracking") == tracking:
                        break
                assert time.monotonic() - started < 1.0
                assert frame["event"] == "created"
        finally:
            await agent.close()


async def test_a_chat_visitor_on_a_gets_the_reply_an_agent_sends_from_b(
    instances: Any,
) -> None:
    a, b = await instances("core-a", "core-b")
    b.cli("user", "add", "ana", "--role", "l1", "--password-stdin", stdin=PASSWORD + "\n")
    token = b.cli("token", "create", "ana").strip().splitlines()[-1]
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(a.url + "/chat/ws", headers={"Origin": PUBLIC_URL})
        await ws.send_json({"type": "hello"})
        while (await ws.receive_json(timeout=5))["type"] != "synced":
            pass
        await ws.send_json(
            {
                "type": "start",
                "client_id": "c-1",
                "name": "Ana Rojas",
                "email": "ana@example.com",  # asked for after hours (these run on a real clock)
                "country": "CR",
                "text": "Nuestra central no registra las extensiones",
            }
        )
        while (ticket := await ws.receive_json(timeout=5))["type"] != "ticket":
            pass
        resp = await http.post(
            f"{b.url}/api/v1/incidents/{ticket['tracking']}/reply",
            json={"text": "Reiniciamos el registro SIP; pruebe ahora."},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status == 200, await resp.text()
        while (frame := await ws.receive_json(timeout=10))["type"] != "message":
            pass
        assert frame["from"] == "agent" and frame["text"].startswith("Reiniciamos el registro")
        await ws.close()


async def test_a_killed_instances_leased_acknowledgements_are_sent_once_by_the_other(
    instances: Any, cluster_db: str, relay: Any
) -> None:
    release = asyncio.Event()
    answer = relay.handle_DATA

    async def stuck(server: Any, session: Any, envelope: Any) -> str:
        await release.wait()  # a hung relay: the sender never hears back
        return "451 4.3.0 the relay gave up on this transaction"

    relay.handle_DATA = stuck
    (a,) = await instances("core-a")
    senders = [f"lease{i}@example.com" for i in range(3)]
    for sender in senders:
        await deliver(a, mail(make_msgid(domain="cliente.com"), sender))
    deadline = time.monotonic() + 10
    # A's worker takes what is due and hangs in the relay's DATA (the others wait behind it).
    while query(cluster_db, "SELECT count(*) FROM outbox WHERE status = 'sending'")[0][0] < 1:
        assert time.monotonic() < deadline, "A never took its acknowledgements"
        await asyncio.sleep(0.1)
    a.kill()  # holding the lease of an acknowledgement, mid-send
    relay.handle_DATA = answer
    release.set()
    killed_at = time.monotonic()
    (b,) = await instances("core-b")
    await relay.wait(3, seconds=40)
    assert time.monotonic() - killed_at < 30 + 5  # taken over within the lease (+ B's start)
    await asyncio.sleep(2)  # nothing more arrives
    received = sorted(rcpt for _, rcpts, _ in relay.messages for rcpt in rcpts)
    assert received == sorted(senders)  # each acknowledgement once
    rows = query(cluster_db, "SELECT status, attempts FROM outbox ORDER BY id")
    # An attempt is counted when its row is claimed (issue 16: a row that kills its sender is
    # not retried for ever): the rows A held when it died show that attempt too.
    assert [status for status, _ in rows] == ["sent"] * 3
    assert all(n in (1, 2) for _, n in rows) and any(n == 2 for _, n in rows)
    assert (await b.healthy())["status"] in ("ok", "degraded")
