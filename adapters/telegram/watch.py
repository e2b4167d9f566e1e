"""Telegram webhook health: is Telegram holding updates it could not deliver to us?

When the gateway answered non-2xx (database down, a deploy), Telegram keeps the updates and
retries for a while, then drops them after 24 hours. Every `webhook_check_interval` the
gateway asks `getWebhookInfo` and exports `gateway_telegram_pending_updates`; `assess` (pure)
decides what to say in the log: a warning when Telegram reports a delivery error since the last
check, an error once updates have waited `pending_alert_after` or more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from prometheus_client import Gauge
from telegram.error import TelegramError

if TYPE_CHECKING:
    import telegram

    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
TELEGRAM_KEEPS = timedelta(hours=24)  # Bot API: undelivered updates are kept up to 24 hours


@dataclass(frozen=True)
class WebhookHealth:
    """What the previous checks learnt: since when updates have been waiting."""

    checked_at: datetime | None = None
    pending: int = 0
    pending_since: datetime | None = None


@dataclass(frozen=True)
class Alert:
    """One log line to write: `level` is logging.WARNING or logging.ERROR."""

    level: int
    message: str


def assess(
    before: WebhookHealth,
    now: datetime,
    pending: int,
    last_error_at: datetime | None,
    last_error: str | None,
    alert_after: timedelta,
) -> tuple[WebhookHealth, list[Alert]]:
    """The new health and its alerts, from one getWebhookInfo answer."""
    alerts: list[Alert] = []
    since = (before.pending_since or before.checked_at or now) if pending else None
    new_error = last_error_at is not None and (
        before.checked_at is None or last_error_at > before.checked_at
    )
    if new_error:
        alerts.append(
            Alert(
                logging.WARNING,
                f"Telegram could not deliver updates to the webhook ({last_error or 'no reason'});"
                f" {pending} waiting",
            )
        )
    if pending and since is not None and now - since >= alert_after:
        left = TELEGRAM_KEEPS - (now - since)
        alerts.append(
            Alert(
                logging.ERROR,
                f"{pending} Telegram updates undelivered for {_hours(now - since)};"
                f" Telegram drops them after 24 h (about {_hours(max(left, timedelta(0)))} left)",
            )
        )
    return WebhookHealth(checked_at=now, pending=pending, pending_since=since), alerts


def _hours(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min"


class WebhookWatch:
    """Asks getWebhookInfo periodically while the app runs; exports the pending count."""

    def __init__(self, gw: Gateway):
        self.gw = gw
        self.health = WebhookHealth()
        self.gauge = Gauge(
            "gateway_telegram_pending_updates",
            "Updates Telegram holds for the webhook (getWebhookInfo.pending_update_count)",
            registry=gw.metrics.registry,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self, bot: telegram.Bot) -> None:
        """Begin checking in the background."""
        self.task = asyncio.create_task(self._loop(bot), name="telegram-webhook-watch")

    async def stop(self) -> None:
        """Stop checking."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    async def check(self, bot: telegram.Bot) -> list[Alert]:
        """One getWebhookInfo round: update the gauge and the health, log the alerts."""
        tg = self.gw.settings.telegram
        try:
            info = await bot.get_webhook_info()
        except TelegramError as exc:
            log.warning("getWebhookInfo failed: %s", type(exc).__name__)
            return []
        self.gauge.set(info.pending_update_count)
        self.health, alerts = assess(
            self.health,
            self.gw.clock(),
            info.pending_update_count,
            info.last_error_date,
            info.last_error_message,
            tg.pending_alert_after,
        )
        for alert in alerts:
            log.log(alert.level, alert.message)
        return alerts

    async def _loop(self, bot: telegram.Bot) -> None:
        interval = self.gw.settings.telegram.webhook_check_interval.total_seconds()
        while True:
            try:
                await self.check(bot)
            except Exception:  # the watch must never take the gateway down
                log.exception("telegram webhook check failed")
            await asyncio.sleep(interval)
