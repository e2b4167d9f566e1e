"""Telegram test kit: a loopback fake of the Bot API, realistic Update JSON, and a running gateway.

The fake speaks the Bot API's wire format (https://core.telegram.org/bots/api#making-requests):
form-encoded POST /bot<token>/<method>, answered with {"ok": true, "result": ...} or
{"ok": false, "error_code", "description", "parameters"?}. PTB's real `Bot` is pointed at it
through TELEGRAM_API_BASE.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.telegram import bot as telegram_bot
from config.settings import Settings
from gateway.core.services import Gateway
from gateway.core.timeutil import iso
from tests.conftest import OPEN_TIME

TOKEN = "7212345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
BOT_ID = "7212345678"
SECRET = "cmw-Telegram_webhook-2026"
HEADERS = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
CHAT = 381273645  # a private chat: its id is the user's id


class FakeBotApi:
    """Records every call; `fail` queues failure modes for the next sendMessage calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.fail: list[str] = []  # "429", "502", "400", "403", "slow"
        self.release = asyncio.Event()  # ends "slow" answers at teardown
        self.webhook: dict[str, str] | None = None
        self._next_id = 500
        # Files customers sent, by file_id: their bytes; `file_fail` queues getFile failures
        # ("502", "400" for an expired file_id), `webhook_info` is what getWebhookInfo says.
        self.files: dict[str, bytes] = {}
        self.file_fail: list[str] = []
        self.downloads: list[str] = []
        self.webhook_info: dict[str, Any] = {"url": "", "has_custom_certificate": False,
                                             "pending_update_count": 0}  # fmt: skip
        self.app = web.Application()
        self.app.router.add_post("/bot{token}/{method}", self.handle)
        self.app.router.add_get("/file/bot{token}/{path:.+}", self.file)
        self.server = TestServer(self.app)

    @property
    def base(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    def sent(self) -> list[dict[str, str]]:
        """Parameters of every successful sendMessage."""
        return [p for m, p in self.calls if m == "sendMessage" and "_failed" not in p]

    async def handle(self, request: web.Request) -> web.Response:
        params = dict(await request.post())
        method = request.match_info["method"]
        if request.match_info["token"] != TOKEN:
            return _error(401, "Unauthorized")
        self.calls.append((method, params))
        if method == "getMe":
            return _ok(
                {
                    "id": int(BOT_ID),
                    "is_bot": True,
                    "first_name": "CallMyWay Soporte",
                    "username": "CallMyWaySoporteBot",
                    "can_join_groups": False,
                    "can_read_all_group_messages": False,
                    "supports_inline_queries": False,
                }
            )
        if method == "setWebhook":
            self.webhook = params
            return _ok(True, description="Webhook was set")
        if method == "sendMessage":
            return await self._send(params)
        if method == "getFile":
            return self._get_file(params["file_id"])
        if method == "getWebhookInfo":
            return _ok(self.webhook_info)
        return _error(404, "Not Found")

    def _get_file(self, file_id: str) -> web.Response:
        mode = self.file_fail.pop(0) if self.file_fail else None
        if mode == "502":
            return web.Response(status=502, text="<html>502 Bad Gateway</html>")
        if mode == "400" or file_id not in self.files:
            return _error(400, "Bad Request: invalid file_id")
        data = self.files[file_id]
        return _ok(
            {
                "file_id": file_id,
                "file_unique_id": "u" + file_id[-6:],
                "file_size": len(data),
                "file_path": f"documents/{file_id}.bin",
            }
        )

    async def file(self, request: web.Request) -> web.Response:
        """GET /file/bot<token>/<file_path>: the download URL getFile's answer leads to."""
        if request.match_info["token"] != TOKEN:
            return web.Response(status=401)
        path = request.match_info["path"]
        self.downloads.append(path)
        file_id = path.removeprefix("documents/").removesuffix(".bin")
        if file_id not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[file_id], content_type="application/octet-stream")

    async def _send(self, params: dict[str, str]) -> web.Response:
        mode = self.fail.pop(0) if self.fail else None
        if mode is not None:
            params["_failed"] = mode
        if mode == "429":
            return _error(429, "Too Many Requests: retry after 37", retry_after=37)
        if mode == "502":
            return web.Response(status=502, text="<html>502 Bad Gateway</html>")
        if mode == "400":
            return _error(400, "Bad Request: chat not found")
        if mode == "403":
            return _error(403, "Forbidden: bot was blocked by the user")
        if mode == "slow":
            await asyncio.wait_for(self.release.wait(), timeout=10)
            return _error(500, "too late")
        self._next_id += 1
        chat = int(params["chat_id"])
        return _ok(
            {
                "message_id": self._next_id,
                "date": int(OPEN_TIME.timestamp()),
                "from": {"id": int(BOT_ID), "is_bot": True, "first_name": "CallMyWay Soporte"},
                "chat": {"id": chat, "type": "private" if chat > 0 else "supergroup"},
                "text": params["text"],
            }
        )


def _ok(result: Any, **extra: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result, **extra})


def _error(code: int, description: str, **parameters: Any) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if parameters:
        body["parameters"] = parameters
    return web.json_response(body, status=code)


@pytest.fixture
async def bot_api() -> Any:
    fake = FakeBotApi()
    await fake.server.start_server()
    yield fake
    fake.release.set()
    await fake.server.close()


@pytest.fixture
def tg_settings(make_settings: Callable[..., Settings], bot_api: FakeBotApi) -> Settings:
    # Short Bot API timeouts keep the "slow Telegram" case quick.
    return make_settings(
        {"telegram": {"request_timeout": "300ms"}},
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        TELEGRAM_API_BASE=bot_api.base,
        GATEWAY_PUBLIC_URL="https://soporte.callmyway.com",
    )


@pytest.fixture
async def tg(start_app: Any, tg_settings: Settings) -> tuple[TestClient, Gateway]:
    """The gateway with only the Telegram adapter, on loopback."""
    return await start_app(tg_settings, adapters={"telegram": telegram_bot.setup})


def user(first: str = "Ana", last: str | None = "Rojas", lang: str = "es", uid: int = CHAT) -> dict:
    """A Telegram User object as the Bot API sends it."""
    out: dict[str, Any] = {"id": uid, "is_bot": False, "first_name": first, "language_code": lang}
    if last:
        out["last_name"] = last
    return out


def message(
    update_id: int,
    text: str | None,
    *,
    chat: int = CHAT,
    msg_id: int | None = None,
    sender: dict | None = None,
    **extra: Any,
) -> dict:
    """An Update carrying a private-chat message (commands get their bot_command entity)."""
    sender = sender or user(uid=chat)
    msg: dict[str, Any] = {
        "message_id": msg_id or update_id % 100000,
        "from": sender,
        "chat": {"id": chat, "first_name": sender["first_name"], "type": "private"},
        "date": int(OPEN_TIME.timestamp()),
        **extra,
    }
    if text is not None:
        msg["text"] = text
        if text.startswith("/"):
            word = text.split()[0]
            msg["entities"] = [{"offset": 0, "length": len(word), "type": "bot_command"}]
    return {"update_id": update_id, "message": msg}


Post = Callable[..., Awaitable[Any]]


async def post(client: TestClient, update: dict | bytes, headers: dict | None = None) -> Any:
    """POST an update to the webhook with the secret header (unless headers are given)."""
    hdrs = HEADERS if headers is None else headers
    if isinstance(update, bytes):
        return await client.post("/webhooks/telegram", data=update, headers=hdrs)
    return await client.post("/webhooks/telegram", json=update, headers=hdrs)


async def settle(gw: Gateway) -> None:
    """Deliver every due outbox row (the background worker may be sending some already)."""
    for _ in range(500):
        await gw.outbox.drain_once()
        busy = await gw.store.read(
            lambda tx: tx.one(
                "SELECT count(*) AS n FROM outbox WHERE status = 'sending'"
                " OR (status = 'pending' AND next_attempt_at <= ?)",
                (iso(gw.clock()),),
            )
        )
        if not busy or not busy["n"]:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the outbox did not settle")


async def count(gw: Gateway, table: str) -> int:
    """Rows in a table."""
    row = await gw.store.read(lambda tx: tx.one(f"SELECT count(*) AS n FROM {table}"))
    return int(row["n"]) if row else 0
