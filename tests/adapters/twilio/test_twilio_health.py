"""Twilio's health as the NOC sees it: every REST call's outcome is recorded (5xx or no answer
is a failure, anything Twilio answered otherwise is a success)."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from twilio.base.exceptions import TwilioRestException

from adapters.twilio.client import make_client
from gateway.core.providers import ProviderHealth


async def test_twilio_calls_record_last_ok_and_last_error(make_settings, clock) -> None:
    answer = {"status": 500}

    async def calls(request: web.Request) -> web.Response:
        if answer["status"] >= 400:
            return web.json_response({"message": "down", "code": 20500}, status=answer["status"])
        return web.json_response({"sid": "CA" + "1" * 32, "status": "queued"}, status=201)

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Calls.json", calls)
    async with TestServer(app) as server:
        settings = make_settings(
            TWILIO_ACCOUNT_SID="AC" + "0" * 32,
            TWILIO_AUTH_TOKEN="tok",
            TWILIO_API_BASE=str(server.make_url("")).rstrip("/"),
        )
        health = ProviderHealth(clock)
        client = make_client(settings, health)
        args = {"to": "+50688880000", "from_": "+50640004000", "url": "https://example.com/t"}
        try:
            with pytest.raises(TwilioRestException):
                await client.calls.create_async(**args)
            failing = health.states["twilio"]
            assert failing.failing_since == clock.now and "500" in (failing.error or "")
            clock.advance(minutes=2)
            answer["status"] = 201
            await client.calls.create_async(**args)
            ok = health.states["twilio"]
            assert ok.last_ok == clock.now and ok.failing_since is None
            answer["status"] = 400  # a refusal is an answer: Twilio is up
            with pytest.raises(TwilioRestException):
                await client.calls.create_async(**args)
            assert health.states["twilio"].failing_since is None
        finally:
            await client.http_client.close()
