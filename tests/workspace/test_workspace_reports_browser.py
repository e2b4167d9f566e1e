"""The supervisor's month in Chromium at 1366×800 and 390×844: the charts drawn, links from a
breach to its incident, the month picker, the CSV download, the printable penalty sheet (print
media), no horizontal scroll on a phone, and axe-core's serious/critical checks.

SQLite only: the figures are checked on both databases in tests/web/test_web_reports.py and the
pages over HTTP in test_workspace_reports.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import async_playwright, expect

from tests.browser_kit import (
    ARGS,
    CHROMIUM,
    DESKTOP,
    PHONE,
    axe_problems,
    horizontal_overflow,
    shots_dir,
)
from tests.web.test_web_reports import PENALTIES, generate
from tests.workspace.conftest import make_desk
from tests.workspace.test_workspace_browser import watched_page
from tests.workspace.test_workspace_desk_browser import login

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]


async def test_the_month_in_chromium(start_app, make_settings, clock, tmp_path: Any) -> None:
    client, gw = await start_app(make_settings(overrides={"penalties": PENALTIES}), adapters={})
    desk = await make_desk(gw, client)
    planned, special = await generate(client, gw, clock, desk.tokens["ana"])
    late = next(p for p in planned if p.attention_late)
    base = str(client.make_url("/")).rstrip("/")
    shots = shots_dir(tmp_path)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            ctx = await browser.new_context(viewport=DESKTOP, accept_downloads=True)
            page, problems = await watched_page(ctx)
            await login(page, base, "sofia")
            await page.click("nav >> text=Informes")
            await page.wait_for_url(f"{base}/agent/reportes")
            # Today (December 1st) is the default month; the picker goes to November.
            await expect(page.locator("h1")).to_contain_text("diciembre de 2026")
            await page.fill("input[name=mes]", "2026-11")
            await page.click(".month-picker button[type=submit]")
            await page.wait_for_url(f"{base}/agent/reportes?mes=2026-11&zona=")
            await expect(page.locator("h1")).to_contain_text("noviembre de 2026")
            for chart in ("#chart-lines", "#chart-weeks", "#chart-severity", "#chart-channel"):
                box = await page.locator(chart).bounding_box()
                assert box and box["width"] > 300 and box["height"] > 60, chart
            assert await page.locator("#chart-lines rect").count() == 4  # CA, CR, MX, US
            await expect(page.locator("#kpi-compliance")).to_contain_text("meta 98,0 %")
            assert await axe_problems(page) == []
            await page.screenshot(path=str(shots / "reportes-1366.png"), full_page=True)

            # The CSV download.
            async with page.expect_download() as info:
                await page.click("#csv-penalties")
            download = await info.value
            assert download.suggested_filename == "penalizaciones-2026-11.csv"

            # From a breach to its incident.
            await page.click(f"#breaches a[href='/agent/incidents/{late.tracking}']")
            await page.wait_for_url(f"{base}/agent/incidents/{late.tracking}")
            await page.go_back()

            # The printable penalty sheet, as printed.
            await page.click("#printable")
            await page.wait_for_url(f"{base}/agent/reportes/penalizaciones?mes=2026-11")
            await expect(page.locator("#site-CR")).to_contain_text(special["open"])
            await page.emulate_media(media="print")
            assert not await page.locator("header.top").is_visible()
            assert not await page.locator("#print").is_visible()
            await page.screenshot(path=str(shots / "penalizaciones-print.png"), full_page=True)
            await page.emulate_media(media="screen")
            assert await axe_problems(page) == []
            assert problems == []

            phone = await browser.new_context(viewport=PHONE)
            page, problems = await watched_page(phone)
            await login(page, base, "sofia")
            await page.goto(f"{base}/agent/reportes?mes=2026-11")
            await expect(page.locator("#chart-lines")).to_be_visible()
            assert await horizontal_overflow(page) == 0
            assert await axe_problems(page) == []
            await page.screenshot(path=str(shots / "reportes-390.png"), full_page=True)
            await page.locator("#chart-weeks").screenshot(path=str(shots / "weeks-390.png"))
            assert problems == []
        finally:
            await browser.close()
