"""What a customer's message on a resolved or closed incident means (pure table tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from gateway.core.feedback import classify_follow_up, csat_score, is_thanks, reply_part

NOW = datetime(2026, 12, 5, 15, 0, tzinfo=UTC)
DAY = timedelta(days=1)
WEEK = timedelta(days=7)


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("5", 5),
        (" 4 ", 4),
        ("3.", 3),
        ("5!", 5),
        ("4/5", 4),
        ("4 de 5", 4),
        ("5 out of 5", 5),
        ("2 estrellas", 2),
        ("5 ⭐", 5),
        ("⭐⭐⭐", 3),
        ("5\ufe0f\u20e3", 5),
        ("1", 1),
        ("0", None),
        ("6", None),
        ("10", None),
        ("5 pero sigue fallando", None),
        ("le doy un 5", None),
        ("", None),
        ("4\n\nEl lun, 30 nov 2026 a las 10:00, Soporte escribió:\n> Del 1 al 5...", 4),
        ("5\n> ¿Qué tan satisfecho quedó?", 5),
    ],
)
def test_csat_score(text: str, score: int | None) -> None:
    assert csat_score(text) == score


@pytest.mark.parametrize(
    ("text", "thanks"),
    [
        ("gracias", True),
        ("Muchas gracias!!", True),
        ("ok", True),
        ("OK, gracias", True),
        ("👍", True),
        ("🙏🙏", True),
        ("listo, muchas gracias 😊", True),
        ("Thank you!", True),
        ("thanks", True),
        ("perfecto", True),
        ("no gracias", False),
        ("gracias pero sigue sin tono", False),
        ("ok, y la factura?", False),
        ("hola", False),
        ("", False),
        ("gracias " * 10, False),  # long: read by an agent
        ("Gracias\n\nOn Mon, Nov 30, 2026 Soporte wrote:\n> resolved", True),
    ],
)
def test_is_thanks(text: str, thanks: bool) -> None:
    assert is_thanks(text) is thanks


def test_reply_part_stops_at_the_quote() -> None:
    text = "Sigue igual.\nSaludos\n\n-----Mensaje original-----\nDe: soporte@callmyway.com"
    assert reply_part(text) == "Sigue igual.\nSaludos"


@pytest.mark.parametrize(
    ("text", "status", "resolved_ago", "closed_ago", "files", "expected"),
    [
        # A score within the week after resolving is the rating; the incident stays resolved.
        ("5", "resolved", DAY, None, False, ("csat", 5)),
        ("3", "closed", 6 * DAY, DAY, False, ("csat", 3)),
        ("4", "resolved", 8 * DAY, None, False, ("message", None)),  # too late: a message
        # A bare thanks on a recently resolved or closed incident is recorded, never queued.
        ("gracias", "closed", 2 * DAY, DAY, False, ("thanks", None)),
        ("👍", "resolved", DAY, None, False, ("thanks", None)),
        ("gracias", "closed", 20 * DAY, 8 * DAY, False, ("message", None)),
        ("gracias", "closed", 20 * DAY, 6 * DAY, False, ("thanks", None)),  # counted from closure
        # Anything else reopens (resolved) or follows up (closed).
        ("Sigue sin funcionar", "resolved", DAY, None, False, ("message", None)),
        ("5", "resolved", DAY, None, True, ("message", None)),  # a photo is read by an agent
        # Open incidents take no ratings: "5" there is an answer to the agent.
        ("5", "in_progress", None, None, False, ("message", None)),
        ("gracias", "waiting_customer", None, None, False, ("message", None)),
    ],
)
def test_classify_follow_up(
    text: str,
    status: str,
    resolved_ago: timedelta | None,
    closed_ago: timedelta | None,
    files: bool,
    expected: tuple[str, int | None],
) -> None:
    got = classify_follow_up(
        text,
        status=status,
        resolved_at=NOW - resolved_ago if resolved_ago else None,
        closed_at=NOW - closed_ago if closed_ago else None,
        now=NOW,
        csat_window=WEEK,
        thanks_window=WEEK,
        has_files=files,
    )
    assert got == expected
