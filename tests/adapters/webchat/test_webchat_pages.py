"""GET /chat, /chat/widget.js and the page's static files: texts, escaping and headers."""

from __future__ import annotations

import json
import re
from typing import Any


async def test_chat_page_is_spanish_with_the_form_and_a_strict_csp(chat_app: Any) -> None:
    client, gw = await chat_app({"allowed_origins": ["https://www.callmyway.com"]})
    resp = await client.get("/chat")
    assert resp.status == 200 and resp.content_type == "text/html"
    html = await resp.text()
    assert '<html lang="es">' in html and "Iniciar chat" in html
    assert "¿Cuántos usuarios están afectados?" in html and "Toda la empresa" in html
    options = re.findall(r'<option value="([A-Z]{2})"', html)
    assert sorted(options) == sorted(gw.settings.routing.lines)
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'self'" in csp
    assert "https://www.callmyway.com" in csp and "unsafe-inline" not in csp
    config = json.loads(re.search(r'id="cmw-config">(.*?)</script>', html, re.S).group(1))
    assert config["lang"] == "es" and config["lang_explicit"] is False
    assert config["texts"]["send"] == "Enviar"


async def test_chat_page_in_english_and_with_a_country(chat_app: Any) -> None:
    client, _ = await chat_app()
    html = await (await client.get("/chat?lang=en&country=mx&embed=1")).text()
    assert '<html lang="en">' in html and "Start chat" in html and "Close the chat" in html
    assert '<option value="MX" selected>' in html


async def test_query_values_are_escaped_in_the_page(chat_app: Any) -> None:
    client, _ = await chat_app()
    html = await (
        await client.get("/chat", params={"lang": "<script>", "country": "</script>"})
    ).text()
    assert "<script>alert" not in html and "</script><" not in html.split("cmw-config")[1][:200]
    assert '<html lang="es">' in html


async def test_widget_script_carries_both_languages(chat_app: Any) -> None:
    client, _ = await chat_app()
    resp = await client.get("/chat/widget.js")
    assert resp.status == 200 and resp.content_type == "text/javascript"
    body = await resp.text()
    texts = json.loads(re.search(r"var TEXTS = (\{.*?\});\n", body).group(1))
    assert texts["es"]["launcher_open"] == "Abrir el chat de soporte de CallMyWay"
    assert texts["en"]["launcher_open"] == "Open the CallMyWay support chat"
    assert "__TEXTS__" not in body


async def test_static_files_and_unknown_names(chat_app: Any) -> None:
    client, _ = await chat_app()
    js = await client.get("/chat/static/chat.js")
    assert js.status == 200 and js.headers["X-Content-Type-Options"] == "nosniff"
    assert "textContent" in await js.text() and "innerHTML" not in await js.text()
    assert (await client.get("/chat/static/chat.css")).content_type == "text/css"
    assert (await client.get("/chat/static/..%2Fwebchat_ws.py")).status == 404
    assert (await client.get("/chat/static/secret.txt")).status == 404
