"""The NOC pages in headless Debian Chromium (Spanish): the search box by name, email and phone,
the event history with its filters and pages, the printable record, and the alarms page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright, expect

from gateway.core import noc
from tests.browser_kit import ARGS, CHROMIUM, PHONE, axe_problems, horizontal_overflow, shots_dir
from tests.workspace.conftest import PASSWORD, email, make_desk, whatsapp

pytestmark = pytest.mark.browser


async def _page(browser: Any) -> tuple[Any, list[str]]:
    page = await browser.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "console",
        lambda msg: problems.append(msg.text) if "Content Security Policy" in msg.text else None,
    )
    return page, problems


async def _login(page: Any, base: str, name: str) -> None:
    await page.goto(f"{base}/agent/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/agent/")


async def test_search_events_record_and_alarms_pages(
    start_app, make_settings, clock, tmp_path: Path
) -> None:
    settings = make_settings({"alarms": {"interval": "1d", "at_risk": 0, "breached": 0}})
    client, gw = await start_app(settings, adapters={})
    await make_desk(gw, client)
    ana = await gw.intake.accept(whatsapp("SM1", "+50688880001", text="Sin tono <b>hoy</b>"))
    luis = await gw.intake.accept(
        email("<m1@example.com>", "luis@example.com", "La factura llegó mal", name="Luis Mora")
    )
    clock.advance(minutes=45)  # both unattended past the L1 threshold (30 min)
    gw.providers.failed("smtp", "relay unreachable: ConnectionRefusedError")
    await gw.app[noc.MONITOR].flush_signals()
    await gw.app[noc.MONITOR].evaluate()
    base = str(client.make_url("/")).rstrip("/")
    shots = shots_dir(tmp_path)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        page, problems = await _page(browser)
        try:
            await _login(page, base, "sofia")
            # The search box takes a name: a list of results, not an error page.
            await page.fill("#search", "luis mora")
            await page.press("#search", "Enter")
            results = page.locator("#search-results")
            await expect(results).to_contain_text(luis.tracking)
            await expect(results).not_to_contain_text(ana.tracking)
            await expect(page.locator("h1")).to_have_text("Búsqueda: «luis mora»")
            # A phone as people type it; then a tracking number opens the incident.
            await page.fill("#search", "8888-0001")
            await page.press("#search", "Enter")
            await expect(page.locator("#search-results")).to_contain_text(ana.tracking)
            await page.fill("#search", "nadie-así")
            await page.press("#search", "Enter")
            await expect(page.locator("#no-results")).to_contain_text("Ningún incidente")
            await page.fill("#search", ana.tracking)
            await page.press("#search", "Enter")
            await page.wait_for_url(f"{base}/agent/incidents/{ana.tracking}")

            # From the incident to its printable record.
            await page.click("text=Expediente completo (imprimible)")
            await expect(page.locator("h1")).to_have_text(f"Expediente {ana.tracking}")
            await expect(page.locator("#record-messages")).to_contain_text("Sin tono <b>hoy</b>")
            await expect(page.locator("#record-events")).to_contain_text("Registrado")
            await expect(page.locator("#record-deliveries")).to_contain_text("+50688880001")
            assert await axe_problems(page) == []
            await page.emulate_media(media="print")
            await expect(page.locator("header.top")).to_be_hidden()
            await page.screenshot(path=str(shots / "noc-record-print.png"), full_page=True)
            await page.emulate_media(media="screen")

            # The event history: by channel and kind, then by contact.
            await page.click("nav >> text=Eventos")
            await page.select_option("select[name=channel]", "email")
            await page.select_option("select[name=kind]", "registered")
            await page.click("#events-form button[type=submit]")
            events = page.locator("#events tbody tr")
            await expect(events).to_have_count(1)
            await expect(events.first).to_contain_text(luis.tracking)
            await page.goto(f"{base}/agent/eventos?contact=88880001")
            await expect(page.locator("#events")).to_contain_text(ana.tracking)
            await expect(page.locator("#events")).not_to_contain_text(luis.tracking)
            await page.goto(f"{base}/agent/eventos?from=ayer")
            await expect(page.locator("p.error")).to_contain_text("from must be a date")
            await page.screenshot(path=str(shots / "noc-events.png"), full_page=True)

            # The alarms: the supervisor sees the open episodes.
            await page.click("nav >> text=Alarmas")
            active = page.locator("#alarms-active")
            await expect(active).to_contain_text("unattended:L1:CR")
            await expect(active).to_contain_text("sin atender hace 45 min")
            await expect(page.locator("#providers")).to_contain_text("smtp")
            assert await axe_problems(page) == []
            await page.screenshot(path=str(shots / "noc-alarms.png"), full_page=True)

            # On a phone, the results read without sideways scrolling.
            await page.set_viewport_size(PHONE)
            await page.goto(f"{base}/agent/buscar?q=mora")
            await expect(page.locator("#search-results")).to_contain_text(luis.tracking)
            assert await horizontal_overflow(page) == 0
            await page.screenshot(path=str(shots / "noc-search-phone.png"), full_page=True)

            # An L1 agent has no alarms link and is refused the page.
            other, _ = await _page(await browser.new_context())
            await _login(other, base, "ana")
            await expect(other.locator("nav >> text=Alarmas")).to_have_count(0)
            resp = await other.goto(f"{base}/agent/alarmas")
            assert resp is not None and resp.status == 403
            assert problems == []
        finally:
            await browser.close()
