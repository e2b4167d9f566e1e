"""Telegram: the bot's webhook, its commands and the messages agents send back.

Wire: Telegram Bot API `Update` JSON posted to `POST /webhooks/telegram`, authenticated by the
`X-Telegram-Bot-Api-Secret-Token` header; out through python-telegram-bot's `Bot` (pointed at
`TELEGRAM_API_BASE`): replies, files (`getFile`) and webhook health (`getWebhookInfo`).
"""

from adapters.telegram.bot import setup

__all__ = ["setup"]
