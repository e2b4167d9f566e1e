"""How agents read what the gateway stores: Spanish words for routing reasons, delivery states,
actors, categories, languages and who registered an incident; times in the agent's zone.

Pure: stored values in, display strings out (never raw JSON, never internal ids such as a chat
visitor's token). Unknown values get a readable fallback, never a crash.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.core.timeutil import parse_iso

DELIVERY_ES = {
    "queued": "en cola de envío",
    "accepted": "en cola de envío",
    "scheduled": "programado",
    "sending": "enviándose",
    "sent": "enviado",
    "delivered": "entregado",
    "read": "leído",
    "failed": "falló el envío",
    "undelivered": "no entregado",
}
ACTOR_ES = {"system": "sistema", "customer": "cliente"}
LANGUAGE_ES = {"es": "español", "en": "inglés"}
CHANNEL_BY = {
    "email": "correo",
    "whatsapp": "WhatsApp",
    "webchat": "chat web",
    "click2call": "Click2Call",
    "voice": "teléfono",
    "telegram": "Telegram",
}
# Channel identities an agent can use to recognise the customer (a chat visitor's signed id
# and a Telegram chat id are internal: only the channel is named).
_SHOWN_IDENTITY = ("email", "whatsapp", "voice", "click2call")


def category_name(slug: str | None, names: Mapping[str, str]) -> str:
    """'configuracion' -> 'Configuración' (configured name, else the slug humanized)."""
    if not slug:
        return "—"
    return names.get(slug) or slug.replace("-", " ").replace("_", " ").capitalize()


def actor_name(actor: str | None) -> str:
    """'system' -> 'sistema'; agents keep their names."""
    return ACTOR_ES.get(actor or "", actor or "—")


def delivery_state(status: str | None) -> str:
    """A message's delivery status in Spanish."""
    return DELIVERY_ES.get(status or "", status or "")


def registered_by(value: str | None) -> str:
    """'whatsapp:+50688880001' -> 'el cliente por WhatsApp (+50688880001)'."""
    channel, _, who = (value or "").partition(":")
    label = CHANNEL_BY.get(channel)
    if label is None:
        return value or "—"
    if channel in _SHOWN_IDENTITY and who and who != "anonymous":
        return f"el cliente por {label} ({who})"
    return f"el cliente por {label}"


def line_name(code: str | None, countries: Mapping[str, str]) -> str:
    """'CR' -> 'Costa Rica'."""
    return countries.get(code or "", code or "—")


_REASONS: list[tuple[re.Pattern[str], Callable[[re.Match[str], Mapping[str, str]], str]]] = [
    (
        re.compile(r"^phone '(.*)' could not be parsed$"),
        lambda m, c: f"no se pudo interpretar el teléfono «{m[1]}»",
    ),
    (
        re.compile(r"^called (\S+) → line (\w+)$"),
        lambda m, c: f"llamó al {m[1]} → línea de {line_name(m[2], c)}",
    ),
    (
        re.compile(r"^called (.*) is not a line number$"),
        lambda m, c: f"el número llamado ({m[1]}) no es de ninguna línea",
    ),
    (re.compile(r"^phone (\S+) has no country$"), lambda m, c: f"el teléfono {m[1]} no tiene país"),
    (
        re.compile(r"^phone (\S+) is in (\w+) → line (\w+)$"),
        lambda m, c: f"teléfono {m[1]} de {line_name(m[2], c)} → línea de {line_name(m[3], c)}",
    ),
    (
        re.compile(r"^phone (\S+) is in (\w+), which has no line$"),
        lambda m, c: f"teléfono {m[1]} de {line_name(m[2], c)}, país sin línea propia",
    ),
    (
        re.compile(r"^country (\w+) chosen in the form → line (\w+)$"),
        lambda m, c: f"el cliente eligió {line_name(m[1], c)} → línea de {line_name(m[2], c)}",
    ),
    (
        re.compile(r"^chosen country (.*) has no line$"),
        lambda m, c: f"el país elegido ({m[1]}) no tiene línea",
    ),
    (
        re.compile(r"^default line (\w+)$"),
        lambda m, c: f"sin país conocido: línea predeterminada ({line_name(m[1], c)})",
    ),
    (
        re.compile(r"^new contact → L1 of line (\w+)$"),
        lambda m, c: f"contacto nuevo → L1 de la línea de {line_name(m[1], c)}",
    ),
    (
        re.compile(r"^line (\w+) closed at arrival; opens (\S+) (\S+) (\S+)$"),
        lambda m, c: (
            f"la línea de {line_name(m[1], c)} estaba cerrada al llegar; abre el {m[2]} a las"
            f" {m[3]} (hora local)"
        ),
    ),
    (
        re.compile(r"^(S\d) runs on a 24x7 clock: SLA counts from arrival$"),
        lambda m, c: f"{m[1]} corre las 24 horas: el SLA cuenta desde la llegada",
    ),
    (
        re.compile(r"^severity (S\d) \(default\)$"),
        lambda m, c: f"severidad {m[1]} (predeterminada)",
    ),
    (
        re.compile(r"^severity (S\d)$"),
        lambda m, c: f"severidad {m[1]} (según las respuestas del cliente)",
    ),
]


def routing_reason(reason: str, countries: Mapping[str, str]) -> str:
    """One stored routing reason ('default line CR') in Spanish."""
    for pattern, spanish in _REASONS:
        match = pattern.match(reason)
        if match:
            return spanish(match, countries)
    return reason


def zone(name: str | None) -> ZoneInfo | None:
    """The IANA zone, or None for an unknown name."""
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_when(value: str | datetime | None, tz: str | None) -> str:
    """An ISO time as '30/11/2026 09:05' in the zone `tz` (UTC when unknown)."""
    moment = value if isinstance(value, datetime) else parse_iso(value)
    if moment is None:
        return "—"
    place = zone(tz)
    if place is None:
        return moment.strftime("%d/%m/%Y %H:%M UTC")
    return moment.astimezone(place).strftime("%d/%m/%Y %H:%M")


def offset_label(tz: str | None, at: datetime) -> str:
    """'UTC−6' for a zone at a moment (DST aware)."""
    place = zone(tz)
    if place is None:
        return "UTC"
    offset = at.astimezone(place).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "+" if minutes >= 0 else "−"
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")


def zone_label(tz: str | None, names: Mapping[str, str], at: datetime) -> str:
    """'hora de Costa Rica (UTC−6)' for a line's zone; else the zone's own name."""
    place = names.get(tz or "")
    where = f"hora de {place}" if place else (tz or "UTC")
    return f"{where} ({offset_label(tz, at)})"
