"""Severity from the stated impact (the seed's S1..S4) and parsing agents' input."""

from __future__ import annotations

import inspect

import pytest

from routing import severity as severity_module
from routing.severity import IMPACT_MATRIX, parse_severity, severity_from_impact


@pytest.mark.parametrize(
    ("users", "can_work", "severity"),
    [
        ("company", False, "S1"),
        ("company", True, "S2"),
        ("several", False, "S2"),
        ("several", True, "S3"),
        ("one", False, "S3"),
        ("one", True, "S4"),
        (" Company ", False, "S1"),
    ],
)
def test_severity_matrix(users: str, can_work: bool, severity: str):
    assert severity_from_impact(users, can_work) == severity


def test_matrix_is_complete_and_s1_only_for_the_whole_company():
    assert len(IMPACT_MATRIX) == 6
    assert [key for key, value in IMPACT_MATRIX.items() if value == "S1"] == [("company", False)]


@pytest.mark.parametrize("users", ["", "all", "everyone", "1", "URGENT"])
def test_unknown_users(users: str):
    with pytest.raises(ValueError, match="unknown users affected"):
        severity_from_impact(users, False)


@pytest.mark.parametrize(
    ("value", "severity"),
    [("S1", "S1"), ("s2", "S2"), ("S2 ", "S2"), (" s3", "S3"), ("S4", "S4")],
)
def test_parse_severity(value: str, severity: str):
    assert parse_severity(value) == severity


@pytest.mark.parametrize("value", ["", "S0", "S5", "2", "critical", "S 1", "S1S1"])
def test_parse_severity_errors(value: str):
    with pytest.raises(ValueError, match="is not a severity"):
        parse_severity(value)


def test_no_keyword_guessing():
    # Keywords never set a severity: nothing public here takes a message's text.
    public = {
        name
        for name, value in vars(severity_module).items()
        if inspect.isfunction(value) and not name.startswith("_")
    }
    assert public == {"severity_from_impact", "parse_severity"}
