"""Tracking numbers: `CMW-NNNNNNN-D`, D a Damm check digit over the digits.

The Damm algorithm detects every single-digit error and every adjacent transposition, so a
mistyped number is never taken for another incident's. Pure functions; allocation of the serial
happens in the store inside the incident's transaction.
"""

from __future__ import annotations

import re

PREFIX = "CMW-"
MIN_DIGITS = 7
# Candidates in free text: the contract's shape, not preceded or followed by a word character.
_CANDIDATE = re.compile(r"(?<![\w-])CMW-([0-9]{7,})-([0-9])(?![\w-])", re.IGNORECASE)

# Totally anti-symmetric quasigroup of order 10 (Damm 2004).
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


def damm_digit(digits: str) -> int:
    """The Damm check digit of a string of decimal digits."""
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][ord(ch) - 48]
    return interim


def format_tracking(serial: int) -> str:
    """Serial 42 -> 'CMW-0000042-7'."""
    if serial < 0:
        raise ValueError("serial must not be negative")
    digits = f"{serial:0{MIN_DIGITS}d}"
    return f"{PREFIX}{digits}-{damm_digit(digits)}"


def parse_tracking(text: str) -> str | None:
    """The canonical tracking number if `text` is exactly one with a valid check digit."""
    match = _CANDIDATE.fullmatch(text.strip())
    if not match:
        return None
    return _valid(match)


def find_tracking(text: str) -> list[str]:
    """Valid tracking numbers in free text, in order, once each; bad check digits skipped."""
    found: list[str] = []
    for match in _CANDIDATE.finditer(text or ""):
        number = _valid(match)
        if number and number not in found:
            found.append(number)
    return found


def _valid(match: re.Match[str]) -> str | None:
    digits, check = match.group(1), match.group(2)
    if damm_digit(digits) != int(check):
        return None
    return f"{PREFIX}{digits}-{check}"
