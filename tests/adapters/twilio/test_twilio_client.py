"""The shared Twilio REST client applies its timeout (the library's async client drops it)."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.twilio.client import make_client


async def test_a_silent_twilio_api_times_out(make_settings) -> None:
    async def hang(request: web.Request) -> web.Response:
        await asyncio.sleep(30)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{sid}/Calls.json", hang)
    async with TestServer(app) as server:
        settings = make_settings(
            TWILIO_ACCOUNT_SID="AC" + "0" * 32,
            TWILIO_AUTH_TOKEN="tok",
            TWILIO_API_BASE=str(server.make_url("")).rstrip("/"),
        )
        client = make_client(settings)
        client.http_client.timeout = 0.3
        try:
            with pytest.raises(asyncio.TimeoutError):
                await client.calls.create_async(
                    to="+50688880000", from_="+50640004000", url="https://example.com/twiml"
                )
        finally:
            await client.http_client.close()
