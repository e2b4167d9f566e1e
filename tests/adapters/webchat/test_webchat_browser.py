"""The widget in a real browser: Debian's Chromium through Playwright, on a page of another site.

A tiny "company website" on its own loopback port embeds the widget with one script tag; the
gateway runs on a second port whose public URL is that port (the frame talks to it same-origin).
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Page, async_playwright, expect

from adapters.webchat import ws as webchat_ws
from gateway.app import create_app
from gateway.core.services import GW, Gateway
from tests.adapters.webchat.chat_kit import agent_reply

pytestmark = pytest.mark.browser
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
XSS = '<img src=x onerror="window.top.__pwned = 1">'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.fixture
async def site(make_settings: Any, clock: Any) -> AsyncIterator[tuple[str, Gateway]]:
    """(URL of a website page embedding the widget, the gateway behind it)."""
    gw_port, site_port = _free_port(), _free_port()
    gateway_url, site_url = f"http://127.0.0.1:{gw_port}", f"http://localhost:{site_port}"
    settings = make_settings(
        {"webchat": {"allowed_origins": [site_url]}},
        GATEWAY_PUBLIC_URL=gateway_url,
        GATEWAY_HTTP_PORT=str(gw_port),
    )
    app = create_app(settings, clock=clock, adapters={"webchat": webchat_ws.setup})
    page_html = (
        "<!doctype html><html lang='es'><head><meta charset='utf-8'><title>CallMyWay</title>"
        "</head><body><h1>CallMyWay</h1><p>Telefonía para empresas.</p>"
        f"<script src='{gateway_url}/chat/widget.js' async></script></body></html>"
    )

    async def home(request: web.Request) -> web.Response:
        return web.Response(text=page_html, content_type="text/html")

    website = web.Application()
    website.router.add_get("/", home)
    runners = [await _serve(app, gw_port), await _serve(website, site_port)]
    try:
        yield f"{site_url}/", app[GW]
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS, headless=True
        )
        context = await browser.new_context()
        try:
            yield await context.new_page()
        finally:
            await context.close()
            await browser.close()


async def test_widget_chat_end_to_end(site: tuple[str, Gateway], page: Page) -> None:
    url, gw = site
    await page.goto(url)
    launcher = page.locator("#cmw-launcher")
    await expect(launcher).to_have_attribute("aria-expanded", "false")
    await launcher.click()
    await expect(launcher).to_have_attribute("aria-expanded", "true")
    chat = page.frame_locator("#cmw-frame")
    # Focus moved into the panel, on the message: the customer types first.
    await expect(chat.locator("#cmw-first")).to_be_focused()

    # The pre-chat form, as a customer fills it in.
    await chat.locator("#cmw-name").fill("Ana <b>Rojas</b>")
    await chat.locator("#cmw-email").fill("ana@example.com")
    await chat.locator("#cmw-country").select_option("CR")
    await chat.locator("input[name=users][value=several]").check()
    await chat.locator("input[name=can_work][value=no]").check()
    await chat.locator("#cmw-first").fill("No tenemos tono desde esta mañana")
    await chat.locator("#cmw-start").click()
    tracking_box = chat.locator("#cmw-tracking")
    await expect(tracking_box).to_have_text(re.compile(r"^CMW-[0-9]{7,}-[0-9]$"))
    tracking = await tracking_box.text_content()
    assert tracking is not None
    await expect(chat.locator(".cmw-customer .cmw-state")).to_have_text("Recibido")
    incident = await gw.store.read(lambda tx: tx.incident_by_tracking(tracking))
    assert incident["severity"] == "S2" and incident["channel"] == "webchat"

    # Enter sends; markup typed by the customer is shown as text and never runs.
    await chat.locator("#cmw-text").fill(XSS)
    await chat.locator("#cmw-text").press("Enter")
    mine = chat.locator(".cmw-customer .cmw-text").last
    await expect(mine).to_have_text(XSS)
    await expect(chat.locator(".cmw-customer.cmw-pending")).to_have_count(0)
    await expect(chat.locator("#cmw-log img")).to_have_count(0)

    # An agent's reply appears live, also as text.
    await agent_reply(gw, tracking, "Hola Ana, <script>x()</script> ya lo revisamos.")
    agent = chat.locator(".cmw-agent .cmw-text")
    await expect(agent).to_have_text("Hola Ana, <script>x()</script> ya lo revisamos.")

    # A reload keeps the conversation (token in the frame's storage) and the open panel.
    await page.reload()
    chat = page.frame_locator("#cmw-frame")
    await expect(chat.locator("#cmw-tracking")).to_have_text(tracking)
    await expect(chat.locator(".cmw-text")).to_have_text(
        [
            "No tenemos tono desde esta mañana",
            XSS,
            "Hola Ana, <script>x()</script> ya lo revisamos.",
        ]
    )
    await expect(chat.locator("#cmw-log img")).to_have_count(0)
    assert await page.evaluate("window.__pwned") is None

    # Esc closes the panel and gives the focus back to the launcher.
    await chat.locator("#cmw-text").press("Escape")
    await expect(page.locator("#cmw-panel")).to_be_hidden()
    await expect(page.locator("#cmw-launcher")).to_be_focused()
    messages = await gw.store.read(lambda tx: tx.messages(incident["id"]))
    assert [m["direction"] for m in messages] == ["in", "in", "out"]
