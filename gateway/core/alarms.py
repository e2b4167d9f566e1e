"""NOC alarm evaluation, pure: a metrics snapshot + thresholds + the open episodes → actions.

No I/O and no clock: `evaluate` takes `now`. An alarm is identified by a key ("outbox_age:email",
"unattended:L1:CR", "database"...). A key over its threshold with no open episode opens one
(notify); while it stays over, it is notified again every `repeat`; back under, the episode
ends with a recovery notice. The shell (`gateway.core.noc`) reads, stores and sends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from config.alarms import AlarmSettings

ActionKind = Literal["open", "repeat", "recover"]


@dataclass(frozen=True)
class ProviderState:
    """What one instance (or all, merged) knows of a provider's last sends."""

    last_ok: datetime | None = None
    last_error: datetime | None = None
    error: str | None = None
    failing_since: datetime | None = None  # first failure after the last success


@dataclass(frozen=True)
class Snapshot:
    """Everything the thresholds are compared with, measured at one moment."""

    unattended: Mapping[tuple[str, str], datetime] = field(default_factory=dict)  # (level, line)
    at_risk: int = 0
    breached: int = 0
    outbox_oldest: Mapping[str, datetime] = field(default_factory=dict)  # channel → created_at
    dead: Mapping[str, int] = field(default_factory=dict)  # channel → dead rows
    intake_failures: int = 0  # within the window
    shunted: int = 0
    providers: Mapping[str, ProviderState] = field(default_factory=dict)
    database_ok: bool = True


@dataclass(frozen=True)
class Check:
    """One alarm over its threshold: the measured value, the limit, and a sentence."""

    key: str
    value: float
    limit: float
    summary: str


@dataclass(frozen=True)
class Episode:
    """An open alarm episode as stored."""

    key: str
    started_at: datetime
    notified_at: datetime
    notices: int = 1


@dataclass(frozen=True)
class Action:
    """What the shell must do for one key: open, repeat or end (recover) an episode."""

    kind: ActionKind
    key: str
    summary: str
    value: float | None = None
    limit: float | None = None


def _minutes(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def checks(snap: Snapshot, th: AlarmSettings, now: datetime) -> dict[str, Check]:
    """Every alarm whose measured value is at or over its threshold (0 thresholds are off)."""
    out: dict[str, Check] = {}

    def over(key: str, value: float, limit: float, summary: str) -> None:
        if limit > 0 and value >= limit:
            out[key] = Check(key, value, limit, summary)

    for (level, line), since in sorted(snap.unattended.items()):
        limit = th.unattended.get(level, timedelta(0))
        age = now - since
        over(
            f"unattended:{level}:{line}",
            age.total_seconds(),
            limit.total_seconds(),
            f"{level} {line}: incidente sin atender hace {_minutes(age)}"
            f" (umbral {_minutes(limit)})",
        )
    over("at_risk", snap.at_risk, th.at_risk, f"{snap.at_risk} incidentes en riesgo de vencer")
    over("breached", snap.breached, th.breached, f"{snap.breached} incidentes abiertos vencidos")
    for channel, since in sorted(snap.outbox_oldest.items()):
        age = now - since
        over(
            f"outbox_age:{channel}",
            age.total_seconds(),
            th.outbox_age.total_seconds(),
            f"salida {channel}: mensaje sin entregar hace {_minutes(age)}",
        )
    for channel, count in sorted(snap.dead.items()):
        over(
            f"dead_letters:{channel}",
            count,
            th.dead_letters,
            f"salida {channel}: {count} mensajes descartados (dead letter)",
        )
    over(
        "intake_failures",
        snap.intake_failures,
        th.intake_failures,
        f"{snap.intake_failures} fallos temporales de entrada en {_minutes(th.intake_window)}",
    )
    over("shunted", snap.shunted, th.shunted, f"{snap.shunted} entradas apartadas para replay")
    for name, state in sorted(snap.providers.items()):
        if state.failing_since is None:
            continue
        down = now - state.failing_since
        limit = th.provider_down.total_seconds()
        # A provider that has failed for the whole window with no success since alarms.
        over(
            f"provider:{name}",
            max(down.total_seconds(), 0.001),
            limit if limit > 0 else 0,
            f"{name}: falla desde hace {_minutes(down)}: {state.error or 'error'}",
        )
    if th.database and not snap.database_ok:
        out["database"] = Check("database", 1, 1, "la base de datos no acepta escrituras")
    return out


def evaluate(
    snap: Snapshot, th: AlarmSettings, episodes: Mapping[str, Episode], now: datetime
) -> list[Action]:
    """The notices due now: new episodes, repeats of lasting ones, recoveries of ended ones."""
    actions: list[Action] = []
    found = checks(snap, th, now)
    for key, check in found.items():
        episode = episodes.get(key)
        if episode is None:
            actions.append(Action("open", key, check.summary, check.value, check.limit))
        elif now - episode.notified_at >= th.repeat:
            actions.append(Action("repeat", key, check.summary, check.value, check.limit))
    for key in sorted(set(episodes) - set(found)):
        actions.append(Action("recover", key, f"{key}: normalizado"))
    return actions


def count_in_window(samples: list[tuple[datetime, int]], now: datetime, window: timedelta) -> int:
    """Growth of a cumulative counter over the window, from (time, total) samples, oldest first."""
    if not samples:
        return 0
    start = now - window
    base = samples[0][1]
    for at, total in samples:
        if at <= start:
            base = total
    return max(samples[-1][1] - base, 0)
