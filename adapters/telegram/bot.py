"""Telegram channel: the `POST /webhooks/telegram` webhook, the outbox sender, `set-webhook`.

Verify the secret header → read the Update JSON → commit it (a customer message through the
intake, a command or any other update in `telegram_updates`) → only then answer 200. It never
acknowledges before the commit (unlike PTB's webhook examples, which queue in memory first) and
never logs the bot token or the webhook secret.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import telegram
from aiohttp import web
from telegram.error import TelegramError

from adapters.telegram.command import MIGRATIONS, CommandContext, answer_command, store_ignored
from adapters.telegram.edit import apply_edit
from adapters.telegram.media import JOB_KIND as MEDIA_JOB
from adapters.telegram.media import TelegramMedia
from adapters.telegram.request import AiohttpRequest
from adapters.telegram.send import send_text
from adapters.telegram.update import NotAnUpdate, ParsedUpdate, bot_id_of, parse_update
from adapters.telegram.watch import WebhookWatch
from config.settings import Settings, TelegramSettings
from gateway.core.errors import Rejected, Shunted
from gateway.core.language import detect_language
from gateway.core.model import (
    AttachmentIn,
    Contact,
    Inbound,
    OutboundItem,
    SendError,
    receipt_key,
)
from gateway.core.services import Gateway
from gateway.web.http import client_address, error_response, read_json

log = logging.getLogger(__name__)
PATH = "/webhooks/telegram"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
# Updates the gateway asks for; others are stored and ignored if Telegram sends them anyway.
ALLOWED_UPDATES = ["message", "edited_message", "my_chat_member"]


def make_bot(tg: TelegramSettings) -> telegram.Bot:
    """PTB's Bot pointed at the configured Bot API base, with bounded request times, over
    aiohttp (`adapters.telegram.request`: a third of httpx's CPU per call)."""
    assert tg.bot_token
    hide_token(tg.bot_token)
    timeout = tg.request_timeout.total_seconds()
    # PTB appends the token to both: {api_base}/bot{token}/{method} and, for getFile
    # downloads, {api_base}/file/bot{token}/{file_path}.
    return telegram.Bot(
        tg.bot_token,
        base_url=f"{tg.api_base}/bot",
        base_file_url=f"{tg.api_base}/file/bot",
        request=AiohttpRequest(timeout, secret=tg.bot_token),
        # Never used (updates come by webhook), but PTB initializes it with the Bot.
        get_updates_request=AiohttpRequest(timeout, secret=tg.bot_token, pool_size=1),
    )


class _HideToken(logging.Filter):
    """Bot API URLs carry the token, and PTB logs them at DEBUG ("Set Bot API URL: ..."): mask
    it in every record of the loggers that may name one."""

    def __init__(self, token: str):
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.token in message:
            record.msg, record.args = message.replace(self.token, "<bot-token>"), ()
        return True


# PTB's Bot and the HTTP client it would use by default (a filter on a logger covers the
# records logged there, not its children's, so each is named).
TOKEN_LOGGERS = ("telegram.Bot", "httpx")


def hide_token(token: str) -> None:
    """Mask the bot token in the log lines of TOKEN_LOGGERS (idempotent)."""
    for name in TOKEN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _HideToken) and f.token == token for f in logger.filters):
            logger.addFilter(_HideToken(token))


def _peer_allowed(remote: str | None, networks: tuple[str, ...]) -> bool:
    if not networks:
        return True
    try:
        peer = ipaddress.ip_address(remote or "")
    except ValueError:
        return False
    return any(peer in ipaddress.ip_network(net, strict=False) for net in networks)


def _secret_ok(given: str | None, expected: str) -> bool:
    # Constant time, on bytes (compare_digest refuses non-ASCII str) (checklist G1).
    return hmac.compare_digest((given or "").encode("utf-8", "surrogateescape"), expected.encode())


class TelegramChannel:
    """The Telegram adapter's state: the gateway, and the Bot once the app has started."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        tg = gw.settings.telegram
        self.bot_id = bot_id_of(tg.bot_token) if tg.bot_token else ""
        self.bot: telegram.Bot | None = None
        self.commands = CommandContext(gw.settings, gw.texts, self.bot_id)
        self.media = TelegramMedia(gw)
        self.watch = WebhookWatch(gw)

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        """Create, initialize and shut down the Bot with the app (aiohttp cleanup_ctx)."""
        tg = self.gw.settings.telegram
        if tg.enabled:
            self.bot = make_bot(tg)
            try:
                await self.bot.initialize()  # getMe: checks the token, caches the bot's user
            except TelegramError as exc:
                # Intake must not depend on the Bot API being up; sends retry through the outbox.
                log.warning("Telegram getMe failed at start (%s); sends retry", type(exc).__name__)
            self.gw.outbox.register("telegram", self.send)
            self.media.bot = self.bot
            self.watch.start(self.bot)
        yield
        await self.watch.stop()
        self.media.bot = None
        if self.bot is not None:
            await self.bot.shutdown()
            self.bot = None

    async def send(self, item: OutboundItem) -> str:
        """Outbox sender for channel "telegram" (kinds ack, reply, notice)."""
        if self.bot is None:  # shutting down: the row stays queued for the next start
            raise SendError("the Telegram bot is not running")
        try:
            sent = await send_text(self.bot, item)
        except SendError as exc:
            # A refusal (blocked chat, flood control) is an answer: the Bot API is up.
            if exc.permanent or exc.retry_after is not None:
                self.gw.providers.ok("telegram")
            else:
                self.gw.providers.failed("telegram", exc.reason)
            raise
        self.gw.providers.ok("telegram")
        return sent

    async def webhook(self, request: web.Request) -> web.Response:
        """POST /webhooks/telegram: 200 only once the update is committed."""
        tg = self.gw.settings.telegram
        if not tg.enabled:
            return error_response(503, "the Telegram channel is not configured")
        peer = client_address(request, self.gw.settings.trusted_proxies)
        if not _peer_allowed(peer, tg.allowed_networks):
            log.warning("telegram webhook from %s: not in allowed_networks", peer)
            return error_response(403, "this address may not call the Telegram webhook")
        assert tg.webhook_secret
        if not _secret_ok(request.headers.get(SECRET_HEADER), tg.webhook_secret):
            log.warning("telegram webhook from %s: missing or wrong secret token", request.remote)
            return error_response(403, f"missing or wrong {SECRET_HEADER}")
        if request.content_type != "application/json":
            raise Rejected("the Content-Type must be application/json", field="Content-Type")
        data = await read_json(request)  # 400 for non-JSON; 413 above client_max_size
        raw = await request.read()
        try:
            parsed = parse_update(data, self.bot)
        except NotAnUpdate as exc:
            raise Rejected(str(exc), field="update_id") from None
        await self._commit(parsed, raw)
        return web.Response(status=200)

    async def _commit(self, parsed: ParsedUpdate, raw: bytes) -> None:
        gw = self.gw
        now = gw.clock()
        if parsed.kind == "edit" and await self._edit(parsed, raw):
            return
        if parsed.kind in ("message", "edit"):
            try:
                receipt = await gw.intake.accept(self._inbound(parsed, raw))
            except Shunted:
                # Committed as a shunted receipt for `python -m gateway replay`: a 503 would only
                # make Telegram retry the same failing update and hold back the ones after it.
                log.error(
                    "telegram update %s hit a processing bug: kept, answered 200", parsed.update_id
                )
                return
            if parsed.files:  # the retry job commits before the 200; the download starts now
                await self.media.ensure_job(self._provider_id(parsed))
                self.media.start(self._provider_id(parsed))
            log.info(
                "telegram update %s → %s (%s)",
                parsed.update_id,
                receipt.tracking,
                "duplicate" if receipt.duplicate else "new" if receipt.created else "joined",
            )
            return
        if parsed.kind == "command":
            fresh = await gw.store.transact(
                lambda tx: answer_command(tx, self.commands, parsed, raw, now)
            )
            if fresh:
                gw.outbox.wake()
        else:
            fresh = await gw.store.transact(
                lambda tx: store_ignored(tx, self.bot_id, parsed, raw, now)
            )
        log.info(
            "telegram update %s (%s%s) stored%s",
            parsed.update_id,
            parsed.update_type,
            f" /{parsed.command}" if parsed.command else "",
            "" if fresh else " before: duplicate",
        )

    def _provider_id(self, parsed: ParsedUpdate) -> str:
        """The dedupe key of a message: (chat id, message id), never the update_id alone
        (Telegram restarts update ids after a week without updates)."""
        if parsed.chat_id is None or parsed.message_id is None:
            return f"{self.bot_id}:{parsed.update_id}"
        key = f"{self.bot_id}:{parsed.chat_id}:{parsed.message_id}"
        if parsed.kind == "edit":  # an edit of an unknown message: its own key per edit
            key += f":edit:{parsed.edited_at.timestamp() if parsed.edited_at else ''}"
        return key

    async def _edit(self, parsed: ParsedUpdate, raw: bytes) -> bool:
        """An edited message: applied to the message it edits; False if that one is unknown."""
        assert parsed.chat_id is not None
        original = f"{self.bot_id}:{parsed.chat_id}:{parsed.message_id}"
        key = self._provider_id(parsed)
        now = self.gw.clock()
        result = await self.gw.store.transact(
            lambda tx: apply_edit(tx, original, key, parsed.text, raw, now),
            keys=(receipt_key("telegram", original),),
        )
        if result is None:
            return False
        tracking, fresh = result
        if fresh:
            self.gw.after_commit({"type": "incident", "event": "message", "tracking": tracking})
        log.info("telegram update %s: edit of a message of %s", parsed.update_id, tracking)
        return True

    def _inbound(self, parsed: ParsedUpdate, raw: bytes) -> Inbound:
        assert parsed.chat_id is not None
        files = tuple(
            AttachmentIn(filename=f.filename, content_type=f.content_type, size=f.size, url=f.url)
            for f in parsed.files
        )
        return Inbound(
            channel="telegram",
            provider_id=self._provider_id(parsed),
            contact=Contact(name=parsed.name, telegram_chat_id=parsed.chat_id),
            text=parsed.text,
            received_at=parsed.sent_at or self.gw.clock(),
            thread_by_contact=True,
            acknowledge=True,
            language=parsed.language or detect_language(parsed.text),
            author=parsed.name,
            raw=raw,
            attachments=files,  # downloaded after the commit (`media`)
            # A poll, game or the like: the agent sees this flag and asks the customer.
            flags=("media_not_fetched",) if parsed.other_media else (),
        )


async def set_webhook_command(settings: Settings) -> int:
    """`python -m gateway telegram set-webhook`: register PUBLIC_URL/webhooks/telegram."""
    tg = settings.telegram
    if not tg.enabled:
        print("error: set TELEGRAM_BOT_TOKEN and TELEGRAM_WEBHOOK_SECRET first", file=sys.stderr)
        return 2
    url = settings.public_url.rstrip("/") + PATH
    bot = make_bot(tg)
    try:
        async with bot:
            ok = await bot.set_webhook(
                url=url, secret_token=tg.webhook_secret, allowed_updates=ALLOWED_UPDATES
            )
    except TelegramError as exc:
        reason = "the bot token was rejected" if "token" in exc.message.lower() else exc.message
        print(f"error: Telegram refused the webhook {url}: {reason}", file=sys.stderr)
        return 1
    if not ok:
        print(f"error: Telegram did not confirm the webhook {url}", file=sys.stderr)
        return 1
    print(f"Telegram webhook set: {url} (updates: {', '.join(ALLOWED_UPDATES)})")
    return 0


def setup(gw: Gateway) -> None:
    """Register the webhook route, the Bot's lifecycle, the sender and the update table."""
    channel = TelegramChannel(gw)
    gw.extras["telegram"] = channel
    gw.add_migrations("telegram", MIGRATIONS)
    gw.app.router.add_post(PATH, channel.webhook)
    gw.app.cleanup_ctx.append(channel.lifecycle)
    gw.app.cleanup_ctx.append(channel.media.context)
    gw.scheduler.register(MEDIA_JOB, channel.media.run_job)


# gateway/cli.py looks the command up on the registered setup function.
_setup: Any = setup
_setup.set_webhook_command = set_webhook_command
