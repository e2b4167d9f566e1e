"""PTB's Bot over the gateway's aiohttp transport (`adapters.telegram.request`), on the wire:
what a Bot API server receives, and what a broken or slow one makes of a call."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import telegram
from aiohttp import web
from aiohttp.test_utils import TestServer
from telegram.error import NetworkError, TimedOut

from adapters.telegram.bot import make_bot
from adapters.telegram.request import AiohttpRequest
from tests.adapters.telegram.conftest import BOT_ID, CHAT, TOKEN


class Recorder:
    """A Bot API that answers every method and keeps what each request carried."""

    def __init__(self, delay: float = 0.0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.delay = delay
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.handle)
        self.server = TestServer(app)

    async def handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        fields = {}
        for key, value in form.items():
            fields[key] = (value.filename, value.file.read()) if hasattr(value, "file") else value
        self.requests.append(
            {
                "method": request.match_info["method"],
                "token": request.match_info["token"],
                "content_type": request.content_type,
                "user_agent": request.headers.get("User-Agent", ""),
                "fields": fields,
            }
        )
        await asyncio.sleep(self.delay)
        chat = {"id": CHAT, "type": "private"}
        if request.match_info["method"] == "sendDocument":
            document = {"file_id": "F1", "file_unique_id": "U1", "file_name": "factura.pdf"}
            result = {"message_id": 9, "date": 0, "chat": chat, "document": document}
            return web.json_response({"ok": True, "result": result})
        return web.json_response(
            {"ok": True, "result": {"message_id": 8, "date": 0, "chat": chat, "text": "ok"}}
        )


@pytest.fixture
async def recorder() -> Any:
    fake = Recorder()
    await fake.server.start_server()
    yield fake
    await fake.server.close()


def bot_at(base: str, timeout: float = 5.0) -> telegram.Bot:
    request = AiohttpRequest(timeout, secret=TOKEN)
    return telegram.Bot(TOKEN, base_url=f"{base}/bot", request=request)


async def test_send_message_is_a_form_post_with_the_token_in_the_path(recorder) -> None:
    base = str(recorder.server.make_url("")).rstrip("/")
    bot = bot_at(base)
    message = await bot.send_message(chat_id=CHAT, text="Su número es CMW-0000042-7 ñ")
    await bot.request.shutdown()  # the Bot was used without initialize (no getMe)
    assert message.message_id == 8
    sent = recorder.requests[-1]
    assert sent["method"] == "sendMessage" and sent["token"] == TOKEN
    assert sent["content_type"] == "application/x-www-form-urlencoded"
    assert sent["fields"] == {"chat_id": str(CHAT), "text": "Su número es CMW-0000042-7 ñ"}
    assert sent["user_agent"].startswith("python-telegram-bot")


async def test_a_file_goes_as_multipart_with_its_name_and_bytes(recorder) -> None:
    base = str(recorder.server.make_url("")).rstrip("/")
    bot = bot_at(base)
    await bot.send_document(chat_id=CHAT, document=b"%PDF-1.4 factura", filename="factura.pdf")
    await bot.request.shutdown()  # the Bot was used without initialize (no getMe)
    sent = recorder.requests[-1]
    assert sent["method"] == "sendDocument"
    assert sent["content_type"] == "multipart/form-data"
    assert sent["fields"]["chat_id"] == str(CHAT)
    assert sent["fields"]["document"] == ("factura.pdf", b"%PDF-1.4 factura")


async def test_a_refused_connection_is_a_network_error_without_the_token() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bot = bot_at(f"http://127.0.0.1:{port}")
    with pytest.raises(NetworkError) as caught:
        await bot.send_message(chat_id=CHAT, text="hola")
    await bot.request.shutdown()  # the Bot was used without initialize (no getMe)
    assert not isinstance(caught.value, TimedOut)
    assert "aiohttp.ClientConnectorError" in caught.value.message
    assert TOKEN not in caught.value.message and BOT_ID not in caught.value.message


async def test_a_bad_api_base_never_prints_the_token() -> None:
    # aiohttp names the whole URL (token included) when it cannot use it.
    bot = bot_at("http://[::1")
    with pytest.raises(NetworkError) as caught:
        await bot.send_message(chat_id=CHAT, text="hola")
    await bot.request.shutdown()  # the Bot was used without initialize (no getMe)
    assert TOKEN not in str(caught.value) and "<bot-token>" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


async def test_a_slow_bot_api_times_out_after_the_configured_time() -> None:
    slow = Recorder(delay=5.0)
    await slow.server.start_server()
    bot = bot_at(str(slow.server.make_url("")).rstrip("/"), timeout=0.3)
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimedOut):
        await bot.send_message(chat_id=CHAT, text="hola")
    waited = asyncio.get_running_loop().time() - started
    await bot.request.shutdown()  # the Bot was used without initialize (no getMe)
    await slow.server.close()
    assert waited < 3.0  # the read timeout (0.3 s) ended it, not the server's 5 s


async def test_make_bot_uses_the_aiohttp_transport_and_closes_it(tg_settings, bot_api) -> None:
    bot = make_bot(tg_settings.telegram)
    assert isinstance(bot.request, AiohttpRequest)
    await bot.initialize()  # getMe on the fake Bot API
    assert [m for m, _ in bot_api.calls] == ["getMe"]
    await bot.shutdown()
    with pytest.raises(RuntimeError, match="not initialized"):
        await bot.request.do_request(f"{bot_api.base}/bot{TOKEN}/getMe", "POST")
