"""Shared fixtures: settings on a temporary SQLite file, a controllable clock, a running app.

Each test gets its own database under `tmp_path`; the app runs on a real loopback port
(aiohttp's TestServer) and is driven with real HTTP/WebSocket clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config.loader import load_settings
from config.settings import Settings
from gateway.app import create_app
from gateway.core.auth import add_user, create_token
from gateway.core.services import GW, Gateway

# Monday 2026-11-30 15:00 UTC = 09:00 in Costa Rica (the default line): inside business hours.
OPEN_TIME = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
# Monday 2026-11-30 05:00 UTC = Sunday 23:00 in Costa Rica: every LATAM line is closed.
CLOSED_TIME = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)


class FakeClock:
    """A clock tests move by hand; the gateway reads it through `create_app(clock=...)`."""

    def __init__(self, now: datetime = OPEN_TIME):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """make_settings(overrides={toml tree}, **env) -> Settings on tmp_path/gateway.db."""

    def make(overrides: dict[str, Any] | None = None, **env: str) -> Settings:
        base = {"GATEWAY_DB": f"sqlite:///{tmp_path}/gateway.db", "GATEWAY_SMTP_PORT": "0"}
        return load_settings({**base, **env}, overrides)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


AppFactory = Callable[..., Awaitable[tuple[TestClient, Gateway]]]


@pytest.fixture
def start_app(aiohttp_client: Any, clock: FakeClock) -> AppFactory:
    """await start_app(settings, adapters=None) -> (client, gw), served on loopback."""

    async def start(
        settings: Settings, *, adapters: Any = None, clock_: Any = None
    ) -> tuple[TestClient, Gateway]:
        app = create_app(settings, clock=clock_ or clock, adapters=adapters)
        client = await aiohttp_client(app)
        return client, app[GW]

    return start


@pytest.fixture
def agent_token() -> Callable[..., Awaitable[str]]:
    """await agent_token(gw, name='ana', role='l1', team=None) -> bearer token."""

    async def make(
        gw: Gateway, name: str = "ana", role: str = "l1", team: str | None = None
    ) -> str:
        now = gw.clock()

        def create(tx: Any) -> str:
            add_user(tx, name, role, team, "correct horse battery", now)
            return create_token(tx, name, now)

        return await gw.store.transact(create)

    return make
