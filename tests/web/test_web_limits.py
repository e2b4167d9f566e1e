"""Bounded HTTP connections (issue #16 item 4): a per-address connection cap and deadlines for
headers and bodies (slowloris), each while a normal client on another address keeps working.

The gateway runs on its own guarded listener (gateway.web.listen, as `serve` runs it); the
attacker connects from 127.0.0.2, the normal client from 127.0.0.1 (both loopback).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.app import create_app
from gateway.web.listen import start_http
from tests.conftest import FakeResolver

ATTACKER = "127.0.0.2"


@pytest.fixture
async def served(make_settings: Any, clock: Any) -> AsyncIterator[Any]:
    """start(limits) -> base URL of a gateway served by the guarded listener."""
    runners = []

    async def start(**limits: Any) -> str:
        settings = make_settings({"limits": limits})
        app = create_app(settings, clock=clock, adapters={}, resolver=FakeResolver())
        runner, site = await start_http(app, settings, port=0)
        runners.append(runner)
        return f"http://127.0.0.1:{site.port}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def connect_from(base: str, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = base.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port), local_addr=(source, 0))


async def healthy(base: str) -> bool:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as resp:
        return resp.status == 200


async def test_one_address_over_its_connection_cap_gets_429_others_unaffected(served) -> None:
    base = await served(http_connections_per_ip=3)
    held = [await connect_from(base, ATTACKER) for _ in range(3)]
    for _, writer in held:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # half a request, held open
        await writer.drain()
    reader, writer = await connect_from(base, ATTACKER)
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    assert answer.startswith(b"HTTP/1.1 429"), answer[:100]
    assert b"too many connections" in answer
    writer.close()
    assert await healthy(base)  # the normal client, from another address, during the attack
    for _, w in held:
        w.close()
    await asyncio.sleep(0.2)
    reader, writer = await connect_from(base, ATTACKER)  # released: the address may come back
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (await asyncio.wait_for(reader.read(), timeout=10)).startswith(b"HTTP/1.1 200")
    writer.close()


async def test_dribbled_headers_are_cut_off_while_others_are_served(served) -> None:
    base = await served(http_header_timeout="1s")
    reader, writer = await connect_from(base, ATTACKER)
    writer.write(b"GET /healthz HTTP/1.1\r\n")

    async def dribble() -> None:
        for byte in b"X-Slow: " + b"a" * 200:
            writer.write(bytes([byte]))
            await writer.drain()
            assert await healthy(base)  # the normal client is served meanwhile
            await asyncio.sleep(0.1)

    dribbler = asyncio.create_task(dribble())
    # The guard closes the socket; the dribbler then fails writing, or is still going.
    assert await asyncio.wait_for(reader.read(), timeout=15) == b""
    dribbler.cancel()
    await asyncio.gather(dribbler, return_exceptions=True)
    writer.close()


async def test_dribbled_body_gets_408(served) -> None:
    base = await served(http_body_timeout="1s")
    reader, writer = await connect_from(base, ATTACKER)
    writer.write(
        b"POST /api/v1/incidents/CMW-0000001-3/note HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"name": '
    )
    await writer.drain()
    assert await healthy(base)
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=15)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    writer.close()
    assert await healthy(base)
