"""Phone numbers: normalization to E.164, country of a number and kind of line.

Thin wrappers over `phonenumbers` so the rest of the gateway never handles its exceptions
or its numeric enums: every function takes and returns plain strings (or None).
"""

from __future__ import annotations

from functools import lru_cache

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType

# Channel prefixes Twilio and RFC 3966 put in front of the number itself.
_PREFIXES: tuple[str, ...] = ("whatsapp:", "tel:")

# Longer input is not a phone number; refusing it early bounds the parser's work.
_MAX_RAW_LENGTH = 64

# Region codes phonenumbers uses for numbers that belong to no country (+800, +883...).
_NON_GEOGRAPHIC: frozenset[str] = frozenset({"001", "ZZ"})

_KINDS: dict[int, str] = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "fixed",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_or_mobile",
    PhoneNumberType.PREMIUM_RATE: "premium",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.VOIP: "voip",
}

PHONE_KINDS: tuple[str, ...] = (
    "mobile",
    "fixed",
    "fixed_or_mobile",
    "premium",
    "toll_free",
    "voip",
    "other",
    "invalid",
)


def _strip(raw: str) -> str:
    text = raw.strip()
    lowered = text.lower()
    for prefix in _PREFIXES:
        if lowered.startswith(prefix):
            return text[len(prefix) :].strip()
    return text


def _parse(raw: str, region: str | None = None) -> PhoneNumber | None:
    text = _strip(raw)
    if not text or len(text) > _MAX_RAW_LENGTH:
        return None
    region = region.strip().upper() if region else None
    # "00" is the international prefix nearly everywhere in the seed's countries; without a
    # region phonenumbers cannot know that, so "0052 55 ..." would otherwise be rejected.
    if region is None and text.startswith("00"):
        text = "+" + text[2:]
    return _parse_text(text, region)


# Twilio sends numbers already in E.164 ("whatsapp:+50688887777"): the text normalize_phone
# parses is then the very E.164 string that country_of_phone, phone_kind and is_valid_phone
# parse next (routing, in the core), so one cached parse serves them all. The PhoneNumber
# objects are shared: nothing in this module modifies one. A small cache is enough, the
# calls for one contact follow each other within a request.
@lru_cache(maxsize=1024)
def _parse_text(text: str, region: str | None) -> PhoneNumber | None:
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException:
        return None


# E.164 strings this function returned: normalizing one again gives it back whatever the region
# (a leading "+" makes phonenumbers ignore the region). An adapter normalizes the sender, then
# routing asks again for the result in the database thread: answered here, not parsed twice.
_CANONICAL: dict[str, str] = {}
_CANONICAL_MAX = 8192


def normalize_phone(raw: str, region: str | None = None) -> str | None:
    """Return `raw` (any human or Twilio form) as E.164, or None if it is not a possible number."""
    if raw in _CANONICAL:
        return raw
    e164 = _normalize(raw, region)
    if e164 is not None:
        if len(_CANONICAL) >= _CANONICAL_MAX:
            _CANONICAL.clear()
        _CANONICAL[e164] = e164
    return e164


# Parsing costs tens of microseconds and the same customers write again and again: cache.
@lru_cache(maxsize=8192)
def _normalize(raw: str, region: str | None) -> str | None:
    number = _parse(raw, region)
    if number is None:
        return None
    # Mexico dropped the mobile "1" after +52 in 2019-2020, but WhatsApp still sends
    # "whatsapp:+521XXXXXXXXXX" for Mexican mobiles: the same subscriber as +52XXXXXXXXXX.
    national = str(number.national_number)
    if number.country_code == 52 and len(national) == 11 and national.startswith("1"):
        number = phonenumbers.PhoneNumber(country_code=52, national_number=int(national[1:]))
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@lru_cache(maxsize=8192)
def country_of_phone(e164: str) -> str | None:
    """Return the ISO alpha-2 country of a number (NANP split by area code), or None."""
    number = _parse(e164)
    if number is None:
        return None
    regions = phonenumbers.region_codes_for_country_code(number.country_code)
    if len(regions) == 1:
        # One country behind the code (+506, +52, +57, ...): that is the answer whether or not
        # the number is valid (e.g. Bogotá's pre-2021 "+57 1 ..." numbers), and phonenumbers
        # would give the same for a valid one: skip the costly pattern validation.
        region = regions[0]
    elif phonenumbers.is_valid_number(number):
        region = phonenumbers.region_code_for_number(number)
    else:
        # A shared country code (+1) with an invalid area code would make phonenumbers guess.
        region = None
    if region is None or region in _NON_GEOGRAPHIC:
        return None
    return region


@lru_cache(maxsize=8192)
def phone_kind(e164: str) -> str:
    """Return the kind of a number: one of PHONE_KINDS ("invalid" when not a valid number)."""
    number = _parse(e164)
    if number is None or not phonenumbers.is_valid_number(number):
        return "invalid"
    return _KINDS.get(phonenumbers.number_type(number), "other")


@lru_cache(maxsize=8192)
def is_valid_phone(e164: str) -> bool:
    """Return whether a number is valid (assigned numbering range), not merely possible."""
    number = _parse(e164)
    return number is not None and phonenumbers.is_valid_number(number)
