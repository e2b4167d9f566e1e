"""Bounded SMTP resources (issue #16 item 4, checklist E8): a global connection cap, a global
budget of DATA bytes held in memory, and the idle deadline against dribbling clients; each
while a normal sender keeps delivering. Attackers connect from 127.0.0.2/.3, the normal
sender from 127.0.0.1."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.adapters.email.conftest import SUPPORT, mail, send


async def open_from(gw: Any, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", gw.extras["smtp_port"], local_addr=(source, 0)
    )
    return reader, writer


async def start_data(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """Greeting to DATA; returns the reply to DATA."""
    assert (await reader.readline()).startswith(b"220")
    for line in (b"EHLO attacker", b"MAIL FROM:<x@attacker.test>", f"RCPT TO:<{SUPPORT}>".encode()):
        writer.write(line + b"\r\n")
        await writer.drain()
        while True:
            reply = await reader.readline()
            if reply[3:4] != b"-":
                break
    writer.write(b"DATA\r\n")
    await writer.drain()
    return await reader.readline()


async def until(check: Any) -> None:
    async with asyncio.timeout(5):
        while not check():  # noqa: ASYNC110 - polls the handler's counters
            await asyncio.sleep(0.01)


async def test_global_connection_cap_answers_421(start_email) -> None:
    gw = await start_email({"limits": {"smtp_max_connections": 3}})
    handler = gw.extras["email_handler"]
    held = [await open_from(gw, "127.0.0.2") for _ in range(3)]
    for reader, _ in held:
        assert (await reader.readline()).startswith(b"220")
    reader, writer = await open_from(gw, "127.0.0.3")  # another address: the cap is global
    assert (await reader.readline()).startswith(b"421 4.3.2")
    writer.close()
    held[0][1].close()
    await until(lambda: handler.connections < 3)
    assert (await send(gw, mail()))[0] == 250  # a slot came free: the normal sender delivers
    for _, w in held[1:]:
        w.close()


async def test_one_address_at_its_cap_leaves_other_senders_working(start_email) -> None:
    gw = await start_email({"limits": {"smtp_connections_per_ip": 2}})
    held = [await open_from(gw, "127.0.0.2") for _ in range(2)]
    for reader, _ in held:
        assert (await reader.readline()).startswith(b"220")
    reader, writer = await open_from(gw, "127.0.0.2")
    assert (await reader.readline()).startswith(b"421 4.7.0")
    writer.close()
    assert (await send(gw, mail()))[0] == 250  # during the attack
    for _, w in held:
        w.close()


async def test_data_bytes_in_memory_are_bounded_with_421(start_email) -> None:
    gw = await start_email(
        {"email": {"max_message_bytes": 2048}, "limits": {"smtp_data_memory_bytes": 4096}}
    )
    handler = gw.extras["email_handler"]
    attackers = [await open_from(gw, "127.0.0.2") for _ in range(2)]
    for reader, writer in attackers:
        assert (await start_data(reader, writer)).startswith(b"354")
        writer.write(b"Subject: slow\r\n\r\n" + b"x" * 500)  # then nothing more: held
        await writer.drain()
    assert handler.data_reserved == 4096
    reader, writer = await open_from(gw, "127.0.0.3")
    assert (await start_data(reader, writer)).startswith(b"421 4.3.2")
    assert await asyncio.wait_for(reader.read(), timeout=5) == b""  # and hung up
    writer.close()
    for _, w in attackers:
        w.close()
    await until(lambda: handler.data_reserved == 0)
    assert (await send(gw, mail()))[0] == 250


async def test_declared_size_reserves_less_and_binds_the_message(start_email) -> None:
    """RFC 1870: a sender declaring SIZE reserves about that much, and is held to it."""
    gw = await start_email(
        {"email": {"max_message_bytes": 100_000}, "limits": {"smtp_data_memory_bytes": 100_000}}
    )
    handler = gw.extras["email_handler"]
    held = []
    for _ in range(3):  # three declared 20 kB messages fit in a 100 kB budget together
        reader, writer = await open_from(gw, "127.0.0.2")
        assert (await reader.readline()).startswith(b"220")
        for line in (
            b"EHLO a",
            b"MAIL FROM:<x@attacker.test> SIZE=20000",
            f"RCPT TO:<{SUPPORT}>".encode(),
            b"DATA",
        ):
            writer.write(line + b"\r\n")
            await writer.drain()
            while (reply := await reader.readline())[3:4] == b"-":
                pass
        assert reply.startswith(b"354")
        held.append((reader, writer))
    assert 0 < handler.data_reserved <= 3 * 26_096
    reader, writer = held[0]
    writer.write(b"Subject: liar\r\n\r\n" + (b"x" * 998 + b"\r\n") * 60 + b".\r\n")  # 60 kB
    await writer.drain()
    assert (await reader.readline()).startswith(b"552")  # more than it declared
    for _, w in held:
        w.close()
    assert (await send(gw, mail()))[0] == 250


async def test_dribbling_a_command_does_not_dodge_the_idle_timeout(start_email) -> None:
    gw = await start_email({"email": {"idle_timeout": "1s"}})
    reader, writer = await open_from(gw, "127.0.0.2")
    assert (await reader.readline()).startswith(b"220")

    async def dribble() -> None:
        for byte in b"EHLO " + b"a" * 100:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)

    dribbler = asyncio.create_task(dribble())
    assert (await send(gw, mail()))[0] == 250  # the normal sender meanwhile
    rest = await asyncio.wait_for(reader.read(), timeout=15)  # EOF: cut off
    assert b"250" not in rest
    dribbler.cancel()
    await asyncio.gather(dribbler, return_exceptions=True)
    writer.close()


def mime_bomb(levels: int) -> bytes:
    """A message nested `levels` multiparts deep (checklist E14)."""
    parts = b"Content-Type: text/plain\r\n\r\nhola\r\n"
    for i in range(levels):
        b = f"b{i}".encode()
        parts = (
            b'Content-Type: multipart/mixed; boundary="'
            + b
            + b'"\r\n\r\n--'
            + b
            + b"\r\n"
            + parts
            + b"--"
            + b
            + b"--\r\n"
        )
    head = b"From: Eva <eva@cliente.com>\r\nTo: soporte@callmyway.com\r\nSubject: bomba\r\n"
    return head + b"Message-ID: <bomb@cliente.com>\r\n" + parts


async def test_deep_mime_nesting_is_stored_degraded_while_normal_mail_flows(start_email) -> None:
    gw = await start_email()
    bomb = asyncio.create_task(send(gw, mime_bomb(2000), mail_from="eva@cliente.com"))
    assert (await send(gw, mail()))[0] == 250  # the normal sender, at the same time
    code, _ = await bomb
    assert code == 250  # accepted and kept raw: nothing lost, bounded parse
