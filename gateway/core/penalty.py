"""Invoice discounts of one month's SLA verdicts (seed, "Esquema de penalización"), pure.

Per site: `per_breach[severity]` percent for every incident not attended or not solved in time
(counted once even when it missed both), plus `site_per_point` per point of the site's compliance
below target, capped at `site_cap`. General invoice: `general_per_point` per point of the overall
compliance below target, capped at `general_cap`. No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from config.settings import PenaltySettings


def gap_points(compliance: float | None, target: float) -> float:
    """Points (percent) of compliance below target; 0 when met or when nothing was decided."""
    if compliance is None:
        return 0.0
    return round(max(0.0, target - compliance) * 100, 2)


def _capped(value: float, cap: float) -> tuple[float, bool]:
    return (round(cap, 2), True) if value > cap else (round(value, 2), False)


def site_discount(
    rule: PenaltySettings, breached_severities: list[str], compliance: float | None
) -> dict[str, Any]:
    """One site's discount: breached incidents by severity plus its own compliance gap."""
    per_breach = sum(rule.per_breach.get(s, 0.0) for s in breached_severities)
    points = gap_points(compliance, rule.target)
    per_point = rule.site_per_point * points
    discount, capped = _capped(per_breach + per_point, rule.site_cap)
    return {
        "breached": len(breached_severities),
        "per_breach_percent": round(per_breach, 2),
        "gap_points": points,
        "per_point_percent": round(per_point, 2),
        "discount_percent": discount,
        "capped": capped,
    }


def general_discount(rule: PenaltySettings, compliance: float | None) -> dict[str, Any]:
    """The general invoice's discount for the overall compliance gap."""
    points = gap_points(compliance, rule.target)
    discount, capped = _capped(rule.general_per_point * points, rule.general_cap)
    return {
        "compliance": compliance,
        "gap_points": points,
        "discount_percent": discount,
        "capped": capped,
    }


def penalty_sheet(
    rule: PenaltySettings,
    breaches: list[dict[str, Any]],
    line_compliance: Mapping[str, float | None],
    overall: float | None,
    line_names: Mapping[str, str],
) -> dict[str, Any]:
    """Per line the breached incidents and the discount; the general invoice's discount."""
    by_line: dict[str, Any] = {}
    for code in sorted(line_compliance):
        items = [b for b in breaches if b["line"] == code]
        for item in items:
            item["percent"] = rule.per_breach.get(item["severity"], 0.0)
        entry = site_discount(rule, [b["severity"] for b in items], line_compliance[code])
        by_line[code] = {
            "name": line_names.get(code, code),
            "compliance": line_compliance[code],
            **entry,
            "incidents": items,
        }
    rule_json = asdict(rule)
    rule_json["per_breach"] = dict(rule.per_breach)
    return {"rule": rule_json, "general": general_discount(rule, overall), "by_line": by_line}
