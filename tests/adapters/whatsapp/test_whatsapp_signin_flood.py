"""A sign-in flood must not hold up the WhatsApp fallback (issue #15 item 4).

argon2 runs in the workspace's own small pool; the fallback's spool writes (fsync) run in the
default thread pool. Were the hashes queued in the default pool, a burst of sign-ins would sit
in front of the spool write and Twilio's fallback request would wait for all of them.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from gateway.app import create_app
from gateway.core.auth import add_user, hash_password
from gateway.core.errors import TemporaryFailure
from gateway.core.services import GW
from gateway.workspace.sessions import POOL
from tests.adapters.whatsapp.test_whatsapp_fallback import FALLBACK, spooled
from tests.adapters.whatsapp.wa_kit import ADAPTERS, inbound_form, post_signed
from tests.faults import make_store_with

AGENTS = 18  # below [agents] max_failures_per_address (20): every attempt gets its hash


class IntakeOutage:
    """Only the intake's writes fail while `down` (agents can still sign in): Twilio's
    webhook gets 503 and calls the fallback, which spools."""

    down = False

    async def transact(self, fn: Any, **kw: Any) -> Any:
        if self.down and getattr(fn, "__qualname__", "").startswith("Intake."):
            raise TemporaryFailure("the database cannot commit right now")
        return await super().transact(fn, **kw)  # type: ignore[misc]


@pytest.fixture
async def flaky(aiohttp_client: Any, wa_settings: Any, clock: Any) -> tuple[Any, Any, Any]:
    store = make_store_with(wa_settings, IntakeOutage)
    app = create_app(wa_settings, clock=clock, store=store, adapters=ADAPTERS)
    client = await aiohttp_client(app)
    return client, app[GW], store


async def test_a_sign_in_flood_leaves_the_fallback_spool_its_threads(flaky: Any) -> None:
    client, gw, store = flaky
    hashed = hash_password("correct horse battery")
    now = gw.clock()

    def agents(tx: Any) -> None:
        for n in range(AGENTS):
            user = add_user(tx, f"agente{n}", "l1", None, None, now)
            tx.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, user.id))

    await gw.store.transact(agents)
    page = await (await client.get("/agent/login")).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]

    async def sign_in(name: str) -> int:
        data = {"csrf": csrf, "name": name, "password": "a wrong guess"}
        # The public URL is https: the client does not send the Secure cookie back by itself.
        cookie = {"Cookie": f"cmw_login_csrf={csrf}"}
        resp = await client.post("/agent/login", data=data, headers=cookie, allow_redirects=False)
        return resp.status

    store.down = True  # the database cannot take the message: Twilio's fallback
    flood = [asyncio.create_task(sign_in(f"agente{n}")) for n in range(AGENTS)]
    pool = gw.extras[POOL]
    for _ in range(500):  # until every sign-in waits for (or runs) its hash
        if pool.in_flight == AGENTS:
            break
        await asyncio.sleep(0.01)
    assert pool.in_flight == AGENTS
    resp = await post_signed(client, FALLBACK, inbound_form("+50688001188"))
    waiting = sum(not task.done() for task in flood)
    assert resp.status == 200 and "recibimos su mensaje" in await resp.text()
    assert len(spooled(gw)) == 1
    # The form was safe on disk while most of the flood still waited for its hash.
    assert waiting > AGENTS // 2
    assert await asyncio.gather(*flood) == [401] * AGENTS
