"""Penalty arithmetic (pure) and its shipped defaults: per breached incident by severity, per
point below target on the site's and the general invoice, and the caps."""

from __future__ import annotations

from config.loader import load_settings
from config.settings import PenaltySettings
from gateway.core.penalty import gap_points, general_discount, penalty_sheet, site_discount
from gateway.web.reports import safe_cell

RULE = PenaltySettings(
    target=0.98,
    per_breach={"S1": 2.0, "S2": 1.5, "S3": 1.0, "S4": 0.5},
    site_per_point=0.5,
    general_per_point=1.0,
    site_cap=5.0,
    general_cap=3.0,
)


def test_shipped_defaults() -> None:
    rule = load_settings({}).penalties
    assert rule.target == 0.98
    assert dict(rule.per_breach) == {"S1": 2.0, "S2": 1.5, "S3": 1.0, "S4": 0.5}
    assert (rule.site_per_point, rule.general_per_point) == (0.0, 1.0)
    assert (rule.site_cap, rule.general_cap) == (10.0, 10.0)


def test_gap_points() -> None:
    assert gap_points(0.95, 0.98) == 3.0
    assert gap_points(0.99, 0.98) == 0.0
    assert gap_points(None, 0.98) == 0.0  # nothing decided: no gap


def test_site_discount_adds_breaches_and_gap_then_caps() -> None:
    # S1 + S3 = 3 %; compliance 96 % is 2 points below: + 1 %; 4 % under the 5 % cap.
    entry = site_discount(RULE, ["S1", "S3"], 0.96)
    assert entry == {
        "breached": 2,
        "per_breach_percent": 3.0,
        "gap_points": 2.0,
        "per_point_percent": 1.0,
        "discount_percent": 4.0,
        "capped": False,
    }
    capped = site_discount(RULE, ["S1", "S1", "S2"], 0.5)  # 5.5 % + 24 % -> 5 %
    assert capped["discount_percent"] == 5.0 and capped["capped"] is True
    assert site_discount(RULE, [], 1.0)["discount_percent"] == 0.0


def test_general_discount() -> None:
    assert general_discount(RULE, 0.97)["discount_percent"] == 1.0
    assert general_discount(RULE, 0.9) == {
        "compliance": 0.9,
        "gap_points": 8.0,
        "discount_percent": 3.0,
        "capped": True,
    }


def test_sheet_lists_each_line_and_its_incidents() -> None:
    breaches = [
        {"tracking": "CMW-0000001-3", "line": "MX", "severity": "S1"},
        {"tracking": "CMW-0000002-1", "line": "CR", "severity": "S4"},
    ]
    sheet = penalty_sheet(
        RULE, breaches, {"MX": 0.5, "CR": 0.99, "US": None}, 0.9, {"MX": "México"}
    )
    assert sheet["by_line"]["MX"]["name"] == "México"
    assert sheet["by_line"]["MX"]["incidents"][0]["percent"] == 2.0
    assert sheet["by_line"]["CR"]["discount_percent"] == 0.5
    assert sheet["by_line"]["US"]["discount_percent"] == 0.0
    assert sheet["general"]["discount_percent"] == 3.0
    assert sheet["rule"]["per_breach"]["S4"] == 0.5


def test_csv_cells_never_run_as_formulas() -> None:
    for text in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert safe_cell(text) == "'" + text
    assert safe_cell("CMW-0000001-3") == "CMW-0000001-3"
    assert safe_cell(None) == ""
