"""Logging set-up: one line per record, with email addresses and phone numbers redacted."""

from __future__ import annotations

import logging
import re

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+)")
_PHONE = re.compile(r"\+\d[\d ()-]{6,}(\d{2})")


def redact(text: str) -> str:
    """'ana.perez@example.com' -> 'a***@example.com'; '+50688887777' -> '+…77'."""
    text = _EMAIL.sub(r"\1***@\2", text)
    return _PHONE.sub(r"+…\1", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message with personal data masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


def configure(level: int = logging.INFO) -> None:
    """Root logging to stderr with redaction."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # httpx (python-telegram-bot's default transport; the gateway sends over aiohttp) logs
    # request URLs, which carry the bot token.
    logging.getLogger("httpx").setLevel(logging.WARNING)
