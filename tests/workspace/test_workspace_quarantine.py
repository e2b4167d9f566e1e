"""The quarantine page /agent/cuarentena (supervisors): reasons shown, release and discard with
the session's CSRF token, linked from the nav for supervisors only; in Chromium as well."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright, expect

from gateway.core import quarantine
from tests.browser_kit import ARGS, CHROMIUM, DESKTOP, axe_problems
from tests.workspace.conftest import PASSWORD, email, login, make_desk, whatsapp


async def held(gw: Any) -> tuple[int, int]:
    """A backscatter mail and a failed WhatsApp message, held; their ids."""
    now = gw.clock()
    bounce = email(
        "<dsn-1@mx.example.org>",
        "mailer-daemon@mx.example.org",
        "Undelivered Mail Returned to Sender",
        subject="Undelivered Mail Returned to Sender",
        acknowledge=False,
    )
    failed = whatsapp("SM" + "7" * 32, "+50688887777", "No tengo tono en la oficina")

    def write(tx: Any) -> tuple[int, int]:
        return (
            quarantine.hold(tx, bounce, "unmatched_bounce", now),
            quarantine.hold(tx, failed, "processing_failed", now),
        )

    return await gw.store.transact(write)


async def test_supervisor_page_lists_releases_and_discards(start_app, settings) -> None:
    client, gw = await start_app(settings, adapters={})
    await make_desk(gw, client)
    bounce_id, failed_id = await held(gw)
    assert await login(client, "ana") in (302, 303)
    page = await client.get("/agent/")
    assert "/agent/cuarentena" not in await page.text()  # no link for L1
    assert (await client.get("/agent/cuarentena")).status == 403
    await client.post("/agent/logout", data={"csrf": _csrf(await page.text())})
    assert await login(client, "sofia") in (302, 303)
    html = await (await client.get("/agent/")).text()
    assert 'href="/agent/cuarentena"' in html
    html = await (await client.get("/agent/cuarentena")).text()
    assert "Aviso de entrega que no corresponde a ningún correo enviado" in html
    assert "Falló el procesamiento" in html and "+50688887777" in html
    csrf = _csrf(html)
    # Without the form's token: refused, nothing released.
    resp = await client.post(f"/agent/cuarentena/{failed_id}", data={"accion": "liberar"})
    assert resp.status == 403
    resp = await client.post(
        f"/agent/cuarentena/{failed_id}", data={"csrf": csrf, "accion": "liberar"}
    )
    assert resp.status == 200 and "Elemento liberado como CMW-" in await resp.text()
    resp = await client.post(
        f"/agent/cuarentena/{bounce_id}", data={"csrf": csrf, "accion": "descartar"}
    )
    text = await resp.text()
    assert "Elemento descartado." in text and "No hay nada en cuarentena." in text
    row = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents"))
    assert row["n"] == 1


def _csrf(html: str) -> str:
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert found
    return found.group(1)


@pytest.fixture
def chromium_path() -> str:
    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"
    return CHROMIUM


@pytest.mark.browser
async def test_quarantine_in_chromium(start_app, settings, tmp_path: Path, chromium_path) -> None:
    client, gw = await start_app(settings, adapters={})
    await make_desk(gw, client)
    await held(gw)
    base = str(client.make_url("/")).rstrip("/")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, args=ARGS, headless=True)
        try:
            page = await browser.new_page(viewport=DESKTOP)
            page.set_default_timeout(10_000)
            await page.goto(f"{base}/agent/login")
            await page.fill("input[name=name]", "sofia")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/agent/")
            await page.get_by_role("link", name="Cuarentena").click()
            await page.wait_for_url(f"{base}/agent/cuarentena")
            rows = page.locator("table.quarantine tbody tr")
            await expect(rows).to_have_count(2)
            await expect(rows.nth(0).locator(".reason")).to_contain_text("Aviso de entrega")
            assert await axe_problems(page) == []
            await rows.filter(has_text="+50688887777").get_by_role("button", name="Liberar").click()
            await expect(page.locator("#quarantine-notice")).to_contain_text("liberado como CMW-")
            await expect(rows).to_have_count(1)
            await rows.nth(0).get_by_role("button", name="Descartar").click()
            await expect(page.locator("#quarantine-empty")).to_be_visible()
            await page.screenshot(path=str(tmp_path / "cuarentena.png"))
        finally:
            await browser.close()
    queue = await gw.store.read(lambda tx: tx.all("SELECT channel FROM incidents"))
    assert [r["channel"] for r in queue] == ["whatsapp"]  # only the released item
