"""Severities S1..S4: from the customer's stated impact, and parsed from agents' input.

Keywords in a message never set a severity, least of all S1: an S1 pages people and runs a
1 h / 3 h clock, so it must come from a stated impact or from an agent, never from a guess.
"""

from __future__ import annotations

from routing.model import SEVERITIES, Severity

# The seed defines the severities by how much of the customer is affected and whether work
# can go on ("la cantidad de usuarios afectados y el nivel de interrupción"):
#   S1 Crítica: equipment not operational, the Company's work seriously affected, no
#               alternative                          -> whole company, cannot work
#   S2 Alta:    equipment seriously affected          -> whole company but can work, or
#                                                        several users who cannot work
#   S3 Normal:  operations affected but work goes on  -> several users who can work, or
#                                                        one user who cannot work
#   S4 Baja:    minimal impact, requests and queries  -> one user who can work
#
#                    cannot work   can work
#   company              S1           S2
#   several              S2           S3
#   one                  S3           S4
IMPACT_MATRIX: dict[tuple[str, bool], Severity] = {
    ("company", False): "S1",
    ("company", True): "S2",
    ("several", False): "S2",
    ("several", True): "S3",
    ("one", False): "S3",
    ("one", True): "S4",
}

USERS_AFFECTED: tuple[str, ...] = ("one", "several", "company")


def severity_from_impact(users: str, can_work: bool) -> Severity:
    """Return the severity for who is affected ("one"/"several"/"company") and if they can work."""
    key = users.strip().lower()
    if key not in USERS_AFFECTED:
        raise ValueError(
            f"unknown users affected '{users}': use one of {', '.join(USERS_AFFECTED)}"
        )
    return IMPACT_MATRIX[(key, bool(can_work))]


def parse_severity(value: str) -> Severity:
    """Return "S1".."S4" from an agent's or form's input ("s2", " S2 "); ValueError otherwise."""
    text = value.strip().upper() if isinstance(value, str) else ""
    for severity in SEVERITIES:
        if text == severity:
            return severity
    raise ValueError(f"'{value}' is not a severity: use one of {', '.join(SEVERITIES)}")
