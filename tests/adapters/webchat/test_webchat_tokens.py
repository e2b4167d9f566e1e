"""Visitor tokens: a valid token resumes only its own conversation; anything else starts afresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from adapters.webchat.token import issue_token, new_visitor_id, verify_token
from tests.adapters.webchat.chat_kit import connect, hello, start_chat

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
KEY = "k" * 43


def test_a_token_proves_its_visitor_id() -> None:
    visitor = new_visitor_id()
    token = issue_token(KEY, visitor, NOW)
    assert verify_token(KEY, token, NOW + timedelta(days=30)) == visitor


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature changed
        lambda t: t.replace(t.split(".")[1], new_visitor_id()),  # another visitor id
        lambda t: t.replace(t.split(".")[2], str(int(t.split(".")[2]) + 1)),  # re-dated
        lambda t: "v2" + t[2:],
        lambda t: t + ".x",
        lambda t: "",
        lambda t: None,
        lambda t: 12345,
        lambda t: "a" * 5000,
    ],
)
def test_tampered_tokens_are_refused(mangle: Any) -> None:
    token = issue_token(KEY, new_visitor_id(), NOW)
    assert verify_token(KEY, mangle(token), NOW) is None


def test_tokens_expire_and_die_with_a_rotated_key() -> None:
    token = issue_token(KEY, new_visitor_id(), NOW)
    assert verify_token(KEY, token, NOW + timedelta(days=91)) is None
    assert verify_token("another key", token, NOW) is None


async def test_resume_with_token_replays_and_reissues(chat_app: Any, clock: Any) -> None:
    client, _ = await chat_app()
    ws, welcome, ticket = await start_chat(client)
    await ws.close()
    clock.advance(days=1)
    ws2 = await connect(client)
    again, replay = await hello(ws2, welcome["token"])
    assert again["resumed"] is True and again["tracking"] == ticket["tracking"]
    assert again["token"] != welcome["token"]  # re-issued: the 90 days start again
    assert again["token"].split(".")[1] == welcome["token"].split(".")[1]
    assert len(replay) == 1


@pytest.mark.parametrize("kind", ["tampered", "foreign_key", "expired", "garbage"])
async def test_bad_token_gets_a_fresh_session_without_history(
    chat_app: Any, clock: Any, kind: str
) -> None:
    client, _ = await chat_app()
    ws, welcome, _ = await start_chat(client)
    await ws.close()
    visitor = welcome["token"].split(".")[1]
    token = {
        "tampered": welcome["token"][:-3] + "xyz",
        "foreign_key": issue_token("a key of another gateway", visitor, clock.now),
        "expired": welcome["token"],
        "garbage": "<script>alert(1)</script>",
    }[kind]
    if kind == "expired":
        clock.advance(days=91)
    ws2 = await connect(client)
    again, replay = await hello(ws2, token)
    assert again["resumed"] is False and replay == [] and "tracking" not in again
    assert again["token"].split(".")[1] != visitor
    # And the fresh session cannot write into the old conversation.
    await ws2.send_json({"type": "message", "client_id": "m", "text": "hola"})
    assert (await ws2.receive_json(timeout=5))["code"] == "no_conversation"
