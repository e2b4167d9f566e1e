"""Agent credentials as a security team expects them (issue #15 item 4, checklist A3).

Through the real forms and API: a burst of parallel sign-ins meets a throttle that cannot be
raced, unknown names cost no password hash, failure rows expire, API tokens expire and die on
revocation or a password change, the live socket closes on logout, a cookie request carrying
some other Authorization header still needs its CSRF token, and /metrics is not for everyone.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from asyncio.subprocess import PIPE
from collections import Counter
from typing import Any

from aiohttp import WSMsgType

from gateway.core.auth import create_token
from gateway.workspace.sessions import POOL
from tests.workspace.conftest import PASSWORD, csrf_of, login, make_desk, whatsapp


async def login_csrf(client: Any) -> str:
    """The login form's double-submit token (the cookie is kept by the client)."""
    page = await client.get("/agent/login")
    found = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert found
    return found.group(1)


async def sign_in(client: Any, csrf: str, name: str, password: str, **headers: str) -> int:
    resp = await client.post(
        "/agent/login",
        data={"csrf": csrf, "name": name, "password": password},
        headers=headers,
        allow_redirects=False,
    )
    return resp.status


async def cli(gw: Any, *args: str) -> tuple[int, str]:
    """`python -m gateway ARGS` on the test's database: exit status and standard output."""
    env = {**os.environ, "GATEWAY_DB": gw.settings.db_url, "GATEWAY_SMTP_PORT": "0"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, env=env, stdout=PIPE, stderr=PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def failures(gw: Any, where: str = "1 = 1", params: tuple[Any, ...] = ()) -> int:
    row = await gw.store.read(
        lambda tx: tx.one(
            f"SELECT count(*) AS n FROM workspace_login_failures WHERE {where}", params
        )
    )
    return int(row["n"])


async def test_200_parallel_sign_ins_cannot_race_the_throttle(desk) -> None:
    client, gw = desk.client, desk.gw
    csrf = await login_csrf(client)
    statuses = await asyncio.gather(
        *(sign_in(client, csrf, "ana", f"guess-{n}") for n in range(200))
    )
    # Counting and recording each attempt is one transaction: exactly the limit got a
    # password check, everyone else a 429 before any hash.
    assert Counter(statuses) == {401: 5, 429: 195}
    assert await failures(gw, "account = ?", ("ana",)) == 5
    assert gw.extras[POOL].calls == 5
    assert await sign_in(client, csrf, "ana", PASSWORD) == 429  # even the right password


async def test_a_flood_of_unknown_names_is_refused_before_any_hash(start_app, make_settings):
    client, gw = await start_app(
        make_settings({"gateway": {"trusted_proxies": ["127.0.0.0/8"]}}), adapters={}
    )
    await make_desk(gw, client)
    csrf = await login_csrf(client)
    flood = await asyncio.gather(
        *(
            sign_in(client, csrf, f"nadie{n}", "x", **{"X-Forwarded-For": "203.0.113.7"})
            for n in range(60)
        )
    )
    # The per-address limit counts unknown names too; none of them ran argon2.
    assert Counter(flood) == {401: 20, 429: 40}
    assert gw.extras[POOL].calls == 0
    # Per account, across addresses: a distributed guess at one name stops as well.
    spread = [
        await sign_in(client, csrf, "beto", "x", **{"X-Forwarded-For": f"198.51.100.{n}"})
        for n in range(1, 23)
    ]
    assert spread.count(401) == 20 and spread[-2:] == [429, 429]
    # Agents elsewhere are unaffected.
    assert await sign_in(client, csrf, "ana", PASSWORD, **{"X-Forwarded-For": "192.0.2.1"}) == 303


async def test_failure_rows_expire(desk) -> None:
    client, gw = desk.client, desk.gw
    csrf = await login_csrf(client)
    for _ in range(5):
        assert await sign_in(client, csrf, "ana", "wrong") == 401
    assert await failures(gw) == 5
    gw.clock.advance(minutes=16)
    assert await sign_in(client, csrf, "beto", "wrong") == 401
    assert await failures(gw) == 1  # ana's old rows are gone, only beto's new one is left
    assert await sign_in(client, csrf, "ana", PASSWORD) == 303


async def test_tokens_expire_and_die_on_revocation(desk) -> None:
    client, gw = desk.client, desk.gw
    queue = "/api/v1/queue?level=L1"
    assert (await client.get(queue, headers=desk.auth("ana"))).status == 200
    # `python -m gateway token revoke --user ana` from another process, the server running.
    code, out = await cli(gw, "token", "revoke", "--user", "ana")
    assert code == 0 and out == "revoked 1 token(s)\n"
    resp = await client.get(queue, headers=desk.auth("ana"))
    assert resp.status == 401 and "revoked" in await resp.text()
    # A fresh token works until its lifetime ([agents] token_lifetime, 90 days) is over.
    now = gw.clock()
    lifetime = gw.settings.agents.token_lifetime
    fresh = await gw.store.transact(lambda tx: create_token(tx, "ana", now, lifetime))
    bearer = {"Authorization": f"Bearer {fresh}"}
    assert (await client.get(queue, headers=bearer)).status == 200
    gw.clock.advance(days=91)
    assert (await client.get(queue, headers=bearer)).status == 401
    assert (await client.get(queue, headers=desk.auth("beto"))).status == 401  # 91 days old too


async def test_token_list_shows_no_secret(desk) -> None:
    assert (await cli(desk.gw, "token", "revoke", "1"))[0] == 0
    assert (await cli(desk.gw, "token", "revoke", "1"))[0] == 1  # not live any more
    code, text = await cli(desk.gw, "token", "list")
    assert code == 0
    out = text.splitlines()
    assert out[0] == "id\tuser\tcreated\texpires\tstate"
    assert out[1].startswith("1\tana\t") and out[1].endswith("\trevoked")
    assert all(token not in "\n".join(out) for token in desk.tokens.values())


async def test_a_password_change_revokes_the_users_tokens(desk) -> None:
    client = desk.client
    assert await login(client, "beto") == 303
    csrf = csrf_of(await (await client.get("/agent/password")).text())
    new = "otra clave larga de beto"
    resp = await client.post(
        "/agent/password", data={"csrf": csrf, "current": PASSWORD, "new": new, "confirm": new}
    )
    assert resp.status == 200
    resp = await client.get("/api/v1/queue?level=L2", headers=desk.auth("beto"))
    assert resp.status == 401
    assert (await client.get("/api/v1/queue", headers=desk.auth("ana"))).status == 200


async def test_the_live_socket_closes_when_the_session_ends(desk) -> None:
    client = desk.client
    assert await login(client, "ana") == 303
    csrf = csrf_of(await (await client.get("/agent/")).text())
    origin = str(client.make_url("/")).rstrip("/")
    async with client.ws_connect(f"/agent/ws?csrf={csrf}", headers={"Origin": origin}) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        resp = await client.post("/agent/logout", data={"csrf": csrf}, allow_redirects=False)
        assert resp.status == 303
        closing = await ws.receive(timeout=5)
        assert closing.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.CLOSING)
        # Nothing more is relayed to it: new incidents go unseen by a signed-out agent.
        await desk.gw.intake.accept(whatsapp("SM9", "+50688880009"))
        assert ws.closed


async def test_another_authorization_scheme_does_not_skip_csrf(desk) -> None:
    tracking = (await desk.gw.intake.accept(whatsapp("SM1", "+50688880001"))).tracking
    client = desk.client
    assert await login(client, "ana") == 303
    url = f"/api/v1/incidents/{tracking}/claim"
    # A cross-site page can make the browser send the cookie with any Authorization header.
    resp = await client.post(url, headers={"Authorization": "Basic YW5hOmFuYQ=="})
    assert resp.status == 403 and "CSRF" in (await resp.json())["error"]["message"]
    resp = await client.post(url, headers={"Authorization": "Bearer"})  # no token in it
    assert resp.status == 403
    resp = await client.post(url, headers={"Authorization": "Bearer not-a-token"})
    assert resp.status == 401
    # A valid Bearer token needs no CSRF token (no browser sends it by itself).
    client.session.cookie_jar.clear()
    resp = await client.post(url, headers=desk.auth("ana"))
    assert resp.status == 200 and (await resp.json())["claimed_by"] == "ana"


async def test_metrics_only_from_the_listed_networks_or_with_a_token(start_app, make_settings):
    client, gw = await start_app(
        make_settings({"gateway": {"trusted_proxies": ["127.0.0.0/8"]}}), adapters={}
    )
    desk = await make_desk(gw, client)
    outsider = {"X-Forwarded-For": "203.0.113.9"}
    resp = await client.get("/metrics", headers=outsider)
    assert resp.status == 403 and "metrics_networks" in (await resp.json())["error"]["message"]
    resp = await client.get("/metrics", headers={**outsider, "Authorization": "Bearer nope"})
    assert resp.status == 401
    resp = await client.get("/metrics", headers={**outsider, **desk.auth("sofia")})
    assert resp.status == 200 and "gateway_" in await resp.text()
    assert (await client.get("/metrics")).status == 200  # the scraper on loopback
