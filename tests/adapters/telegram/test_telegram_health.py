"""Telegram's health as the NOC sees it: a 502 is a failure of the Bot API, a later delivery
its recovery; a 403 (blocked by the user) is an answer, so the API counts as up."""

from __future__ import annotations

from tests.adapters.telegram.conftest import message, post, settle


async def test_bot_api_failures_and_successes_are_recorded(tg, bot_api, clock) -> None:
    client, gw = tg
    bot_api.fail = ["502"]
    await post(client, message(3101, "No tengo tono"))
    await settle(gw)
    down = gw.providers.states["telegram"]
    assert down.failing_since == clock.now and "Bad Gateway" in (down.error or "")
    clock.advance(hours=1)
    await settle(gw)
    assert len(bot_api.sent()) == 1
    up = gw.providers.states["telegram"]
    assert up.last_ok == clock.now and up.failing_since is None


async def test_a_blocked_chat_is_not_an_outage(tg, bot_api, clock) -> None:
    client, gw = tg
    bot_api.fail = ["403"]
    await post(client, message(3102, "Hola"))
    await settle(gw)
    state = gw.providers.states["telegram"]
    assert state.failing_since is None and state.last_ok == clock.now
