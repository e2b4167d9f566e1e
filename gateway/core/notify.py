"""Alarm notices: a log line, an email to `[alarms] notify` through the outbound SMTP relay, and
an optional webhook POST. Sent directly, not through the outbox: the outbox (or the database
under it) may be what is failing. A failed email or webhook is logged; it never raises.
"""

from __future__ import annotations

import logging
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiohttp
import aiosmtplib

from config.settings import Settings
from gateway.core.alarms import Action
from gateway.core.timeutil import iso

log = logging.getLogger("gateway.alarms")
TIMEOUT = 10.0
TITLE = {"open": "ALARMA", "repeat": "ALARMA (sigue)", "recover": "NORMALIZADO"}


def notice_json(action: Action, instance: str, now: datetime) -> dict[str, object]:
    """The JSON a webhook receives for one notice."""
    return {
        "event": {"open": "alarm", "repeat": "alarm_repeat", "recover": "recovery"}[action.kind],
        "key": action.key,
        "summary": action.summary,
        "value": action.value,
        "threshold": action.limit,
        "at": iso(now),
        "instance": instance,
    }


def notice_email(settings: Settings, actions: list[Action], now: datetime) -> EmailMessage:
    """One email carrying every notice of an evaluation (the first one in the Subject)."""
    alarms = settings.alarms
    msg = EmailMessage()
    first = actions[0]
    more = f" (+{len(actions) - 1})" if len(actions) > 1 else ""
    msg["Subject"] = f"[CallMyWay NOC] {TITLE[first.kind]}: {first.summary}{more}"[:200]
    msg["From"] = alarms.sender
    msg["To"] = ", ".join(alarms.notify)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain=alarms.sender.partition("@")[2] or "localhost")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies to alarms
    lines = [f"{TITLE[a.kind]} · {a.key} · {a.summary}" for a in actions]
    lines += ["", f"Instancia: {settings.instance}", f"Hora: {iso(now)}", ""]
    lines.append("Episodios: /agent/alarmas")
    msg.set_content("\n".join(lines))
    return msg


async def send_notices(settings: Settings, actions: list[Action], now: datetime) -> None:
    """Log, email and POST the notices of one evaluation (nothing when there are none)."""
    if not actions:
        return
    for a in actions:
        level = logging.INFO if a.kind == "recover" else logging.ERROR
        log.log(level, "%s %s: %s", TITLE[a.kind], a.key, a.summary)
    alarms = settings.alarms
    if alarms.notify:
        if settings.smtp_relay is None:
            log.warning("alarm email not sent: no [gateway] smtp_relay is configured")
        else:
            host, port = settings.smtp_relay
            try:
                await aiosmtplib.send(
                    notice_email(settings, actions, now),
                    hostname=host,
                    port=port,
                    sender=alarms.sender,
                    recipients=list(alarms.notify),
                    timeout=TIMEOUT,
                )
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                log.error("alarm email not sent: %s: %s", type(exc).__name__, exc)
    if alarms.webhook:
        body = [notice_json(a, settings.instance, now) for a in actions]
        try:
            timeout = aiohttp.ClientTimeout(total=TIMEOUT)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.post(alarms.webhook, json={"notices": body}) as resp,
            ):
                if resp.status >= 300:
                    log.error("alarm webhook answered %s", resp.status)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.error("alarm webhook failed: %s: %s", type(exc).__name__, exc)
