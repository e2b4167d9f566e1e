"""Click2Call input validation and toll-fraud guard (pure: no I/O, no clock).

Only numbers of the configured lines' countries that `phonenumbers` knows as valid mobile,
fixed or VoIP subscriber numbers are called; premium-rate, toll-free, shared-cost, personal,
pager, UAN, unknown and invalid numbers are refused with a 400 naming the field, as are the
gateway's own numbers (a call loop).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from config.settings import Settings
from gateway.core.errors import Rejected
from routing.phone import country_of_phone, normalize_phone, phone_kind

# VoIP is allowed on purpose: CallMyWay is itself a VoIP carrier (seed: SIP proxies/SBCs), so
# its customers' own numbers are often in national VoIP ranges (e.g. Costa Rica's 4000 range,
# which phonenumbers types as VOIP). These ranges are billed as ordinary national numbers; the
# toll-fraud risk (IRSF) lies in premium-rate and shared-revenue ranges, which stay refused,
# and every number is further limited per hour (see `ledger`).
ALLOWED_KINDS = frozenset({"mobile", "fixed", "fixed_or_mobile", "voip"})
KIND_LABELS = {
    "premium": "premium-rate",
    "toll_free": "toll-free",
    "other": "special-service (shared-cost, personal, pager or UAN)",
    "invalid": "unassigned or invalid",
}
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
KEY_RE = re.compile(r"[\x21-\x7e]{1,200}")  # printable ASCII, as the IETF draft suggests


@dataclass(frozen=True)
class CallbackRequest:
    """A validated Click2Call form."""

    name: str
    phone: str  # E.164, callable
    country: str | None
    email: str | None
    description: str | None


def _text(data: dict[str, Any], field: str, *, required: bool, limit: int) -> str | None:
    value = data.get(field)
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise Rejected(f"{field} is required", field=field)
        return None
    if not isinstance(value, str):
        raise Rejected(f"{field} must be a string", field=field)
    value = value.strip()
    if not value:
        raise Rejected(f"{field} must not be empty", field=field)
    if len(value) > limit:
        raise Rejected(f"{field} is longer than {limit} characters", field=field)
    if any(ord(c) < 32 and c not in "\n\t" for c in value):
        raise Rejected(f"{field} contains control characters", field=field)
    return value


def parse_request(data: dict[str, Any], settings: Settings) -> CallbackRequest:
    """The validated form, or Rejected naming the first bad field."""
    lines = settings.routing.lines
    name = _text(data, "name", required=True, limit=100)
    raw_phone = _text(data, "phone", required=True, limit=40)
    country = _text(data, "country", required=False, limit=2)
    if country is not None:
        country = country.upper()
        if country not in lines:
            raise Rejected(f"country must be one of {', '.join(sorted(lines))}", field="country")
    email = _text(data, "email", required=False, limit=254)
    if email is not None and not EMAIL_RE.fullmatch(email):
        raise Rejected("email is not a valid e-mail address", field="email")
    description = _text(data, "description", required=False, limit=2000)
    assert name is not None and raw_phone is not None
    if "\n" in name:
        raise Rejected("name must be a single line", field="name")
    phone = normalize_phone(raw_phone, country)
    if phone is None:
        raise Rejected(
            "phone is not a phone number; write it with its country code, e.g. +50688887777",
            field="phone",
        )
    check_callable(phone, settings)
    return CallbackRequest(name, phone, country, email, description)


def check_callable(phone: str, settings: Settings) -> None:
    """Refuse numbers outside the lines' countries, of a risky kind, or of our own lines."""
    lines = settings.routing.lines
    if country_of_phone(phone) not in lines:
        raise Rejected(
            f"we only call numbers in {', '.join(sorted(lines))}",
            field="phone",
            code="number_not_allowed",
        )
    kind = phone_kind(phone)
    if kind not in ALLOWED_KINDS:
        raise Rejected(
            f"we do not call {KIND_LABELS.get(kind, kind)} numbers",
            field="phone",
            code="number_not_allowed",
        )
    own = {normalize_phone(line.number) for line in lines.values()}
    own.add(normalize_phone(settings.whatsapp.number))
    if phone in own:
        raise Rejected(
            "that is a CallMyWay support number", field="phone", code="number_not_allowed"
        )


def idempotency_key(value: str | None) -> str | None:
    """The Idempotency-Key header, validated; None when absent."""
    if value is None:
        return None
    if not KEY_RE.fullmatch(value):
        raise Rejected(
            "Idempotency-Key must be 1 to 200 printable ASCII characters", field="Idempotency-Key"
        )
    return value
