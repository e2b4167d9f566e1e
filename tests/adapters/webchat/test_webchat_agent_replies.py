"""Agent replies to a webchat incident: live to every socket, or stored, replayed and mailed."""

from __future__ import annotations

from typing import Any

from adapters.webchat.ws import HUB
from tests.adapters.webchat.chat_kit import (
    agent_reply,
    connect,
    hello,
    recv,
    sockets_of,
    start_chat,
    wait_for,
)


async def test_reply_reaches_every_open_socket_of_the_visitor(chat_app: Any) -> None:
    client, gw = await chat_app()
    ws, welcome, ticket = await start_chat(client)
    tab = await connect(client)
    await hello(tab, welcome["token"])
    row = await agent_reply(gw, ticket["tracking"], "Hola Ana, ya revisamos su central.")
    for sock in (ws, tab):
        frame = await recv(sock)
        assert frame["type"] == "message" and frame["from"] == "agent"
        assert frame["text"] == "Hola Ana, ya revisamos su central."
        assert frame["tracking"] == ticket["tracking"] and frame["at"]
    assert row["status"] == "sent" and row["provider_id"] == "ws:2"
    emails = await gw.store.read(
        lambda tx: tx.all("SELECT * FROM outbox WHERE channel = 'email' AND kind = 'reply'")
    )
    assert emails == []  # the customer was there: no email copy


async def test_reply_while_offline_is_not_mailed_to_an_unconfirmed_address(chat_app: Any) -> None:
    # Issue #15: the pre-chat form's email is only a claim; anyone may type anyone's address, so
    # an agent's reply is never mailed to it until the visitor confirmed it.
    client, gw = await chat_app()
    ws, welcome, ticket = await start_chat(client)
    await ws.close()
    await wait_for(lambda: gw.app[HUB].visitors == {}, "the socket to be gone")
    row = await agent_reply(gw, ticket["tracking"], "Le llamamos en 10 minutos.")
    assert row["status"] == "sent" and row["provider_id"] == "stored-for-replay"
    copies = await gw.store.read(
        lambda tx: tx.all("SELECT * FROM outbox WHERE channel = 'email' AND kind = 'reply'")
    )
    assert copies == []
    # The customer comes back: the reply is in the replayed conversation.
    ws2 = await connect(client)
    again, replay = await hello(ws2, welcome["token"])
    assert again["tracking"] == ticket["tracking"]
    assert [(f["from"], f["text"]) for f in replay][-1] == ("agent", "Le llamamos en 10 minutos.")


async def test_reply_while_offline_without_email_waits_for_the_visitor(chat_app: Any) -> None:
    client, gw = await chat_app()
    ws, welcome, ticket = await start_chat(client, email=None, phone="+50688880002")
    await ws.close()
    await wait_for(lambda: gw.app[HUB].visitors == {}, "the socket to be gone")
    row = await agent_reply(gw, ticket["tracking"], "¿Sigue el problema?")
    assert row["provider_id"] == "stored-for-replay"
    emails = await gw.store.read(lambda tx: tx.all("SELECT * FROM outbox WHERE channel = 'email'"))
    assert emails == []
    ws2 = await connect(client)
    _, replay = await hello(ws2, welcome["token"])
    assert replay[-1]["from"] == "agent" and replay[-1]["text"] == "¿Sigue el problema?"


async def test_another_customers_email_gives_no_access(chat_app: Any) -> None:
    client, gw = await chat_app()
    victim, victim_welcome, victim_ticket = await start_chat(client)
    # Someone else types the victim's email (and name) in the pre-chat form.
    intruder, intruder_welcome, intruder_ticket = await start_chat(client, client_id="i-1")
    assert intruder_ticket["tracking"] != victim_ticket["tracking"]
    await agent_reply(gw, victim_ticket["tracking"], "Datos privados de la cuenta")
    assert (await recv(victim))["text"] == "Datos privados de la cuenta"
    # Nothing reached the intruder's socket: the next frame it gets answers its own probe.
    await intruder.send_str("not json")
    assert (await recv(intruder))["code"] == "bad_json"
    # Reconnecting shows only the intruder's own conversation.
    again = await connect(client)
    welcome, replay = await hello(again, intruder_welcome["token"])
    assert welcome["tracking"] == intruder_ticket["tracking"]
    assert {f["tracking"] for f in replay} == {intruder_ticket["tracking"]}
    assert await sockets_of(gw, victim_welcome["token"]) == 1
