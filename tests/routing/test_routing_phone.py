"""Phone normalization, country of a number (NANP split) and kind, on the seed's 11 lines."""

from __future__ import annotations

import pytest

from routing.phone import PHONE_KINDS, country_of_phone, is_valid_phone, normalize_phone, phone_kind

# The seed's numbers exactly as printed, what they normalize to, and whether phonenumbers
# finds them valid (an assigned numbering range), not only possible.
SEED_NUMBERS = [
    # (line, as printed in the seed, E.164, country, valid, kind)
    ("MX", "+5255 4170 8422", "+525541708422", "MX", True, "fixed_or_mobile"),
    ("CL", "+56 227609072", "+56227609072", "CL", True, "fixed_or_mobile"),
    ("CO", "+57 15189663", "+5715189663", "CO", False, "invalid"),  # pre-2021 Bogotá
    ("US", "+1-305-644-5335", "+13056445335", "US", True, "fixed_or_mobile"),
    ("US", "+1 305 644 5535", "+13056445535", "US", True, "fixed_or_mobile"),  # page footer
    ("CA", "+1 6134168671", "+16134168671", "CA", True, "fixed_or_mobile"),
    ("PE", "+51 16409850", "+5116409850", "PE", True, "fixed"),
    ("PA", "+507 8366060", "+5078366060", "PA", True, "fixed"),
    ("GT", "+ 502 (2) 3750299", "+50223750299", "GT", True, "fixed"),
    ("SV", "+503 (211) 30412", "+50321130412", "SV", True, "fixed"),
    ("CR", "+506 40004000", "+50640004000", "CR", True, "voip"),
    ("CR", "+506 4000-4000", "+50640004000", "CR", True, "voip"),  # WhatsApp, page footer
    ("DO", "+1 (829) 9466346", "+18299466346", "DO", True, "fixed_or_mobile"),
]


@pytest.mark.parametrize(("code", "printed", "e164", "country", "valid", "kind"), SEED_NUMBERS)
def test_seed_numbers(code: str, printed: str, e164: str, country: str, valid: bool, kind: str):
    assert normalize_phone(printed) == e164
    assert country_of_phone(e164) == country == code
    assert is_valid_phone(e164) is valid
    assert phone_kind(e164) == kind


def test_bogota_new_numbering_is_valid():
    # Since September 2021 Bogotá fixed numbers are "601" + 7 digits.
    assert normalize_phone("+57 601 5189663") == "+576015189663"
    assert is_valid_phone("+576015189663")
    assert phone_kind("+576015189663") == "fixed"
    assert country_of_phone("+576015189663") == "CO"


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("whatsapp:+50640004000", None, "+50640004000"),
        ("WhatsApp:+50640004000", None, "+50640004000"),
        ("tel:+1-305-644-5335", None, "+13056445335"),
        ("+1 (829) 946-6346", None, "+18299466346"),
        ("0052 55 4170 8422", None, "+525541708422"),
        ("  +52-55-4170-8422  ", None, "+525541708422"),
        ("+52.55.4170.8422", None, "+525541708422"),
        ("836-6060", "PA", "+5078366060"),
        ("(2) 2760 9072", "cl", "+56227609072"),
        ("011 52 55 4170 8422", "US", "+525541708422"),
        ("305 644 5335", "US", "+13056445335"),
        ("", None, None),
        ("   ", None, None),
        ("whatsapp:", None, None),
        ("hello", None, None),
        ("+1", None, None),
        ("12345", None, None),
        ("305 644 5335", None, None),  # no country code and no region
        ("+5255417084221234567890", None, None),  # too long to be possible
        ("+52" + "5" * 100, None, None),
    ],
)
def test_normalize_phone(raw: str, region: str | None, expected: str | None):
    assert normalize_phone(raw, region) == expected


@pytest.mark.parametrize(
    ("e164", "country"),
    [
        ("+13055550123", "US"),  # Miami
        ("+12125550123", "US"),
        ("+16135550123", "CA"),  # Ottawa
        ("+14165550123", "CA"),  # Toronto
        ("+16045550123", "CA"),  # Vancouver
        ("+18095550123", "DO"),
        ("+18295550123", "DO"),
        ("+18495550123", "DO"),
        ("+17875550123", "PR"),
        ("+18765550123", "JM"),
        ("+15555550123", None),  # not a valid NANP area code: no guess
        ("+80012345678", None),  # international freephone belongs to no country
        ("+5715189663", "CO"),  # invalid, but +57 is Colombia's alone
        ("+551155550123", "BR"),
        ("not a number", None),
    ],
)
def test_country_of_phone_nanp_split(e164: str, country: str | None):
    assert country_of_phone(e164) == country


@pytest.mark.parametrize(
    ("e164", "kind"),
    [
        ("+573001234567", "mobile"),
        ("+50688887777", "mobile"),
        ("+5116409850", "fixed"),
        ("+13056445335", "fixed_or_mobile"),
        ("+19005551234", "premium"),
        ("+529001234567", "premium"),
        ("+18002221222", "toll_free"),
        ("+528001234567", "toll_free"),
        ("+50640001234", "voip"),
        ("+80012345678", "toll_free"),
        ("+15555550123", "invalid"),
        ("+5715189663", "invalid"),
        ("garbage", "invalid"),
    ],
)
def test_phone_kind(e164: str, kind: str):
    assert phone_kind(e164) == kind
    assert kind in PHONE_KINDS


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("whatsapp:+5215512345678", "+525512345678"),  # WhatsApp's legacy Mexican mobile form
        ("+525512345678", "+525512345678"),
    ],
)
def test_mexican_mobile_legacy_one_is_dropped(raw: str, e164: str) -> None:
    assert normalize_phone(raw) == e164
    assert country_of_phone(e164) == "MX"
