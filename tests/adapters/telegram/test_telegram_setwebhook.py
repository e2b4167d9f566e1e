"""`python -m gateway telegram set-webhook` against the fake Bot API, through the real CLI."""

from __future__ import annotations

import asyncio
import json
import logging

from adapters.telegram import bot as telegram_bot
from gateway import cli
from tests.adapters.telegram.conftest import SECRET, TOKEN


async def test_set_webhook_registers_public_url_with_the_secret(tg_settings, bot_api, capsys):
    code = await telegram_bot.set_webhook_command(tg_settings)
    assert code == 0
    assert bot_api.webhook is not None
    assert bot_api.webhook["url"] == "https://soporte.callmyway.com/webhooks/telegram"
    assert bot_api.webhook["secret_token"] == SECRET
    assert json.loads(bot_api.webhook["allowed_updates"]) == [
        "message",
        "edited_message",
        "my_chat_member",
    ]
    out = capsys.readouterr().out
    assert "https://soporte.callmyway.com/webhooks/telegram" in out and SECRET not in out


async def test_cli_command_runs_the_adapters_function(bot_api, tmp_path, capsys) -> None:
    env = {
        "GATEWAY_DB": f"sqlite:///{tmp_path}/cli.db",
        "GATEWAY_PUBLIC_URL": "https://soporte.callmyway.com:8443",
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_WEBHOOK_SECRET": SECRET,
        "TELEGRAM_API_BASE": bot_api.base,
    }
    # The CLI runs its own event loop (asyncio.run); the fake keeps serving on this one.
    # cli.main configures root logging for the process: put pytest's handlers back after.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = await asyncio.to_thread(cli.main, ["telegram", "set-webhook"], env)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert code == 0
    assert bot_api.webhook["url"] == "https://soporte.callmyway.com:8443/webhooks/telegram"


async def test_set_webhook_reports_a_rejected_token_without_printing_it(
    make_settings, bot_api, capsys, caplog
) -> None:
    # Every logger at DEBUG, PTB's own included (it names each Bot API call it makes): none of
    # them may carry the token, though every Bot API URL does.
    caplog.set_level(logging.DEBUG)
    settings = make_settings(
        TELEGRAM_BOT_TOKEN="999:wrong-token-value",
        TELEGRAM_WEBHOOK_SECRET=SECRET,
        TELEGRAM_API_BASE=bot_api.base,
    )
    assert await telegram_bot.set_webhook_command(settings) == 1
    err = capsys.readouterr().err
    assert "error: Telegram refused the webhook" in err and "wrong-token-value" not in err
    # (The fake Bot API's own access log, "aiohttp.access", is the test's server, not the
    # gateway.)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
    assert "getMe" in logged and "wrong-token-value" not in logged
    assert bot_api.webhook is None


async def test_set_webhook_without_credentials_exits_2(settings, capsys) -> None:
    assert await telegram_bot.set_webhook_command(settings) == 2
    assert "TELEGRAM_BOT_TOKEN" in capsys.readouterr().err
