"""Disk full and a read-only database, on every channel at once, and recovery without restart.

Disk full is real: the SQLite database lives on a small tmpfs mounted for the test (this needs
root, as the suite runs here and in CI); the disk is filled with a file after the WAL is
truncated, so the next write gets ENOSPC from the kernel (SQLITE_FULL). The read-only database
is faulted: a running process keeps its open file descriptors writable after a chmod, and a
tmpfs with open files cannot be remounted read-only (EBUSY), so the store's writer connection is
switched to `PRAGMA query_only`, which makes SQLite itself refuse every write with
SQLITE_READONLY, the error a read-only file gives. Each channel must then answer its temporary
failure (SMTP 451, Twilio and Telegram 503, chat "not_saved"), and work again, on the same
process, once space or writes return.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adapters.email import smtp as email_smtp
from adapters.telegram import bot as telegram_bot
from adapters.webchat import setup as webchat_setup
from tests.adapters.email.conftest import mail, send
from tests.adapters.telegram.conftest import HEADERS, SECRET, TOKEN, FakeBotApi, message
from tests.adapters.webchat.chat_kit import START, connect, hello, recv
from tests.adapters.whatsapp.wa_kit import (
    ACCOUNT_SID,
    ADAPTERS,
    AUTH_TOKEN,
    PUBLIC_URL,
    inbound_form,
    post_signed,
    sid,
)

pytestmark = pytest.mark.sqlite_only  # the database file on a small disk of its own

ALL = {
    **ADAPTERS,
    "email": email_smtp.setup,
    "telegram": telegram_bot.setup,
    "webchat": webchat_setup,
}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, unmounted after the test."""
    where = tmp_path / "disk"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
async def bot_api() -> Any:
    fake = FakeBotApi()
    await fake.server.start_server()
    yield fake
    fake.release.set()
    await fake.server.close()


def fill(disk: Path) -> Path:
    """Write a file until the disk has no space left."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 65536)
    finally:
        os.close(fd)
    return filler


async def writer_pragma(gw: Any, sql: str) -> None:
    """Run a PRAGMA on the store's writer connection (in its thread), closing its cursor."""
    cursor = await gw.store._writer.execute(sql)
    await cursor.fetchall()
    await cursor.close()


class Channels:
    """One new contact per channel, each answered as its provider sees it."""

    def __init__(self, client: Any, gw: Any):
        self.client, self.gw, self.n = client, gw, 0

    async def email(self) -> int:
        self.n += 1
        code, _ = await send(self.gw, mail(msgid=f"<disk{self.n}@cliente.com>"))
        return code

    async def whatsapp(self) -> int:
        form = inbound_form(phone=f"+52155000{self.n:05d}", message_sid=sid())
        resp = await post_signed(self.client, "/webhooks/twilio/whatsapp", form)
        return int(resp.status)

    async def telegram(self) -> int:
        self.n += 1
        update = message(7000 + self.n, "Sin tono desde hoy", chat=900_000 + self.n)
        resp = await self.client.post("/webhooks/telegram", json=update, headers=HEADERS)
        return int(resp.status)

    async def open_chat(self) -> Any:
        """A visitor whose page is open (socket and hello done) before anything breaks."""
        ws = await connect(self.client)
        await hello(ws)
        return ws

    async def chat(self, ws: Any = None) -> str:
        self.n += 1
        ws = ws or await self.open_chat()
        try:
            await ws.send_json({**START, "client_id": f"disk-{self.n}"})
            while True:
                frame = await recv(ws)
                if frame["type"] == "ticket":
                    return "ticket"
                if frame["type"] == "error":
                    return str(frame["code"])
        finally:
            await ws.close()

    async def all(self, ws: Any = None) -> dict[str, Any]:
        return {
            "email": await self.email(),
            "whatsapp": await self.whatsapp(),
            "telegram": await self.telegram(),
            "chat": await self.chat(ws),
        }


OK = {"email": 250, "whatsapp": 200, "telegram": 200, "chat": "ticket"}
TEMPORARY = {"email": 451, "whatsapp": 503, "telegram": 503, "chat": "not_saved"}


async def started(start_app: Any, make_settings: Any, db: Path, bot_api: Any) -> Any:
    settings = make_settings(
        None,
        GATEWAY_DB=f"sqlite:///{db}",
        GATEWAY_PUBLIC_URL=PUBLIC_URL,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_API_BASE="http://127.0.0.1:9",  # nothing listens: acknowledgements wait
        TELEGRAM_BOT_TOKEN=TOKEN,
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        TELEGRAM_API_BASE=bot_api.base,
    )
    client, gw = await start_app(settings, adapters=ALL)
    gw.extras["http"] = client
    return client, gw


async def incidents(gw: Any) -> int:
    row = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents"))
    return int(row["n"])


async def test_disk_full_is_a_temporary_failure_everywhere_then_recovers(
    start_app: Any, make_settings: Any, small_disk: Path, bot_api: Any
) -> None:
    client, gw = await started(start_app, make_settings, small_disk / "gateway.db", bot_api)
    channels = Channels(client, gw)
    assert await channels.all() == OK
    before = await incidents(gw)
    # An empty WAL: the next transaction must allocate disk blocks for its frames.
    await writer_pragma(gw, "PRAGMA wal_checkpoint(TRUNCATE)")
    page = await channels.open_chat()
    filler = fill(small_disk)
    assert await channels.all(page) == TEMPORARY  # nothing acknowledged, every sender retries
    assert await incidents(gw) == before
    filler.unlink()  # space is back: the same process takes contacts again
    assert await channels.all() == OK
    assert await incidents(gw) == before + 4


async def test_read_only_database_is_a_temporary_failure_everywhere_then_recovers(
    start_app: Any, make_settings: Any, small_disk: Path, bot_api: Any
) -> None:
    client, gw = await started(start_app, make_settings, small_disk / "gateway.db", bot_api)
    channels = Channels(client, gw)
    assert await channels.all() == OK
    before = await incidents(gw)
    page = await channels.open_chat()
    await writer_pragma(gw, "PRAGMA query_only = 1")  # SQLITE_READONLY on every write
    assert await channels.all(page) == TEMPORARY
    assert await incidents(gw) == before
    await writer_pragma(gw, "PRAGMA query_only = 0")  # writable again, no restart
    assert await channels.all() == OK
    assert await incidents(gw) == before + 4
    assert json.dumps(await channels.all()) == json.dumps(OK)
