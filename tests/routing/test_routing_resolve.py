"""Which line a contact goes to: called line, phone country, chosen country, default."""

from __future__ import annotations

import pytest

from routing.resolve import resolve_line

LINE_NUMBERS = [
    ("MX", "+52 55 4170 8422"),
    ("CL", "+56 2 2760 9072"),
    ("CO", "+57 601 5189663"),
    ("US", "+1 (305) 644-5335"),
    ("CA", "+1 613 416 8671"),
    ("PE", "+51 1 6409850"),
    ("PA", "+507 836-6060"),
    ("GT", "+502 2375 0299"),
    ("SV", "+503 2113 0412"),
    ("CR", "+506 4000-4000"),
    ("DO", "+1 (829) 946-6346"),
]


@pytest.mark.parametrize(("code", "called"), LINE_NUMBERS)
def test_called_line_wins(cfg, code: str, called: str):
    # The caller's phone is Mexican and the form said Peru: the called line still wins.
    decision = resolve_line(cfg, phone="+525512345678", called=called, chosen_country="PE")
    assert decision.line.code == decision.country == code
    assert decision.phone == "+525512345678"
    assert decision.reasons[-1] == f"called {cfg.lines[code].number} → line {code}"
    assert decision.flags == ()


@pytest.mark.parametrize(
    ("phone", "code"),
    [
        ("whatsapp:+525512345678", "MX"),
        ("+56 2 2760 9072", "CL"),
        ("+573001234567", "CO"),
        ("+1 305 555 0123", "US"),
        ("+1 613 555 0123", "CA"),
        ("+1 809 555 0123", "DO"),
        ("+1 849 555 0123", "DO"),
        ("+51912345678", "PE"),
        ("+50760001234", "PA"),
        ("+50240001234", "GT"),
        ("+50370001234", "SV"),
        ("+50688887777", "CR"),
    ],
)
def test_phone_country(cfg, phone: str, code: str):
    decision = resolve_line(cfg, phone=phone, chosen_country="MX" if code != "MX" else "PE")
    assert decision.line.code == decision.country == code
    assert decision.flags == ()
    assert f"is in {code} → line {code}" in decision.reasons[0]


def test_phone_of_country_without_line(cfg):
    decision = resolve_line(cfg, phone="+551155550123")
    assert decision.line.code == "CR"  # default
    assert decision.country == "BR"
    assert decision.flags == ("country_without_line",)
    assert any("BR" in reason for reason in decision.reasons)


def test_phone_of_country_without_line_then_chosen_country(cfg):
    decision = resolve_line(cfg, phone="+551155550123", chosen_country="mx")
    assert (decision.line.code, decision.country) == ("MX", "BR")
    assert decision.flags == ("country_without_line",)


@pytest.mark.parametrize(
    ("kwargs", "line", "country", "flags"),
    [
        ({"phone": "call me"}, "CR", "CR", ("phone_unparsed",)),
        ({"phone": "call me", "chosen_country": "PE"}, "PE", "PE", ("phone_unparsed",)),
        ({"chosen_country": " pe "}, "PE", "PE", ()),
        ({"chosen_country": "AR"}, "CR", "AR", ("country_without_line",)),
        ({}, "CR", "CR", ()),
        ({"phone": "", "called": "", "chosen_country": ""}, "CR", "CR", ()),
        ({"called": "+50699999999", "phone": "+51912345678"}, "PE", "PE", ("called_unknown",)),
        ({"phone": "+80012345678"}, "CR", "CR", ("phone_without_country",)),
        ({"phone": "+15555550123", "chosen_country": "DO"}, "DO", "DO", ("phone_without_country",)),
    ],
)
def test_fallbacks_and_flags(cfg, kwargs, line, country, flags):
    decision = resolve_line(cfg, **kwargs)
    assert (decision.line.code, decision.country, decision.flags) == (line, country, flags)
    assert decision.reasons


def test_default_country_is_configurable(make_cfg):
    decision = resolve_line(make_cfg(default_country="MX"))
    assert decision.line.code == "MX"
    assert decision.reasons == ("default line MX",)
    assert decision.phone is None


def test_unparsed_phone_reason_names_it(cfg):
    decision = resolve_line(cfg, phone="12")
    assert decision.reasons[0] == "phone '12' could not be parsed"
    assert decision.phone is None
