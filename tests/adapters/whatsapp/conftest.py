"""Fixtures of the WhatsApp tests: the fake Twilio on loopback and the gateway pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from config.settings import Settings
from gateway.core.services import Gateway
from tests.adapters.whatsapp.wa_kit import (
    ACCOUNT_SID,
    ADAPTERS,
    AUTH_TOKEN,
    PUBLIC_URL,
    FakeTwilio,
    fake_app,
)


@pytest.fixture
async def twilio_fake() -> AsyncIterator[FakeTwilio]:
    state = FakeTwilio()
    server = TestServer(fake_app(state), host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    yield state
    await server.close()


@pytest.fixture
def wa_settings(make_settings: Callable[..., Settings], twilio_fake: FakeTwilio) -> Settings:
    return make_settings(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        GATEWAY_PUBLIC_URL=PUBLIC_URL,
        TWILIO_API_BASE=twilio_fake.url,
    )


@pytest.fixture
async def wa(start_app: Any, wa_settings: Settings) -> tuple[TestClient, Gateway]:
    """The gateway with the WhatsApp and status adapters, on loopback."""
    return await start_app(wa_settings, adapters=ADAPTERS)
