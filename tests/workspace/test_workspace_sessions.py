"""Sign-in through the real forms: argon2 login, throttling, cookies, CSRF, session endings."""

from __future__ import annotations

import re

from aiohttp.test_utils import TestClient

from tests.workspace.conftest import PASSWORD, csrf_of, login, make_desk, whatsapp


async def test_login_sets_a_hardened_session_cookie_and_opens_the_queue(desk) -> None:
    client = desk.client
    resp = await client.get("/agent/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/agent/login"
    page = await client.get("/agent/login")
    assert "Iniciar sesión" in await page.text()
    token = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
    resp = await client.post(
        "/agent/login",
        data={"csrf": token, "name": "ana", "password": PASSWORD},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/agent/"
    cookie = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith("cmw_agent="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    resp = await client.get("/agent/")
    assert resp.status == 200 and "Cola L1" in await resp.text()
    # The cookie authenticates the API too.
    assert (await client.get("/api/v1/queue")).status == 200


async def test_cookie_is_secure_behind_https(start_app, make_settings) -> None:
    settings = make_settings(GATEWAY_PUBLIC_URL="https://soporte.callmyway.com")
    client, gw = await start_app(settings, adapters={})
    await make_desk(gw, client)
    page = await client.get("/agent/login")
    token = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
    login_cookie = page.headers["Set-Cookie"]
    assert "Secure" in login_cookie and "SameSite=Strict" in login_cookie
    # The test server speaks plain HTTP, so the client jar withholds Secure cookies: send it
    # as a browser behind the TLS proxy would.
    resp = await client.post(
        "/agent/login",
        data={"csrf": token, "name": "ana", "password": PASSWORD},
        headers={"Origin": "https://soporte.callmyway.com", "Cookie": f"cmw_login_csrf={token}"},
        allow_redirects=False,
    )
    assert resp.status == 303
    cookie = next(h for h in resp.headers.getall("Set-Cookie") if h.startswith("cmw_agent="))
    assert "Secure" in cookie


async def test_wrong_password_then_throttled_per_user_and_address(desk) -> None:
    client = desk.client
    assert await login(client, "ana", "wrong") == 401
    assert await login(client, "nadie", "wrong") == 401  # same answer for an unknown user
    for _ in range(4):
        assert await login(client, "ana", "wrong") == 401
    # Five failures: even the right password is refused for a while (persisted, not in memory).
    assert await login(client, "ana") == 429
    rows = await desk.gw.store.read(
        lambda tx: tx.all("SELECT key FROM workspace_login_failures WHERE key LIKE 'ana|%'")
    )
    assert len(rows) == 5
    assert await login(client, "beto") == 303  # another user from the same address is fine
    desk.gw.clock.advance(minutes=16)
    assert await login(client, "ana") == 303


async def test_sign_in_throttle_counts_the_agent_behind_a_trusted_proxy(
    start_app, make_settings
) -> None:
    """Every agent reaches the gateway through the TLS proxy: the per-address throttle must
    count the forwarded client, or one mistyping agent would lock out the whole office."""
    client, gw = await start_app(
        make_settings({"gateway": {"trusted_proxies": ["127.0.0.0/8"]}}), adapters={}
    )
    await make_desk(gw, client)
    office, home = {"X-Forwarded-For": "198.51.100.20"}, {"X-Forwarded-For": "203.0.113.44"}
    for _ in range(5):
        assert await login(client, "ana", "wrong", headers=office) == 401
    assert await login(client, "ana", headers=office) == 429
    # The same agent from another address is not locked out by the office's failures...
    assert await login(client, "ana", headers=home) == 303
    rows = await gw.store.read(
        lambda tx: tx.all("SELECT DISTINCT key FROM workspace_login_failures")
    )
    assert [r["key"] for r in rows] == ["ana|198.51.100.20"]


async def test_login_form_needs_its_csrf_token_and_our_origin(desk) -> None:
    client = desk.client
    await client.get("/agent/login")
    resp = await client.post(
        "/agent/login", data={"csrf": "forged", "name": "ana", "password": PASSWORD}
    )
    assert resp.status == 403
    page = await client.get("/agent/login")
    token = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
    resp = await client.post(
        "/agent/login",
        data={"csrf": token, "name": "ana", "password": PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert resp.status == 403


async def test_cookie_api_calls_need_the_csrf_header_and_our_origin(desk) -> None:
    t = (await desk.gw.intake.accept(whatsapp("SM1", "+50688880001"))).tracking
    client = desk.client
    assert await login(client, "ana") == 303
    csrf = csrf_of(await (await client.get("/agent/")).text())
    url = f"/api/v1/incidents/{t}/claim"
    resp = await client.post(url)
    assert resp.status == 403 and "CSRF" in (await resp.json())["error"]["message"]
    resp = await client.post(url, headers={"X-CSRF-Token": "nope"})
    assert resp.status == 403
    resp = await client.post(url, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"})
    assert resp.status == 403
    resp = await client.post(url, headers={"X-CSRF-Token": csrf})
    assert resp.status == 200 and (await resp.json())["claimed_by"] == "ana"
    # A page form without the token is refused too.
    resp = await client.post(f"/agent/incidents/{t}/note", data={"text": "x"})
    assert resp.status == 403 and "caducó" in await resp.text()


async def test_forged_or_tampered_cookie_is_ignored(desk) -> None:
    client = desk.client
    assert await login(client, "ana") == 303
    value = next(c for c in client.session.cookie_jar if c.key == "cmw_agent").value
    payload, mac = value.split(".")
    client.session.cookie_jar.clear()
    forged = {"Cookie": f"cmw_agent={payload}x.{mac}"}
    assert (await client.get("/api/v1/queue", headers=forged)).status == 401
    assert (
        await client.get("/api/v1/queue", headers={"Cookie": f"cmw_agent={value}"})
    ).status == 200


async def test_logout_ends_the_session(desk) -> None:
    client = desk.client
    assert await login(client, "ana") == 303
    value = next(c for c in client.session.cookie_jar if c.key == "cmw_agent").value
    csrf = csrf_of(await (await client.get("/agent/")).text())
    resp = await client.post("/agent/logout", data={"csrf": csrf}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/agent/login"
    # Replaying the old cookie does not work any more.
    client.session.cookie_jar.clear()
    assert (
        await client.get("/api/v1/queue", headers={"Cookie": f"cmw_agent={value}"})
    ).status == 401


async def test_password_change_ends_other_sessions(desk) -> None:
    # A second browser: another client (own cookie jar) on the same running server.
    first, second = desk.client, TestClient(desk.client.server)
    await second.start_server()
    try:
        assert await login(first, "ana") == 303
        assert await login(second, "ana") == 303
        assert (await second.get("/api/v1/queue")).status == 200
        csrf = csrf_of(await (await first.get("/agent/password")).text())
        bad = await first.post(
            "/agent/password",
            data={"csrf": csrf, "current": "wrong", "new": "x" * 12, "confirm": "x" * 12},
        )
        assert bad.status == 400 and "actual no es correcta" in await bad.text()
        short = await first.post(
            "/agent/password",
            data={"csrf": csrf, "current": PASSWORD, "new": "corta", "confirm": "corta"},
        )
        assert short.status == 400 and "al menos 10" in await short.text()
        new = "una clave nueva y larga"
        resp = await first.post(
            "/agent/password", data={"csrf": csrf, "current": PASSWORD, "new": new, "confirm": new}
        )
        assert resp.status == 200 and "Se cerraron sus otras sesiones" in await resp.text()
        assert (await first.get("/api/v1/queue")).status == 200  # this browser stays in
        assert (await second.get("/api/v1/queue")).status == 401  # the other one is out
        assert await login(second, "ana") == 401
        assert await login(second, "ana", new) == 303
    finally:
        await second.close()
