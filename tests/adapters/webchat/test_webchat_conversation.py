"""A chat through the socket: start → ticket after commit, acks, dedupe on resend, resume."""

from __future__ import annotations

import json
from typing import Any

from tests.adapters.webchat.chat_kit import (
    START,
    connect,
    frames_until,
    hello,
    incident_messages,
    recv,
    start_chat,
)


async def test_start_registers_the_incident_and_returns_its_tracking(
    chat_app: Any, agent_token: Any
) -> None:
    client, gw = await chat_app()
    ws = await connect(client)
    welcome, replay = await hello(ws)
    assert welcome["open"] is True and welcome["resumed"] is False and replay == []
    assert "tracking" not in welcome and welcome["token"].startswith("v1.")
    assert set(welcome["lines"]) == set(gw.settings.routing.lines)
    await ws.send_json(START)
    ack, ticket = await frames_until(ws, "ticket")
    assert ack == {
        "type": "ack",
        "client_id": "c-start",
        "id": ack["id"],
        "tracking": ack["tracking"],
    }
    assert ticket["tracking"] == ack["tracking"] and ticket["after_hours"] is False
    assert ticket["tracking"] in ticket["notice"]
    token = await agent_token(gw)
    resp = await client.get(
        f"/api/v1/incidents/{ticket['tracking']}", headers={"Authorization": f"Bearer {token}"}
    )
    incident = await resp.json()
    assert incident["channel"] == "webchat" and incident["country"] == "CR"
    # The whole company cannot work: the seed's S1.
    assert incident["severity"] == "S1" and incident["status"] == "new"
    assert incident["contact"]["name"] == "Ana Rojas"
    assert incident["contact"]["email"] == "ana@example.com"
    assert [m["body"] for m in incident["messages"]] == [START["text"]]


async def test_impact_answers_set_the_severity(chat_app: Any) -> None:
    client, gw = await chat_app()
    _, _, ticket = await start_chat(
        client, users="one", can_work=True, email=None, phone="88880001"
    )
    incident = await gw.store.read(lambda tx: tx.incident_by_tracking(ticket["tracking"]))
    assert incident["severity"] == "S4"
    # The typed phone is kept normalized, as the incident's claim; the visitor's contact holds
    # only its signed visitor id (issue #15).
    assert json.loads(incident["claims"]) == {"name": "Ana Rojas", "phone": "+50688880001"}
    contact = await gw.store.read(lambda tx: tx.contact(incident["contact_id"]))
    assert contact["phone"] is None and contact["email"] is None and contact["visitor_id"]


async def test_messages_are_acked_and_a_resend_is_stored_once(chat_app: Any) -> None:
    client, gw = await chat_app()
    ws, welcome, ticket = await start_chat(client)
    await ws.send_json({"type": "message", "client_id": "m-1", "text": "¿Alguna novedad?"})
    ack = await recv(ws)
    assert (
        ack["type"] == "ack" and ack["client_id"] == "m-1" and ack["tracking"] == ticket["tracking"]
    )
    # The network drops before the client saw the ack: it reconnects and resends the frame.
    await ws.close()
    ws2 = await connect(client)
    again, replay = await hello(ws2, welcome["token"])
    assert again["resumed"] is True and again["tracking"] == ticket["tracking"]
    assert [(f["from"], f["text"], f.get("client_id")) for f in replay] == [
        ("customer", START["text"], "c-start"),
        ("customer", "¿Alguna novedad?", "m-1"),
    ]
    await ws2.send_json({"type": "message", "client_id": "m-1", "text": "¿Alguna novedad?"})
    dup = await recv(ws2)
    assert dup == ack
    texts = [m["body"] for m in await incident_messages(gw, ticket["tracking"])]
    assert texts == [START["text"], "¿Alguna novedad?"]


async def test_other_tabs_of_the_visitor_see_the_customer_message(chat_app: Any) -> None:
    client, _ = await chat_app()
    ws, welcome, ticket = await start_chat(client)
    tab = await connect(client)
    await hello(tab, welcome["token"])
    await ws.send_json({"type": "message", "client_id": "m-2", "text": "Sigue sin tono"})
    assert (await recv(ws))["type"] == "ack"
    echo = await recv(tab)
    assert echo["type"] == "message" and echo["from"] == "customer"
    assert echo["text"] == "Sigue sin tono" and echo["client_id"] == "m-2"
    assert echo["tracking"] == ticket["tracking"]


async def test_message_before_start_or_hello_is_refused(chat_app: Any) -> None:
    client, gw = await chat_app()
    ws = await connect(client)
    await ws.send_json({"type": "message", "client_id": "x1", "text": "hola"})
    error = await recv(ws)
    assert error["code"] == "hello_first" and error["client_id"] == "x1"
    await hello(ws)
    await ws.send_json({"type": "message", "client_id": "x2", "text": "hola"})
    error = await recv(ws)
    assert error["code"] == "no_conversation"
    count = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents"))
    assert count["n"] == 0


async def test_english_widget_gets_english_texts(chat_app: Any) -> None:
    client, _ = await chat_app()
    ws = await connect(client)
    await hello(ws, lang="en")
    await ws.send_json({**START, "text": "Our phones are dead"})
    _, ticket = await frames_until(ws, "ticket")
    assert ticket["notice"].startswith("We registered your case with tracking number")
    await ws.send_json({"type": "message", "client_id": "e1"})
    error = await recv(ws)
    assert error["code"] == "missing_field" and error["field"] == "text"
    assert error["message"].startswith("A required field is missing")
