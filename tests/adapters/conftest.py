"""Fixtures of the voice and Click2Call tests: the fake Twilio API and settings pointed at it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from config.settings import Settings
from tests.adapters.twilio.voice_kit import ACCOUNT_SID, AUTH_TOKEN, PUBLIC_URL, FakeTwilio
from tests.conftest import FakeClock


@pytest.fixture
async def fake_twilio(clock: FakeClock) -> Any:
    fake = FakeTwilio(clock)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
def voice_settings(make_settings: Callable[..., Settings], fake_twilio: FakeTwilio) -> Any:
    """voice_settings(overrides=None) -> Settings with Twilio pointed at the fake."""

    def make(overrides: dict[str, Any] | None = None) -> Settings:
        return make_settings(
            overrides,
            TWILIO_ACCOUNT_SID=ACCOUNT_SID,
            TWILIO_AUTH_TOKEN=AUTH_TOKEN,
            TWILIO_API_BASE=fake_twilio.url,
            GATEWAY_PUBLIC_URL=PUBLIC_URL,
        )

    return make
