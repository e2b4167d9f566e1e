"""Web chat on two instances of one PostgreSQL database (in one test process): a visitor whose
socket is on A gets the reply an agent sends from B, resumes on B after A is gone, and is
capped in sockets across both."""

from __future__ import annotations

from typing import Any

import pytest

from tests.adapters.webchat.chat_kit import (
    agent_reply,
    connect,
    frames_until,
    hello,
    recv,
    refused_for_too_many_sockets,
    start_chat,
    two_tabs,
    welcomed_again,
)

pytestmark = pytest.mark.postgresql_only


async def test_a_reply_sent_from_b_reaches_the_visitor_on_a(chat_app: Any) -> None:
    client_a, _ = await chat_app(GATEWAY_INSTANCE="core-a")
    _, b = await chat_app(GATEWAY_INSTANCE="core-b")
    ws, _, ticket = await start_chat(client_a)
    row = await agent_reply(b, ticket["tracking"], "Reiniciamos su troncal; pruebe ahora.")
    assert row["status"] == "sent" and row["provider_id"] == "ws:relayed"
    frame = await recv(ws)
    assert frame["type"] == "message" and frame["from"] == "agent"
    assert frame["text"] == "Reiniciamos su troncal; pruebe ahora."
    await ws.close()


async def test_a_visitor_resumes_on_b_after_a_is_gone(chat_app: Any) -> None:
    client_a, _ = await chat_app(GATEWAY_INSTANCE="core-a")
    client_b, _ = await chat_app(GATEWAY_INSTANCE="core-b")
    _, welcome, ticket = await start_chat(client_a)
    await client_a.close()  # instance A goes away with the visitor's socket
    ws_b = await connect(client_b)
    resumed, replay = await hello(ws_b, welcome["token"])
    assert resumed["resumed"] is True and resumed["tracking"] == ticket["tracking"]
    assert [f["from"] for f in replay] == ["customer"]
    await ws_b.send_json({"type": "message", "client_id": "c-2", "text": "¿Siguen ahí?"})
    frames = await frames_until(ws_b, "ack")
    assert frames[-1]["tracking"] == ticket["tracking"]  # the same conversation, on B
    await ws_b.close()


async def test_a_visitors_sockets_are_capped_across_instances(chat_app: Any) -> None:
    client_a, _ = await chat_app({"max_sockets_per_visitor": 2}, GATEWAY_INSTANCE="core-a")
    client_b, _ = await chat_app({"max_sockets_per_visitor": 2}, GATEWAY_INSTANCE="core-b")
    first, second, token = await two_tabs(client_a, client_b)
    await refused_for_too_many_sockets(client_b, token)
    await second.close()
    await welcomed_again(client_a, token)  # the close is recorded across instances
    await first.close()
