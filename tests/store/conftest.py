"""Fixtures of the store tests that run several real gateway processes on one PostgreSQL
database: loopback fakes of Twilio's API and of the SMTP relay, and the instances themselves."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.adapters.email.conftest import Relay
from tests.adapters.whatsapp.wa_kit import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, fake_app
from tests.conftest import TEMPLATE
from tests.instances import Instance


@pytest.fixture
async def twilio() -> Any:
    state = FakeTwilio()
    runner = web.AppRunner(fake_app(state), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    yield state
    await runner.cleanup()


@pytest.fixture
async def relay() -> Any:
    r = await Relay().start()
    yield r
    r.stop()


@pytest.fixture
def cluster_db(pg_cluster: Any) -> str:
    return pg_cluster.create_database(template=TEMPLATE)  # type: ignore[no-any-return]


@pytest.fixture
async def instances(tmp_path: Path, cluster_db: str, twilio: Any, relay: Any) -> Any:
    """start(*names) -> the started, healthy instances; all killed at the end."""
    started: list[Instance] = []
    env = {
        "GATEWAY_DB": cluster_db,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE": twilio.url,
        "GATEWAY_SMTP_RELAY": f"127.0.0.1:{relay.port}",
    }

    async def start(*names: str) -> list[Instance]:
        new = [Instance(name, tmp_path, env).start() for name in names]
        started.extend(new)
        await asyncio.gather(*(i.healthy() for i in new))
        return new

    yield start
    for instance in started:
        instance.kill()
