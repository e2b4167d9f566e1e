"""One parse per E.164 number: normalize_phone, country, kind and validity share it, same results.

Twilio's "whatsapp:+NNN" senders are already E.164; the adapter normalizes the sender and the
core's routing then asks the country (and normalizes again) of the very same string. The shared
parse must give exactly what parsing each time gives, NANP area codes included.
"""

from __future__ import annotations

import phonenumbers
import pytest
from phonenumbers import NumberParseException

from routing import phone
from routing.phone import country_of_phone, is_valid_phone, normalize_phone, phone_kind

NUMBERS = [
    "+13056445335",  # Miami (US line)
    "+13055550123",
    "+14165550123",  # Toronto (CA)
    "+16134168671",  # Ottawa, the CA line
    "+18095550123",  # Dominican Republic (+1 809)
    "+18299466346",  # the DO line (+1 829)
    "+18495550123",
    "+17875550123",  # Puerto Rico
    "+18765550123",  # Jamaica
    "+15555550123",  # invalid NANP area code: no country
    "+18002221222",  # toll free
    "+5215512345678",  # WhatsApp's legacy Mexican mobile form (+52 1 ...)
    "+525512345678",
    "+525541708422",
    "+5715189663",  # Bogotá before 2021: invalid, still Colombia
    "+576015189663",
    "+573001234567",
    "+50640004000",
    "+50688887777",
    "+50223750299",
    "+50321130412",
    "+5078366060",
    "+5116409850",
    "+56227609072",
    "+541115123456",  # Argentina: national-prefix rules apply even after "+"
    "+5491112345678",
    "+390612345678",  # Italy: leading zero kept
    "+442079460958",
    "+34612345678",
    "+551155550123",
    "+80012345678",  # international freephone: no country
    "+1",
    "+999123",
    "+52" + "5" * 30,
]


def _reference_parse(text: str) -> phonenumbers.PhoneNumber | None:
    try:
        return phonenumbers.parse(text, None)
    except NumberParseException:
        return None


def _reference(raw: str) -> tuple[str | None, str | None, str, bool]:
    """normalize / country / kind / valid as computed with a fresh, uncached parse each time."""
    number = _reference_parse(raw)
    e164 = None
    if number is not None:
        national = str(number.national_number)
        if number.country_code == 52 and len(national) == 11 and national.startswith("1"):
            number = phonenumbers.PhoneNumber(country_code=52, national_number=int(national[1:]))
        if phonenumbers.is_possible_number(number):
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    target = e164 or raw
    parsed = _reference_parse(target)
    if parsed is None:
        country, kind, valid = None, "invalid", False
    else:
        valid = phonenumbers.is_valid_number(parsed)
        if valid:
            region = phonenumbers.region_code_for_number(parsed)
        else:
            regions = phonenumbers.region_codes_for_country_code(parsed.country_code)
            region = regions[0] if len(regions) == 1 else None
        country = None if region in (None, "001", "ZZ") else region
        kind = phone._KINDS.get(phonenumbers.number_type(parsed), "other") if valid else "invalid"
    return e164, country, kind, valid


def _clear() -> None:
    for cached in (phone._normalize, country_of_phone, phone_kind, is_valid_phone):
        cached.cache_clear()
    phone._parse_text.cache_clear()
    phone._CANONICAL.clear()


@pytest.mark.parametrize("number", NUMBERS)
@pytest.mark.parametrize("order", ["adapter_first", "routing_first"])
def test_same_results_as_parsing_each_time(number: str, order: str) -> None:
    _clear()
    e164, country, kind, valid = _reference(number)
    target = e164 or number
    if order == "routing_first":  # routing asks before any adapter normalized the number
        assert country_of_phone(target) == country
        assert phone_kind(target) == kind
        assert is_valid_phone(target) is valid
    assert normalize_phone("whatsapp:" + number) == e164
    assert normalize_phone(number) == e164
    assert country_of_phone(target) == country
    assert phone_kind(target) == kind
    assert is_valid_phone(target) is valid
    if e164 is not None:
        assert normalize_phone(e164) == e164
        # The shortcut for an E.164 result asked again rests on this: parsed afresh, with or
        # without a region, it is its own normal form.
        _clear()
        assert normalize_phone(e164) == e164
        _clear()
        assert normalize_phone(e164, "MX") == e164


def test_the_nanp_split_survives_the_shared_parse() -> None:
    _clear()
    for number, country in [
        ("+13055550123", "US"),
        ("+14165550123", "CA"),
        ("+18095550123", "DO"),
        ("+15555550123", None),
    ]:
        assert normalize_phone("whatsapp:" + number) == number
        assert country_of_phone(number) == country


def test_a_whatsapp_sender_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear()
    calls: list[str] = []
    real = phonenumbers.parse

    def counting(text: str, region: str | None = None) -> phonenumbers.PhoneNumber:
        calls.append(text)
        return real(text, region)

    monkeypatch.setattr(phonenumbers, "parse", counting)
    # What the WhatsApp adapter and then the core's routing (resolve_line) ask for one message.
    e164 = normalize_phone("whatsapp:+18095550123")
    assert e164 == "+18095550123"
    assert normalize_phone(e164) == e164
    assert country_of_phone(e164) == "DO"
    assert phone_kind(e164) == "fixed_or_mobile"
    assert is_valid_phone(e164)
    assert calls == ["+18095550123"]
    # A number that normalization changes (+52 1 ...) is parsed again in its new form.
    assert normalize_phone("whatsapp:+5215512345678") == "+525512345678"
    assert country_of_phone("+525512345678") == "MX"
    assert calls[1:] == ["+5215512345678", "+525512345678"]
