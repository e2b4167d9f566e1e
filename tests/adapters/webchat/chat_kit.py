"""Helpers for web chat tests: a real `ws_connect` client speaking CONTRACT "WebSocket chat".

Frames are read in order with a timeout; `frames_until` returns what came before a frame type so
tests can assert on everything the server sent (nothing is ever skipped silently).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType
from aiohttp.test_utils import TestClient

from adapters.webchat.ws import HUB
from gateway.core.replies import queue_reply
from gateway.core.services import Gateway
from gateway.store.tx import Row

ORIGIN = "https://www.callmyway.com"  # shipped in [webchat] allowed_origins
START: dict[str, Any] = {
    "type": "start",
    "client_id": "c-start",
    "name": "Ana Rojas",
    "email": "ana@example.com",
    "country": "CR",
    "text": "No tenemos tono en ninguna extensión desde esta mañana",
    "users": "company",
    "can_work": False,
}


async def connect(client: TestClient, origin: str | None = ORIGIN) -> ClientWebSocketResponse:
    """Open /chat/ws the way a browser does (with an Origin header)."""
    headers = {"Origin": origin} if origin else {}
    return await client.ws_connect("/chat/ws", headers=headers)


async def recv(ws: ClientWebSocketResponse) -> dict[str, Any]:
    """The next JSON text frame (fails on close or after 5 s)."""
    msg = await ws.receive(timeout=5)
    assert msg.type == WSMsgType.TEXT, f"expected a text frame, got {msg.type}: {msg.data!r}"
    return json.loads(msg.data)  # type: ignore[no-any-return]


async def frames_until(ws: ClientWebSocketResponse, kind: str) -> list[dict[str, Any]]:
    """Every frame up to and including the first of type `kind`."""
    seen = []
    while True:
        frame = await recv(ws)
        seen.append(frame)
        if frame["type"] == kind:
            return seen


async def hello(
    ws: ClientWebSocketResponse, token: str | None = None, **extra: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Send hello; return the welcome and the replayed message frames."""
    await ws.send_json({"type": "hello", **({"token": token} if token else {}), **extra})
    frames = await frames_until(ws, "synced")
    assert frames[0]["type"] == "welcome", frames
    replay = frames[1:-1]
    assert all(f["type"] == "message" for f in replay), replay
    assert frames[-1]["count"] == len(replay)
    return frames[0], replay


async def start_chat(
    client: TestClient, **fields: Any
) -> tuple[ClientWebSocketResponse, dict[str, Any], dict[str, Any]]:
    """Connect, hello, start; returns (socket, welcome, ticket)."""
    ws = await connect(client)
    welcome, _ = await hello(ws)
    await ws.send_json({**START, **fields})
    frames = await frames_until(ws, "ticket")
    assert [f["type"] for f in frames] == ["ack", "ticket"], frames
    return ws, welcome, frames[-1]


async def wait_for(predicate: Any, what: str) -> None:
    """Wait (up to 5 s, yielding to the loop) until `predicate()` is true."""
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def sockets_of(gw: Gateway, visitor_token: str) -> int:
    """How many sockets the server holds for the visitor of a token."""
    visitor = visitor_token.split(".")[1]
    return gw.app[HUB].count(visitor)


async def agent_reply(gw: Gateway, tracking: str, text: str) -> Row:
    """Queue an agent reply as the API does, deliver it, and return its outbox row."""
    async with gw.bus.subscribe() as notices:

        def queue(tx: Any) -> int:
            incident = tx.incident_by_tracking(tracking)
            return queue_reply(
                tx, incident, text=text, author="ana.l1", now=gw.clock(), guards=gw.reply_guards
            )

        message_id = await gw.store.transact(queue)
        gw.outbox.wake()
        await gw.outbox.drain_once()
        # The worker may have taken the row first: wait for its recorded delivery.
        while True:
            notice = await asyncio.wait_for(notices.get(), timeout=5)
            if notice.get("type") == "delivery" and notice.get("tracking") == tracking:
                break
    row = await gw.store.read(
        lambda tx: tx.one("SELECT * FROM outbox WHERE message_id = ?", (message_id,))
    )
    assert row is not None
    return row


async def incident_messages(gw: Gateway, tracking: str) -> list[Row]:
    """The incident's stored messages, oldest first."""

    def read(tx: Any) -> list[Row]:
        incident = tx.incident_by_tracking(tracking)
        return tx.messages(incident["id"])

    return await gw.store.read(read)  # type: ignore[no-any-return]


async def two_tabs(
    first_client: TestClient, second_client: TestClient
) -> tuple[ClientWebSocketResponse, ClientWebSocketResponse, str]:
    """A visitor's first tab on `first_client` and a second, with its token, on `second_client`;
    the two sockets and the token."""
    first = await connect(first_client)
    welcome, _ = await hello(first)
    second = await connect(second_client)
    await hello(second, welcome["token"])
    return first, second, welcome["token"]


async def refused_for_too_many_sockets(client: TestClient, token: str) -> None:
    """One more tab of the visitor holding `token`: refused, then closed with 1008."""
    extra = await connect(client)
    await extra.send_json({"type": "hello", "token": token})
    refused = await recv(extra)
    assert refused["type"] == "error" and refused["code"] == "too_many_sockets"
    await asyncio.wait_for(extra.receive(), timeout=5)
    assert extra.close_code == 1008


async def welcomed_again(client: TestClient, token: str) -> ClientWebSocketResponse:
    """A new tab of the visitor, retried until the server has noticed a closed one."""
    for _ in range(100):  # the server notices the close on its own schedule
        again = await connect(client)
        await again.send_json({"type": "hello", "token": token})
        if (await recv(again))["type"] == "welcome":
            return again
        await again.close()
        await asyncio.sleep(0.05)
    raise AssertionError("the closed socket was never released")
