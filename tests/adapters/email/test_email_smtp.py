"""The SMTP edge over real SMTP (aiosmtplib client → the gateway's aiosmtpd listener on port 0).

Recipient policy (no relaying), limits (size, recipients, line length, idle time, command
floods), loops, and the rule that 250 comes only after commit — 451, never 5xx, otherwise.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiosmtplib
import pytest

from adapters.email import smtp as email_smtp
from gateway.app import create_app
from gateway.core.errors import TemporaryFailure
from gateway.core.services import GW
from tests.adapters.email.conftest import SUPPORT, mail, send, tracking_of
from tests.conftest import FakeResolver
from tests.faults import Failing, make_store_with


async def count(gw: Any, table: str) -> int:
    return (await gw.store.read(lambda tx: tx.one(f"SELECT count(*) AS n FROM {table}")))["n"]


async def test_accepted_message_gets_250_with_its_committed_tracking_number(start_email) -> None:
    gw = await start_email()
    raw = mail()
    code, text = await send(gw, raw)
    assert code == 250 and text.startswith("2.0.0 Accepted as CMW-")
    tracking = tracking_of(text)
    stored = await gw.store.read(
        lambda tx: tx.one(
            "SELECT r.raw, i.tracking FROM receipts r JOIN incidents i ON i.id = r.incident_id"
        )
    )
    assert stored["tracking"] == tracking and bytes(stored["raw"]) == raw


@pytest.mark.parametrize(
    ("rcpt", "code"),
    [
        ("SOPORTE@CallMyWay.COM", 250),
        ("soporte@callmyway.com", 250),
        ("ventas@callmyway.com", 550),
        ("soporte@other.example", 550),
        ("soporte%other.example@callmyway.com", 550),
        ('"soporte@other.example"@callmyway.com', 550),
        ("@relay.example:soporte@callmyway.com", 550),  # RFC 5321 source route
    ],
)
async def test_rcpt_only_for_the_support_mailbox(start_email, rcpt: str, code: int) -> None:
    gw = await start_email()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.extras["smtp_port"])
    await client.connect()
    await client.ehlo()
    await client.mail("ana@cliente.com")
    resp = await client.execute_command(b"RCPT", f"TO:<{rcpt}>".encode())
    client.close()
    assert resp.code == code, resp.message
    if code == 550:
        assert resp.message.startswith("5.1.1")


async def test_recipient_cap(start_email) -> None:
    gw = await start_email({"email": {"max_recipients": 2}})
    code, text = await send(gw, mail(), rcpt=(SUPPORT, SUPPORT, SUPPORT))
    assert (code, text) == (452, "4.5.3 Too many recipients")


async def test_size_is_refused_at_mail_from_and_after_data(start_email) -> None:
    gw = await start_email({"email": {"max_message_bytes": 4096}})
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.extras["smtp_port"])
    await client.connect()
    ehlo = await client.ehlo()
    assert "SIZE 4096" in ehlo.message
    assert "AUTH" not in ehlo.message and "STARTTLS" not in ehlo.message  # nothing to relay with
    resp = await client.execute_command(b"MAIL", b"FROM:<ana@cliente.com> SIZE=60000000")
    assert resp.code == 552
    client.close()
    code, _ = await send(gw, mail(body="x" * 70 + "\n" * 100 + "y" * 70 * 60))
    assert code == 552
    assert await count(gw, "receipts") == 0


async def test_a_line_over_1000_characters_is_refused(start_email) -> None:
    gw = await start_email()
    raw = mail().replace(b"Hola,", b"Hola," + b"a" * 5000)
    code, text = await send(gw, raw)
    assert code == 500 and "Line too long" in text
    assert await count(gw, "receipts") == 0


async def test_loops_are_refused_554(start_email) -> None:
    gw = await start_email()
    hops = b"".join(
        b"Received: from h%d by mx; Mon, 30 Nov 2026 10:00:00 +0000\r\n" % i for i in range(31)
    )
    assert (await send(gw, hops + mail()))[0] == 554
    code, text = await send(gw, mail(headers={"X-Loop": "soporte@callmyway.com"}))
    assert (code, text) == (554, "5.4.6 Mail loop detected")
    assert await count(gw, "receipts") == 0


async def test_noop_flood_is_cut_with_421(start_email) -> None:
    gw = await start_email()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.extras["smtp_port"])
    await client.connect()
    codes = []
    for _ in range(25):
        try:
            codes.append((await client.execute_command(b"NOOP")).code)
        except aiosmtplib.SMTPServerDisconnected:
            break
    assert 421 in codes and codes[0] == 250


async def test_connections_per_address_are_capped(start_email) -> None:
    gw = await start_email()
    gw.extras["email_handler"].max_per_ip = 2
    port = gw.extras["smtp_port"]
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
    for reader, _ in held:
        assert (await reader.readline()).startswith(b"220")
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await reader.readline()).startswith(b"421 4.7.0")
    writer.close()
    held[0][1].close()
    async with asyncio.timeout(5):
        while gw.extras["email_handler"].per_ip.get("127.0.0.1", 0) >= 2:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert (await send(gw, mail()))[0] == 250  # a slot came free
    held[1][1].close()


async def test_idle_connection_is_closed(start_email) -> None:
    gw = await start_email({"email": {"idle_timeout": "0.3s"}})
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.extras["smtp_port"])
    assert (await reader.readline()).startswith(b"220")
    rest = await asyncio.wait_for(reader.read(), timeout=5)  # EOF: the server hung up
    assert b"421" in rest or rest == b""
    writer.close()


async def test_connection_dropped_during_data_stores_nothing(start_email) -> None:
    gw = await start_email()
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.extras["smtp_port"])
    await reader.readline()
    for line in (
        b"EHLO x",
        b"MAIL FROM:<ana@cliente.com>",
        f"RCPT TO:<{SUPPORT}>".encode(),
        b"DATA",
    ):
        writer.write(line + b"\r\n")
    writer.write(mail()[:200])
    await writer.drain()
    writer.close()
    await asyncio.sleep(0.1)
    assert await count(gw, "receipts") == 0
    assert (await send(gw, mail()))[0] == 250  # the server is still fine


@pytest.fixture
async def flaky(aiohttp_client, make_settings, clock):
    settings = make_settings()
    store = make_store_with(settings, Failing)
    adapters = {"email": email_smtp.setup}
    app = create_app(settings, clock=clock, store=store, adapters=adapters, resolver=FakeResolver())
    await aiohttp_client(app)
    return app[GW], store


async def test_store_that_cannot_commit_gives_451_and_the_retry_is_stored_once(flaky) -> None:
    gw, store = flaky
    raw = mail()
    store.failure = TemporaryFailure("database is locked")
    assert await send(gw, raw) == (451, "4.3.0 Temporary failure, please try again later")
    store.failure = None
    code, text = await send(gw, raw)
    again = await send(gw, raw)
    assert code == 250 and again == (250, text)
    assert await count(gw, "incidents") == 1


async def test_unexpected_exception_gives_451_not_aiosmtpd_default_500(flaky) -> None:
    """Regression: aiosmtpd's default handle_exception answers '500 Error: (Exc) text'."""
    gw, store = flaky
    store.failure = RuntimeError("secret internals /var/db")
    code, text = await send(gw, mail())
    assert code == 451 and text.startswith("4.3.0")
    assert "secret" not in text and "RuntimeError" not in text


ADDRESS_ARGS = [
    "",
    "<>",
    "<ana@cliente.com>",
    "<ana@cliente.com> SIZE=2048 BODY=8BITMIME",
    "ana@cliente.com",
    "ana@cliente.com SIZE=10",
    "  <ana@cliente.com>",
    '<"ana perez"@cliente.com>',
    "<@relay.example:ana@cliente.com>",
    "<ana@[192.0.2.1]>",
    "<ana>",
    "<ana@cliente.com",
    "<<ana@cliente.com>>",
    "<ana@@cliente.com>",
    "(comment) <ana@cliente.com>",
    "<" + "a" * 65 + "@cliente.com>",
    "<" + "a" * 64 + "@cliente.com>",
    "<josé@cliente.com>",
    "<ana@cliente.com>\x00",
]


@pytest.mark.parametrize("arg", ADDRESS_ARGS)
def test_address_parse_answers_as_aiosmtpd_does(arg: str) -> None:
    """The gateway's `_getaddr` (without aiosmtpd's per-call class) parses every MAIL FROM and
    RCPT TO argument exactly as aiosmtpd's own: same address, same parameters, same refusals."""
    from aiosmtpd.smtp import SMTP

    class Handler:
        pass

    loop = asyncio.new_event_loop()
    try:
        ours = email_smtp.GatewaySMTP.__new__(email_smtp.GatewaySMTP)
        stock = SMTP(Handler(), loop=loop)
        ours.local_part_limit = stock.local_part_limit = 64
        assert ours._getaddr(arg) == SMTP._getaddr(stock, arg)
        ours.local_part_limit = stock.local_part_limit = 0
        assert ours._getaddr(arg) == SMTP._getaddr(stock, arg)
    finally:
        loop.close()


async def test_mail_from_syntax_answers_on_the_wire(start_email) -> None:
    """Through the listener: a malformed sender gets 553, an empty one 501, a bounce's null
    sender and a quoted local part are taken, and the parameters still reach the SIZE check."""
    gw = await start_email({"email": {"max_message_bytes": 4096}})
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.extras["smtp_port"])
    await client.connect()
    await client.ehlo()
    answers = []
    for arg in (
        b"FROM:<ana@@cliente.com>",
        b"FROM:",
        b"FROM:<>",
        b'FROM:<"ana perez"@cliente.com>',
        b"FROM:<ana@cliente.com> SIZE=60000000",
        b"FROM:<ana@cliente.com> SIZE=100",
    ):
        resp = await client.execute_command(b"MAIL", arg)
        answers.append(resp.code)
        if resp.code == 250:
            await client.execute_command(b"RSET")
    client.close()
    assert answers == [553, 501, 250, 250, 552, 250]
