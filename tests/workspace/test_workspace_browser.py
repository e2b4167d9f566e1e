"""The agent workspace in headless Debian Chromium: live queue, actions, no script injection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright, expect

from tests.workspace.conftest import PASSWORD, email, image, make_desk, png, whatsapp

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XSS = 'Sin servicio <img src=x onerror="window.__xss=1"> desde ayer'

pytestmark = pytest.mark.browser


@pytest.fixture
def chromium_path() -> str:
    assert Path(CHROMIUM).exists(), "install Debian's chromium: apt-get install -y chromium"
    return CHROMIUM


async def watched_page(browser) -> tuple[Any, list[str]]:
    """A new page and what went wrong on it: script errors, CSP refusals, failed requests."""
    page = await browser.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "console",
        lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    page.on(
        "response",
        lambda resp: problems.append(f"{resp.status} {resp.url}") if resp.status >= 400 else None,
    )
    return page, problems


async def _login(page, base: str, name: str) -> None:
    await page.goto(f"{base}/agent/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/agent/")
    await expect(page.locator("#live-status")).to_be_visible()  # the live socket is open


async def test_agent_works_an_incident_from_live_queue_to_closure(
    start_app, settings, chromium_path
) -> None:
    client, gw = await start_app(settings, adapters={})
    await make_desk(gw, client)
    base = str(client.make_url("/")).rstrip("/")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, args=ARGS, headless=True)
        page, problems = await watched_page(browser)
        try:
            await _login(page, base, "sofia")
            # An L2 "redes" technician watches their own queue in a second browser context.
            l2 = await (await browser.new_context()).new_page()
            l2.set_default_timeout(10_000)
            await _login(l2, base, "beto")

            # New WhatsApp and e-mail incidents appear without reloading the page.
            wa = await gw.intake.accept(whatsapp("SM1", "+50688880001", text=XSS))
            row = page.locator(f'tr[data-tracking="{wa.tracking}"]')
            await expect(row).to_be_visible()
            await expect(row).to_contain_text("WhatsApp")
            mail = await gw.intake.accept(email("<m1@example.com>", "luis@example.com", "Hola"))
            await expect(page.locator(f'tr[data-tracking="{mail.tracking}"]')).to_be_visible()
            await expect(row.locator(".subject")).to_contain_text('<img src=x onerror="window')

            # Open it: the customer's HTML is text, and nothing ran.
            await row.locator("a").click()
            await page.wait_for_url(f"{base}/agent/incidents/{wa.tracking}")
            await expect(page.locator(".msg-in .body").first).to_have_text(XSS)
            assert await page.evaluate("typeof window.__xss") == "undefined"

            # A new customer message shows up live in the open conversation.
            await gw.intake.accept(whatsapp("SM2", "+50688880001", text="Sigue sin funcionar"))
            await expect(page.locator("#timeline")).to_contain_text("Sigue sin funcionar")

            await page.fill("#form-reply textarea[name=text]", "Estamos revisando su línea.")
            await page.click("#do-reply")
            await expect(page.locator("#action-done")).to_have_text(
                "Respuesta en cola de envío al cliente."
            )
            await expect(page.locator(".msg-out .body")).to_have_text("Estamos revisando su línea.")

            await page.click("#act-escalate > summary")  # secondary actions fold away
            await page.select_option("#form-escalate select[name=level]", "L2")
            await page.select_option("#form-escalate select[name=team]", "redes")
            await page.fill("#form-escalate input[name=reason]", "Falla en la red troncal")
            await page.click("#do-escalate")
            await expect(page.locator("#action-done")).to_have_text("Incidente escalado.")
            await expect(page.locator(".facts")).to_contain_text("L2 · equipo redes")
            # The team is told live, and the incident is now in its queue.
            await expect(l2.locator("#escalation-notice")).to_have_text(
                f"Escalado a su equipo (redes): {wa.tracking}"
            )
            await expect(l2.locator(f'tr[data-tracking="{wa.tracking}"]')).to_be_visible()

            await page.click("#act-resolve > summary")
            await page.select_option("#form-resolve select[name=category]", "falla-de-servicio")
            await page.fill("#form-resolve textarea[name=resolution]", "Se reemplazó la tarjeta")
            await page.click("#do-resolve")
            await expect(page.locator("#action-done")).to_have_text("Incidente resuelto.")
            await page.click("#do-close")
            await expect(page.locator("#action-done")).to_have_text("Incidente cerrado.")
            await expect(page.locator("#status")).to_have_text("cerrado")
            await expect(page.locator("#timeline")).to_contain_text("fase: cierre")
            assert await page.evaluate("typeof window.__xss") == "undefined"
            assert problems == []
        finally:
            await browser.close()

    body = await gw.store.read(
        lambda tx: tx.one(
            "SELECT status, level, team, category FROM incidents WHERE tracking = ?", (wa.tracking,)
        )
    )
    assert body == {
        "status": "closed",
        "level": "L2",
        "team": "redes",
        "category": "falla-de-servicio",
    }


async def test_a_customer_screenshot_is_shown_in_the_conversation(
    start_app, settings, chromium_path
) -> None:
    """The preview loads with the agent's session under the page's CSP; an SVG is no image."""
    client, gw = await start_app(settings, adapters={})
    await make_desk(gw, client)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="window.__xss=1"/>'
    files = (image("captura.png", png(), "image/png"), image("logo.svg", svg, "image/svg+xml"))
    r = await gw.intake.accept(whatsapp("SMshot", "+50688880099", attachments=files))
    base = str(client.make_url("/")).rstrip("/")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, args=ARGS, headless=True)
        page, problems = await watched_page(browser)
        try:
            await _login(page, base, "ana")
            await page.goto(f"{base}/agent/incidents/{r.tracking}")
            shot = page.locator('img.preview[alt="captura.png"]')
            await expect(shot).to_be_visible()
            await page.wait_for_function(
                "document.querySelector('img.preview').complete"
                " && document.querySelector('img.preview').naturalWidth > 0"
            )
            assert await shot.evaluate("img => [img.naturalWidth, img.naturalHeight]") == [24, 16]
            assert await page.locator("img.preview").count() == 1  # the SVG is a link only
            await expect(page.locator('a[download="logo.svg"]')).to_be_visible()
            assert await page.evaluate("typeof window.__xss") == "undefined"
            assert problems == []
        finally:
            await browser.close()
