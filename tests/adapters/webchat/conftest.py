"""Web chat fixtures: a running gateway with only the webchat adapter, on loopback."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from adapters.webchat import ws as webchat_ws
from gateway.core.services import Gateway

ChatApp = Callable[..., Awaitable[tuple[TestClient, Gateway]]]


@pytest.fixture
def chat_app(start_app: Any, make_settings: Any) -> ChatApp:
    """await chat_app(webchat={...overrides}, **env) -> (client, gw) with the webchat adapter."""

    async def start(
        webchat: dict[str, Any] | None = None, **env: str
    ) -> tuple[TestClient, Gateway]:
        settings = make_settings({"webchat": webchat} if webchat else None, **env)
        return await start_app(settings, adapters={"webchat": webchat_ws.setup})  # type: ignore[no-any-return]

    return start
