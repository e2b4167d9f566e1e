"""The `[alarms]` section: what the NOC alarms on, how often it looks and whom it tells.

Plain data and its validation only (`read_alarms` takes the loader's reader); the evaluation
itself is `gateway.core.alarms`. A threshold of 0 (or "0s") switches that alarm off.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

LEVELS = ("L1", "L2", "L3")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _default_unattended() -> dict[str, timedelta]:
    return {"L1": timedelta(minutes=30), "L2": timedelta(hours=2), "L3": timedelta(hours=4)}


@dataclass(frozen=True)
class AlarmSettings:
    """Thresholds, cadence and recipients of the NOC alarms."""

    enabled: bool = True
    interval: timedelta = timedelta(minutes=1)  # how often the thresholds are evaluated
    repeat: timedelta = timedelta(hours=1)  # a lasting episode is notified again this often
    notify: tuple[str, ...] = ()  # email recipients (through [gateway] smtp_relay)
    sender: str = "noc@callmyway.com"  # From of the alarm emails
    webhook: str = ""  # optional URL that receives each notice as a JSON POST
    unattended: Mapping[str, timedelta] = field(default_factory=_default_unattended)
    at_risk: int = 10  # open incidents about to breach (0: off)
    breached: int = 1  # open incidents already past a due time (0: off)
    outbox_age: timedelta = timedelta(minutes=15)  # oldest undelivered row of a channel
    dead_letters: int = 1  # dead-lettered rows of a channel (0: off)
    intake_failures: int = 5  # temporary intake failures within intake_window (0: off)
    intake_window: timedelta = timedelta(minutes=5)
    shunted: int = 1  # inbound items waiting for `gateway replay` (0: off)
    provider_down: timedelta = timedelta(minutes=5)  # a provider failing this long, no success
    database: bool = True  # alarm when a write to the database fails


def _duration_or_off(r: Any, *path: str) -> timedelta:
    """A duration where 0 / "0" / "0s" means off (timedelta(0))."""
    value = r.raw(*path)
    if value in (0, "0", "0s", "0m", "off", ""):
        return timedelta(0)
    return r.duration(*path)


def read_alarms(r: Any) -> AlarmSettings:
    """Validate `[alarms]` (every problem names its key)."""
    keys = set(AlarmSettings.__dataclass_fields__)
    r.only(("alarms",), keys)
    r.only(("alarms", "unattended"), set(LEVELS))
    unattended = {level: _duration_or_off(r, "alarms", "unattended", level) for level in LEVELS}
    notify = r.strings("alarms", "notify")
    for address in notify:
        if not _EMAIL.match(address):
            raise r.fail(("alarms", "notify"), f"{address!r} is not an email address")
    sender = r.str("alarms", "sender")
    if not _EMAIL.match(sender):
        raise r.fail(("alarms", "sender"), f"{sender!r} is not an email address")
    webhook = r.str("alarms", "webhook", allow_empty=True)
    webhook = r.url("alarms", "webhook") if webhook else ""
    return AlarmSettings(
        enabled=r.bool("alarms", "enabled"),
        interval=r.duration("alarms", "interval"),
        repeat=r.duration("alarms", "repeat"),
        notify=notify,
        sender=sender,
        webhook=webhook,
        unattended=unattended,
        at_risk=r.int("alarms", "at_risk"),
        breached=r.int("alarms", "breached"),
        outbox_age=_duration_or_off(r, "alarms", "outbox_age"),
        dead_letters=r.int("alarms", "dead_letters"),
        intake_failures=r.int("alarms", "intake_failures"),
        intake_window=r.duration("alarms", "intake_window"),
        shunted=r.int("alarms", "shunted"),
        provider_down=_duration_or_off(r, "alarms", "provider_down"),
        database=r.bool("alarms", "database"),
    )
