"""A chat frame flood is cut with 1008 while another visitor, at the same time, starts a chat
and gets its ticket (issue #16 item 4, checklist W3)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import WSCloseCode, WSMsgType

from tests.adapters.webchat.chat_kit import connect, hello, start_chat


async def test_frame_flood_is_closed_while_a_normal_visitor_is_served(chat_app: Any) -> None:
    client, _ = await chat_app({"messages_per_minute": 10})
    flooder = await connect(client)
    await hello(flooder)

    async def flood() -> int | None:
        for i in range(500):  # as fast as the socket takes them, never reading
            if flooder.closed:
                break
            await flooder.send_json({"type": "message", "text": f"spam {i}"})
        while True:
            msg = await flooder.receive(timeout=10)
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED):
                return msg.data if msg.type == WSMsgType.CLOSE else flooder.close_code

    flooding = asyncio.create_task(flood())
    ws, _, ticket = await start_chat(client)  # the normal visitor, during the flood
    assert ticket["tracking"].startswith("CMW-")
    assert await flooding == WSCloseCode.POLICY_VIOLATION
    await ws.close()
