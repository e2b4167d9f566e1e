"""After hours and a store that cannot write: the chat says so, and acknowledges nothing unsaved."""

from __future__ import annotations

from typing import Any

from tests.adapters.webchat.chat_kit import START, connect, frames_until, hello, recv
from tests.conftest import CLOSED_TIME
from tests.faults import fail_inserts, heal_inserts


async def test_after_hours_welcome_and_ticket_ask_to_confirm_the_email(
    chat_app: Any, clock: Any
) -> None:
    clock.set(CLOSED_TIME)  # Sunday 23:00 in Costa Rica
    client, gw = await chat_app()
    ws = await connect(client)
    welcome, _ = await hello(ws, country="CR")
    assert welcome["open"] is False and welcome["country"] == "CR"
    assert welcome["hours"].startswith("lunes a viernes de 06:00 a 21:00")
    assert welcome["opens_at"] == "2026-11-30T12:00:00.000000+00:00"  # Monday 06:00 CR
    assert "Abrimos el lunes 30/11/2026 a las 06:00, hora de Costa Rica" in welcome["notice"]
    assert welcome["lines"]["CR"]["open"] is False
    await ws.send_json(START)
    ack, ticket = await frames_until(ws, "ticket")
    assert ack["type"] == "ack" and ticket["after_hours"] is True
    assert ticket["opens_at"] == welcome["opens_at"]
    # The typed address gets a confirmation link first (issue #15): replies are mailed only then.
    notice = ticket["notice"].lower()
    assert "le enviamos un enlace a ana@example.com: confírmelo" in notice
    incident = await gw.store.read(lambda tx: tx.incident_by_tracking(ticket["tracking"]))
    assert incident["after_hours"] == 1 and incident["status"] == "new"


async def test_after_hours_without_email_promises_an_answer_in_the_chat(
    chat_app: Any, clock: Any
) -> None:
    clock.set(CLOSED_TIME)
    client, _ = await chat_app()
    ws = await connect(client)
    await hello(ws)
    await ws.send_json({**START, "email": None, "phone": "+50688880003"})
    _, ticket = await frames_until(ws, "ticket")
    assert "Le responderemos en este chat cuando abramos." in ticket["notice"]


async def test_store_failure_answers_not_saved_and_the_resend_is_kept_once(chat_app: Any) -> None:
    client, gw = await chat_app()
    ws = await connect(client)
    await hello(ws)
    # A real SQL failure inside the intake's transaction (as a full disk or I/O error would be).
    await gw.store.transact(lambda tx: fail_inserts(tx, "messages"))
    await ws.send_json(START)
    error = await recv(ws)
    assert error == {
        "type": "error",
        "code": "not_saved",
        "message": error["message"],
        "client_id": "c-start",
    }
    assert "reintentaremos" in error["message"]
    count = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents"))
    assert count["n"] == 0  # nothing half-saved
    await gw.store.transact(lambda tx: heal_inserts(tx, "messages"))
    await ws.send_json(START)  # the client resends the same frame
    ack, ticket = await frames_until(ws, "ticket")
    assert ack["client_id"] == "c-start" and ticket["tracking"]
    await ws.send_json(START)  # and once more: a duplicate, same ticket
    ack2, ticket2 = await frames_until(ws, "ticket")
    assert ack2 == ack and ticket2["tracking"] == ticket["tracking"]
    counts = await gw.store.read(
        lambda tx: tx.one(
            "SELECT (SELECT count(*) FROM incidents) AS incidents,"
            " (SELECT count(*) FROM messages) AS messages"
        )
    )
    assert counts == {"incidents": 1, "messages": 1}
