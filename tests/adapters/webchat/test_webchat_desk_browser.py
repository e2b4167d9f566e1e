"""The chat widget as a customer uses it, in Chromium at 1366×800 and 390×844: type first,
per-field messages, messages in order with the agent's name and typing, an image, the case
resolved with its 1-5 rating, the unread count, the offline form, country names, and axe-core.

SQLite only: it drives the page; the frames, the upload and the rating are checked on both
databases over a real socket in test_webchat_begin.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from playwright.async_api import async_playwright, expect

from gateway.core.auth import add_user, create_token
from tests.adapters.webchat.chat_kit import agent_reply
from tests.adapters.webchat.test_webchat_browser import site  # noqa: F401 - a fixture
from tests.browser_kit import (
    ARGS,
    CHROMIUM,
    DESKTOP,
    PHONE,
    axe_problems,
    horizontal_overflow,
    shots_dir,
)
from tests.conftest import CLOSED_TIME
from tests.workspace.conftest import png

pytestmark = [pytest.mark.browser, pytest.mark.sqlite_only]


async def _token(gw: Any) -> str:
    now = gw.clock()

    def create(tx: Any) -> str:
        add_user(tx, "marta", "l1", None, None, now)
        return create_token(tx, "marta", now)

    return await gw.store.transact(create)


async def test_widget_type_first_conversation_image_and_rating(
    site: Any,  # noqa: F811
    tmp_path: Any,
) -> None:
    url, gw = site
    token = await _token(gw)
    gateway = gw.settings.public_url
    shots = shots_dir(tmp_path)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await (await browser.new_context(viewport=DESKTOP)).new_page()
            page.set_default_timeout(10_000)
            await page.goto(url)
            await page.click("#cmw-launcher")
            chat = page.frame_locator("#cmw-frame")
            frame = page.frame_locator("#cmw-frame")
            await expect(chat.locator("#cmw-first")).to_be_focused()  # type first
            await expect(chat.locator("#cmw-country option[value=US]")).to_have_text(
                "Estados Unidos"
            )
            assert "Miami" not in await chat.locator("#cmw-country").inner_text()
            content = page.frames[1]
            assert await axe_problems(content) == []
            await page.screenshot(path=str(shots / "widget-form-1366.png"))

            # Per-field messages, under their field, gone as soon as the field is right.
            await chat.locator("#cmw-start").click()
            await expect(chat.locator("#cmw-first-error")).to_have_text("Escriba su mensaje.")
            await expect(chat.locator("#cmw-first")).to_have_attribute("aria-invalid", "true")
            await chat.locator("#cmw-first").fill("No tenemos tono desde esta mañana")
            await expect(chat.locator("#cmw-first-error")).to_have_text("")
            await chat.locator("#cmw-email").fill("ana@")
            await chat.locator("#cmw-start").click()
            await expect(chat.locator("#cmw-email-error")).to_contain_text("correo válido")
            await chat.locator("#cmw-email").fill("")
            await expect(chat.locator("#cmw-email-error")).to_have_text("")
            await expect(chat.locator("#cmw-email")).not_to_have_attribute("aria-invalid", "true")
            await chat.locator("#cmw-country").select_option("CR")
            await chat.locator("#cmw-start").click()  # the message alone starts the chat

            tracking_box = chat.locator("#cmw-tracking")
            await expect(tracking_box).to_have_text(re.compile(r"^CMW-[0-9]{7,}-[0-9]$"))
            tracking = await tracking_box.text_content()
            assert tracking is not None
            # Who the customer is follows; the agent could also ask.
            await expect(chat.locator("#cmw-details")).to_be_visible()
            await chat.locator("#cmw-d-name").fill("Ana Rojas")
            await chat.locator("#cmw-d-email").fill("ana@example.com")
            await chat.locator("#cmw-d-save").click()
            await expect(chat.locator("#cmw-details")).to_be_hidden()
            incident = await gw.store.read(lambda tx: tx.incident_by_tracking(tracking))
            claims = json.loads(incident["claims"])  # typed details: claims (issue #15)
            assert (claims["name"], claims["email"]) == ("Ana Rojas", "ana@example.com")

            # The agent types, then answers: name on the reply, below "an agent will answer".
            resp = await page.request.post(
                f"{gateway}/agent/typing/{tracking}",
                headers={"Authorization": f"Bearer {token}"},
            )
            assert resp.status == 204
            await expect(chat.locator("#cmw-typing")).to_have_text("marta está escribiendo…")
            await agent_reply(gw, tracking, "Hola Ana, ya revisamos su central.")
            await expect(chat.locator("#cmw-typing")).to_have_text("")
            log = chat.locator("#cmw-log > li")
            await expect(log.last).to_contain_text("Hola Ana, ya revisamos su central.")
            await expect(log.last.locator(".cmw-who")).to_have_text("ana.l1")
            texts = await log.all_inner_texts()
            assert (
                texts.index(next(t for t in texts if "Un agente le atenderá" in t)) < len(texts) - 1
            )
            newest = await frame.locator("#cmw-log").evaluate(
                "log => log.scrollTop + log.clientHeight >= log.scrollHeight - 2"
            )
            assert newest  # the log shows the newest message

            # An image from the customer reaches the incident.
            await chat.locator("#cmw-file").set_input_files(
                {"name": "captura.png", "mimeType": "image/png", "buffer": png()}
            )
            await expect(chat.locator("img.cmw-image")).to_be_visible()
            await expect(chat.locator("li.cmw-pending")).to_have_count(0)
            files = await gw.store.read(
                lambda tx: tx.all(
                    "SELECT a.filename FROM attachments a JOIN messages m ON m.id = a.message_id"
                    " WHERE m.incident_id = ?",
                    (incident["id"],),
                )
            )
            assert [f["filename"] for f in files] == ["captura.png"]

            # Resolved: the chat says so, and the 1-5 rating is one click.
            resolve = await page.request.post(
                f"{gateway}/api/v1/incidents/{tracking}/resolve",
                data={"category": "consulta", "resolution": "Central reiniciada"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert resolve.status == 200
            await gw.outbox.drain_once()
            await expect(chat.locator("#cmw-case-status")).to_have_text("resuelto")
            await expect(chat.locator("#cmw-csat")).to_be_visible()
            await expect(log.filter(has_text="fue resuelto")).to_have_count(1)
            assert await axe_problems(content) == []
            await page.screenshot(path=str(shots / "widget-resolved-1366.png"))
            await chat.locator(".cmw-score[data-score='5']").click()
            await expect(chat.locator("#cmw-csat")).to_be_hidden()

            async def csat() -> Any:
                row = await gw.store.read(lambda tx: tx.incident_by_tracking(tracking))
                return row["csat"], row["status"]

            for _ in range(100):
                if (await csat())[0] == 5:
                    break
                await page.wait_for_timeout(50)
            assert await csat() == (5, "resolved")

            # Closed panel: the unread count sits on the launcher's corner, off its text.
            await chat.locator("#cmw-text").press("Escape")
            await agent_reply(gw, tracking, "¿Algo más?")
            await agent_reply(gw, tracking, "Quedamos atentos.")
            badge = page.locator("#cmw-launcher .cmw-badge")
            await expect(badge).to_have_text("2")
            overlap = await page.evaluate(
                """() => {
                  const b = document.querySelector('#cmw-launcher');
                  const range = document.createRange(); range.selectNodeContents(b.firstChild);
                  const t = range.getBoundingClientRect();
                  const d = b.querySelector('.cmw-badge').getBoundingClientRect();
                  return !(d.right <= t.left || d.left >= t.right || d.bottom <= t.top
                           || d.top >= t.bottom);
                }"""
            )
            assert overlap is False
            label = await page.locator("#cmw-launcher").get_attribute("aria-label")
            assert label is not None and label.endswith("2 mensajes nuevos")
            await page.screenshot(path=str(shots / "widget-unread-1366.png"))
        finally:
            await browser.close()


async def test_offline_form_in_english_on_a_phone(
    site: Any,  # noqa: F811
    clock: Any,
    tmp_path: Any,
) -> None:
    _, gw = site
    clock.set(CLOSED_TIME)  # Sunday night on every line
    gateway = gw.settings.public_url
    shots = shots_dir(tmp_path)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = await (await browser.new_context(viewport=PHONE)).new_page()
            page.set_default_timeout(10_000)
            await page.goto(f"{gateway}/chat?lang=en&country=US")
            await expect(page.locator("#cmw-offline")).to_be_visible()
            await expect(page.locator("#cmw-offline h2")).to_have_text("We are closed right now")
            await expect(page.locator("#cmw-offline-text")).to_contain_text("We open on Monday")
            await expect(page.locator("#cmw-impact")).to_be_hidden()
            await expect(page.locator("#cmw-start")).to_have_text("Send message")
            await expect(page.locator("#cmw-hours")).to_be_hidden()  # no banner over the form
            names = await page.locator("#cmw-country option").all_inner_texts()
            assert "United States" in names and "Mexico" in names and "Miami" not in names
            assert await horizontal_overflow(page) == 0
            assert await axe_problems(page) == []
            await page.screenshot(path=str(shots / "chat-offline-390.png"))

            await page.fill("#cmw-first", "My extension cannot call out")
            await page.click("#cmw-start")
            await expect(page.locator("#cmw-email-error")).to_have_text(
                "Enter your email: we will answer you there."
            )
            await page.fill("#cmw-email", "john@example.com")
            await expect(page.locator("#cmw-email-error")).to_have_text("")
            await page.click("#cmw-start")
            await expect(page.locator("#cmw-log")).to_contain_text(
                # The typed address is confirmed through a link before replies go there.
                "We sent a link to john@example.com: confirm it and we will also answer you"
                " by email."
            )
            assert await horizontal_overflow(page) == 0
            await page.screenshot(path=str(shots / "chat-offline-sent-390.png"))
        finally:
            await browser.close()
