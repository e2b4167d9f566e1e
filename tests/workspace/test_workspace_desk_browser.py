"""The workspace as an L1 agent and a supervisor use it, in Chromium at 1366×800 and 390×844:
the composer in view, Spanish and local times, the queue's views, unread marks and shortcuts,
canned replies, phone layouts without horizontal scroll, and axe-core's serious/critical checks.

SQLite only: these drive pages; the SQL they rely on (views, counts, unread marks, time zones,
canned replies) is checked on both databases over HTTP in test_workspace_desk.py.
"""

from __future__ import annotations

import re
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
    in_first_viewport,
    shots_dir,
)
from tests.workspace.conftest import PASSWORD, email, make_desk, whatsapp
from tests.workspace.test_workspace_browser import watched_page

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]
INTERNALS = ("system", "routed", "default line", "whatsapp:+", "\\u00", '{"', "CR ·")


async def login(page: Any, base: str, name: str) -> None:
    await page.goto(f"{base}/agent/login")
    await page.fill("input[name=name]", name)
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/agent/")


async def test_incident_page_canned_replies_and_time_zone(
    start_app: Any, settings: Any, tmp_path: Any
) -> None:
    client, gw = await start_app(settings, adapters={})
    await make_desk(gw, client)
    base = str(client.make_url("/")).rstrip("/")
    r = await gw.intake.accept(whatsapp("SM1", "+50688880001", text="No tengo tono"))
    shots = shots_dir(tmp_path)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            # A supervisor keeps a canned reply with placeholders; a wrong one is named.
            boss = await browser.new_context(viewport=DESKTOP)
            page, problems = await watched_page(boss)
            await login(page, base, "sofia")
            await page.goto(f"{base}/agent/respuestas")
            await page.fill("#canned-form input[name=title]", "Saludo")
            await page.fill("#canned-form textarea[name=body]", "Hola {cliente}")
            await page.click("#canned-save")
            await expect(page.locator("#canned-error")).to_contain_text("{cliente} no existe")
            body = "Hola {nombre}, revisamos su caso {seguimiento}. Horario: {horario}."
            await page.fill("#canned-form textarea[name=body]", body)
            await page.click("#canned-save")
            await expect(page.locator(".canned-list")).to_contain_text("Saludo")
            await page.fill("#canned-form input[name=title]", "Greeting")
            await page.select_option("#canned-form select[name=language]", "en")
            await page.fill(
                "#canned-form textarea[name=body]", "Hello {nombre}, case {seguimiento}."
            )
            await page.click("#canned-save")
            await expect(page.locator(".canned-list li")).to_have_count(2)
            await page.screenshot(path=str(shots / "canned-1366.png"))

            ctx = await browser.new_context(viewport=DESKTOP)
            page, problems = await watched_page(ctx)
            await page.goto(f"{base}/agent/login")
            assert await axe_problems(page) == []
            await page.screenshot(path=str(shots / "login-1366.png"))
            await login(page, base, "ana")
            await page.goto(f"{base}/agent/incidents/{r.tracking}")
            # The composer is under the conversation and in the first viewport.
            assert await in_first_viewport(page.locator("#reply-text"), page)
            assert await in_first_viewport(page.locator("#do-reply"), page)
            # Spanish, the line's local time, no internals.
            text = await page.inner_text("main")
            await page.click(".audit-box > summary")
            text += await page.inner_text(".audit-box")
            for internal in INTERNALS:
                assert internal not in text, internal
            assert "30/11/2026 09:00" in text and "hora de Costa Rica (UTC−6)" in text
            assert "teléfono +50688880001 de Costa Rica → línea de Costa Rica" in text
            assert "el cliente por WhatsApp (+50688880001)" in text and "sistema" in text
            assert await axe_problems(page) == []
            await page.screenshot(path=str(shots / "incident-1366.png"))

            # "Tomar" goes once the incident is the agent's.
            await page.click("#do-claim")
            await expect(page.locator("#action-done")).to_have_text("Incidente tomado.")
            await expect(page.locator("#do-claim")).to_have_count(0)
            await expect(page.locator(".facts")).to_contain_text("Tomado por: usted")

            # A canned reply is inserted, filled in for this incident (Spanish one first).
            await page.select_option("#canned-pick", label="Saludo (español)")
            await page.click("#canned-insert")
            await expect(page.locator("#reply-text")).to_have_value(
                f"Hola Ana Cliente, revisamos su caso {r.tracking}. Horario: lunes a viernes de"
                " 06:00 a 21:00; sábado y domingo de 07:00 a 17:00."
            )
            await page.click("#do-reply")
            await expect(page.locator(".msg-out .body")).to_contain_text("revisamos su caso")
            await expect(page.locator("#reply-text")).to_be_focused()  # back where it was

            # The agent's own time zone, when chosen, wins over the line's.
            await page.goto(f"{base}/agent/preferencias")
            await page.select_option("#timezone", "UTC")
            await page.click("main button[type=submit]")
            await page.goto(f"{base}/agent/incidents/{r.tracking}")
            await expect(page.locator("#tz-note")).to_have_text("Horas en UTC (UTC+0)")
            await expect(page.locator(".msg-in time").first).to_have_text("30/11/2026 15:00")
            assert problems == []

            # On a phone: stacked, no horizontal scroll, a submit keeps the agent's place.
            phone = await browser.new_context(viewport=PHONE)
            page, problems = await watched_page(phone)
            await login(page, base, "ana")
            assert await horizontal_overflow(page) == 0
            await page.goto(f"{base}/agent/incidents/{r.tracking}")
            assert await horizontal_overflow(page) == 0
            assert await in_first_viewport(page.locator("#do-reply"), page)  # sticks in view
            await page.locator("#act-note > summary").scroll_into_view_if_needed()
            await page.click("#act-note > summary")
            await page.fill("#form-note textarea[name=text]", "Llamar al cliente a las 10")
            before = await page.evaluate("window.scrollY")
            assert before > 300
            await page.click("#do-note")
            await expect(page.locator("#action-done")).to_have_text("Nota interna guardada.")
            await page.wait_for_function(f"Math.abs(window.scrollY - {before}) < 40")
            assert await in_first_viewport(page.locator("#act-note > summary"), page)
            assert await axe_problems(page) == []
            await page.evaluate("window.scrollTo(0, 0)")
            await page.screenshot(path=str(shots / "incident-390.png"))
            await page.goto(f"{base}/agent/login")
            assert await horizontal_overflow(page) == 0
            assert problems == []
        finally:
            await browser.close()


async def test_queue_views_unread_marks_shortcuts_and_cards(
    start_app: Any, settings: Any, clock: Any, tmp_path: Any
) -> None:
    client, gw = await start_app(settings, adapters={})
    desk = await make_desk(gw, client)
    base = str(client.make_url("/")).rstrip("/")
    first = await gw.intake.accept(whatsapp("SM1", "+50688880001", text="Sin tono"))
    clock.advance(minutes=5)
    second = await gw.intake.accept(email("<m1@x>", "luis@example.com", "Factura doble"))
    clock.advance(minutes=5)
    third = await gw.intake.accept(whatsapp("SM3", "+525541700000", text="Voz cortada"))
    shots = shots_dir(tmp_path)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            ctx = await browser.new_context(viewport=DESKTOP)
            page, problems = await watched_page(ctx)
            await login(page, base, "ana")
            await expect(page.locator("#live-status")).to_be_visible()
            counts = page.locator(".views .count")
            await expect(counts).to_have_text(["0", "3", "3", "0", "0"])
            assert await page.title() == "(3) Cola L1 · CallMyWay"  # never looked at any
            await expect(page.locator('tr[data-unread="1"] .dot')).to_have_count(3)
            await expect(page.locator("td[data-label=País]")).to_have_text(
                ["Costa Rica", "Costa Rica", "México"]
            )
            assert await axe_problems(page) == []
            await page.screenshot(path=str(shots / "queue-1366.png"))

            # The skip link is the first stop of the keyboard.
            await page.keyboard.press("Tab")
            await expect(page.locator("a.skip")).to_be_focused()
            await page.keyboard.press("Enter")
            await expect(page.locator("#main")).to_be_focused()
            # "?" lists the shortcuts; j/k move, Enter opens, r replies, / searches.
            await page.keyboard.press("?")
            await expect(page.locator("#shortcuts")).to_be_visible()
            await expect(page.locator("#shortcuts")).to_contain_text("Siguiente / anterior")
            await page.keyboard.press("Escape")
            await expect(page.locator("#shortcuts")).to_be_hidden()
            await page.keyboard.press("j")
            await page.keyboard.press("j")
            await page.keyboard.press("k")
            await expect(page.locator("tr.selected")).to_have_attribute(
                "data-tracking", first.tracking
            )
            await page.keyboard.press("Enter")
            await page.wait_for_url(f"{base}/agent/incidents/{first.tracking}")
            await page.keyboard.press("r")
            await expect(page.locator("#reply-text")).to_be_focused()
            await page.fill("#reply-text", "¿Puede reiniciar el equipo?")
            await page.check("#form-reply input[name=wait_for_customer]")
            await page.click("#do-reply")
            await expect(page.locator("#action-done")).to_be_visible()
            await page.locator("#reply-text").blur()
            await page.keyboard.press("/")
            await expect(page.locator("#search")).to_be_focused()

            await page.goto(f"{base}/agent/")
            await expect(counts).to_have_text(["1", "2", "3", "1", "0"])
            assert await page.title() == "(2) Cola L1 · CallMyWay"
            row = page.locator(f'tr[data-tracking="{first.tracking}"]')
            await expect(row).to_have_attribute("data-unread", "0")
            await expect(row.locator("td[data-label=Espera]")).to_contain_text("al cliente")
            # The customer writes: the row is unread again, live, with the title's count.
            await gw.intake.accept(whatsapp("SM4", "+50688880001", text="Ya reinicié"))
            await expect(row).to_have_attribute("data-unread", "1")
            await page.wait_for_function("document.title.startsWith('(3)')")
            await expect(counts).to_have_text(["1", "2", "3", "0", "0"])

            # Overdue reads "vencido hace …", never "-0 min".
            clock.advance(hours=2)
            await page.reload()
            overdue = page.locator(f'tr[data-tracking="{second.tracking}"] .countdown').first
            await expect(overdue).to_have_text(re.compile(r"^vencido hace \d+ min$"))
            assert not re.search(r"-\d+ min", await page.inner_text("#queue-rows"))
            # Sorting, and the other views by name.
            await page.select_option("#sort", "recientes")
            await page.wait_for_url(re.compile(r"orden=recientes"))
            trackings = page.locator("#queue-rows tr[data-tracking]")
            await expect(trackings.first).to_have_attribute("data-tracking", third.tracking)
            status, _ = await desk.act(
                "ana",
                third.tracking,
                "resolve",
                {
                    "category": "consulta",
                    "resolution": "Dudas resueltas",
                },
            )
            assert status == 200
            await page.click(".views a[data-view=resueltos]")
            await expect(trackings).to_have_count(1)
            await expect(trackings.first).to_have_attribute("data-tracking", third.tracking)
            await page.click(".views a[data-view=mios]")
            await expect(trackings).to_have_count(1)  # open and hers: the one she answered
            await expect(trackings.first).to_have_attribute("data-tracking", first.tracking)
            assert problems == []

            phone = await browser.new_context(viewport=PHONE)
            page, problems = await watched_page(phone)
            await login(page, base, "ana")
            card = page.locator("#queue-rows tr[data-tracking]").first
            assert await card.evaluate("tr => getComputedStyle(tr).display") == "block"
            assert await horizontal_overflow(page) == 0
            assert await axe_problems(page) == []
            await page.screenshot(path=str(shots / "queue-390.png"))
            await page.goto(f"{base}/agent/login")
            assert await axe_problems(page) == []
            assert problems == []
        finally:
            await browser.close()
