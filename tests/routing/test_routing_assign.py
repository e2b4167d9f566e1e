"""Assignment of new contacts: L1 of their line, after hours, severity and SLA due times."""

from __future__ import annotations

import pytest

from routing.assign import RULES, Rule, assign
from routing.resolve import resolve_line
from routing.sla import sla_due


def test_in_hours_default_severity(cfg, at):
    decision = resolve_line(cfg, phone="+525512345678")
    now = at(cfg.lines["MX"], "2026-11-30 10:00")
    result = assign(cfg, decision, now)
    assert (result.level, result.line.code, result.country) == ("L1", "MX", "MX")
    assert (result.after_hours, result.opens_at, result.severity) == (False, None, "S3")
    assert result.sla == sla_due(cfg, result.line, "S3", now)
    assert result.reasons == (
        "phone +525512345678 is in MX → line MX",
        "new contact → L1 of line MX",
        "severity S3 (default)",
    )
    assert result.flags == ()


def test_after_hours(cfg, at):
    line = cfg.lines["MX"]
    now = at(line, "2026-11-29 21:30")  # Sunday night
    result = assign(cfg, resolve_line(cfg, chosen_country="MX"), now)
    assert result.after_hours
    assert result.opens_at == at(line, "2026-11-30 06:00")
    assert "line MX closed at arrival; opens 2026-11-30 06:00 America/Mexico_City" in (
        result.reasons
    )
    assert result.flags == ("after_hours",)
    # The S3 clock is a business clock: it starts at the opening.
    assert result.sla.attention_due == at(line, "2026-11-30 08:00")


def test_after_hours_s1_runs_from_arrival(cfg, at):
    line = cfg.lines["CR"]
    now = at(line, "2026-11-29 21:30")
    result = assign(cfg, resolve_line(cfg), now, severity=" s1")
    assert (result.severity, result.after_hours) == ("S1", True)
    assert result.sla.attention_due == at(line, "2026-11-29 22:30")
    assert "S1 runs on a 24x7 clock: SLA counts from arrival" in result.reasons
    assert "severity S1" in result.reasons


def test_flags_of_the_decision_are_kept(cfg, at):
    decision = resolve_line(cfg, phone="+551155550123")
    result = assign(cfg, decision, at(cfg.lines["CR"], "2026-11-29 22:00"), severity="S2")
    assert result.country == "BR" and result.line.code == "CR"
    assert result.flags == ("country_without_line", "after_hours")
    assert result.reasons[: len(decision.reasons)] == decision.reasons


@pytest.mark.parametrize("severity", ["S9", "urgent", ""])
def test_bad_severity(cfg, at, severity):
    with pytest.raises(ValueError, match="is not a severity"):
        assign(cfg, resolve_line(cfg), at(cfg.lines["CR"], "2026-11-30 10:00"), severity)


def test_rules_are_data():
    assert all(isinstance(rule, Rule) for rule in RULES)
    assert [rule.level for rule in RULES if rule.level] == ["L1"]
