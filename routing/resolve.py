"""Which country line a contact belongs to, with the reasons an agent can read.

Priority (CONTRACT, Configuration): the line that was called; else the country of the
contact's phone number; else the country chosen in a form; else `default_country`.
"""

from __future__ import annotations

from dataclasses import dataclass

from routing.model import Line, RoutingConfig
from routing.phone import country_of_phone, normalize_phone


@dataclass(frozen=True)
class LineDecision:
    """The line a contact is routed to, the country resolved, and why."""

    line: Line
    country: str  # may differ from line.code when that country has no line
    phone: str | None  # the contact's phone, E.164
    reasons: tuple[str, ...]
    flags: tuple[str, ...]


def _line_by_number(cfg: RoutingConfig, number: str) -> Line | None:
    for line in cfg.lines.values():
        if normalize_phone(line.number) == number:
            return line
    return None


def _dedupe(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def resolve_line(
    cfg: RoutingConfig,
    *,
    phone: str | None = None,
    called: str | None = None,
    chosen_country: str | None = None,
) -> LineDecision:
    """Return the line of a contact from the number it called, its phone or its chosen country."""
    reasons: list[str] = []
    flags: list[str] = []
    country: str | None = None  # first country learnt, kept even when it has no line

    e164 = None
    if phone is not None and phone.strip():
        e164 = normalize_phone(phone)
        if e164 is None:
            flags.append("phone_unparsed")
            reasons.append(f"phone '{phone.strip()[:40]}' could not be parsed")

    if called is not None and called.strip():
        called_e164 = normalize_phone(called)
        line = _line_by_number(cfg, called_e164) if called_e164 else None
        if line is not None:
            reasons.append(f"called {called_e164} → line {line.code}")
            return LineDecision(line, line.code, e164, _dedupe(reasons), _dedupe(flags))
        flags.append("called_unknown")
        reasons.append(f"called {called.strip()[:40]} is not a line number")

    if e164 is not None:
        phone_country = country_of_phone(e164)
        if phone_country is None:
            flags.append("phone_without_country")
            reasons.append(f"phone {e164} has no country")
        elif phone_country in cfg.lines:
            reasons.append(f"phone {e164} is in {phone_country} → line {phone_country}")
            line = cfg.lines[phone_country]
            return LineDecision(line, phone_country, e164, _dedupe(reasons), _dedupe(flags))
        else:
            country = phone_country
            flags.append("country_without_line")
            reasons.append(f"phone {e164} is in {phone_country}, which has no line")

    if chosen_country is not None and chosen_country.strip():
        chosen = chosen_country.strip().upper()
        if chosen in cfg.lines:
            reasons.append(f"country {chosen} chosen in the form → line {chosen}")
            return LineDecision(
                cfg.lines[chosen], country or chosen, e164, _dedupe(reasons), _dedupe(flags)
            )
        country = country or chosen
        flags.append("country_without_line")
        reasons.append(f"chosen country {chosen[:8]} has no line")

    default = cfg.default_line
    reasons.append(f"default line {default.code}")
    return LineDecision(default, country or default.code, e164, _dedupe(reasons), _dedupe(flags))
