"""Telegram webhook health (checklist G5): updates Telegram holds back are measured and alerted."""

from __future__ import annotations

import logging
from datetime import timedelta

from adapters.telegram.watch import WebhookHealth, assess
from tests.conftest import OPEN_TIME

HOUR = timedelta(hours=1)


def test_nothing_pending_says_nothing() -> None:
    health, alerts = assess(WebhookHealth(), OPEN_TIME, 0, None, None, HOUR)
    assert alerts == [] and health.pending_since is None and health.checked_at == OPEN_TIME


def test_a_new_delivery_error_is_a_warning_once() -> None:
    error_at = OPEN_TIME - timedelta(minutes=1)
    first = WebhookHealth(checked_at=OPEN_TIME - timedelta(minutes=5))
    health, alerts = assess(
        first, OPEN_TIME, 12, error_at, "Wrong response from the webhook: 503", HOUR
    )
    assert [a.level for a in alerts] == [logging.WARNING]
    assert "503" in alerts[0].message and "12 waiting" in alerts[0].message
    # The same error seen again at the next check is not repeated.
    later = OPEN_TIME + timedelta(minutes=5)
    _, again = assess(health, later, 12, error_at, "Wrong response from the webhook: 503", HOUR)
    assert again == []


def test_updates_waiting_too_long_are_an_error_with_the_time_left() -> None:
    health = WebhookHealth()
    moment = OPEN_TIME
    for _ in range(13):  # checks every 5 minutes while 40 updates stay pending
        health, alerts = assess(health, moment, 40, None, None, HOUR)
        moment += timedelta(minutes=5)
    assert health.pending_since == OPEN_TIME
    assert [a.level for a in alerts] == [logging.ERROR]
    assert "40 Telegram updates undelivered for 1 h 00 min" in alerts[0].message
    assert "23 h 00 min left" in alerts[0].message
    # Delivered at last: the clock resets.
    health, alerts = assess(health, moment, 0, None, None, HOUR)
    assert alerts == [] and health.pending_since is None


async def test_the_watch_asks_telegram_and_exports_the_gauge(tg, bot_api, caplog) -> None:
    client, gw = tg
    bot_api.webhook_info.update(
        pending_update_count=7,
        last_error_date=int((OPEN_TIME - timedelta(seconds=30)).timestamp()),
        last_error_message="Wrong response from the webhook: 503 Service Unavailable",
    )
    watch = gw.extras["telegram"].watch
    await watch.stop()  # the background round at start already ran; check by hand from here
    watch.health = WebhookHealth(checked_at=OPEN_TIME - timedelta(minutes=5))
    with caplog.at_level(logging.WARNING, logger="adapters.telegram.watch"):
        alerts = await watch.check(gw.extras["telegram"].bot)
    assert [a.level for a in alerts] == [logging.WARNING]
    assert "503 Service Unavailable" in caplog.text
    metrics = await (await client.get("/metrics")).text()
    assert "gateway_telegram_pending_updates 7.0" in metrics
    assert any(m == "getWebhookInfo" for m, _ in bot_api.calls)
