"""SLA clocks: business arithmetic, due times, severity changes, pauses, breach and risk."""

from __future__ import annotations

from datetime import timedelta

import pytest

from routing.sla import (
    SlaDue,
    SlaState,
    clock_add,
    clock_elapsed,
    clock_starts_at,
    met_sla,
    sla_due,
    sla_state,
)

H = timedelta(hours=1)
M = timedelta(minutes=1)
WEEKDAYS_ONLY = {5: "closed", 6: "closed"}

# MX line, local times; 2026-11-30 is a Monday, 11-27 a Friday.
BUSINESS = [
    ("2026-11-30 10:00", 2 * H, "2026-11-30 12:00", None),  # within the day
    ("2026-11-30 20:00", 2 * H, "2026-12-01 07:00", None),  # over the night
    ("2026-11-30 20:00", 1 * H, "2026-11-30 21:00", None),  # exactly at closing
    ("2026-11-30 03:00", 1 * H, "2026-11-30 07:00", None),  # closed at start
    ("2026-11-30 03:00", 0 * H, "2026-11-30 06:00", None),  # nothing yet: the opening
    ("2026-11-30 10:00", 0 * H, "2026-11-30 10:00", None),
    ("2026-11-27 20:30", 4 * H, "2026-11-28 10:30", None),  # into Saturday 07:00-17:00
    ("2026-11-28 16:00", 2 * H, "2026-11-29 08:00", None),  # Saturday → Sunday
    ("2026-11-27 20:30", 4 * H, "2026-11-30 09:30", WEEKDAYS_ONLY),  # over the weekend
    ("2026-11-28 12:00", 1 * H, "2026-11-30 07:00", WEEKDAYS_ONLY),  # from a closed day
    ("2026-11-30 10:00", 40 * H, "2026-12-02 20:00", None),  # several days
    ("2026-11-30 10:00", 15 * H + 30 * M, "2026-12-01 10:30", None),
]


@pytest.mark.parametrize(("start", "duration", "due", "hours"), BUSINESS)
def test_business_clock_add(make_line, at, start, duration, due, hours):
    line = make_line("MX", hours)
    assert clock_add(line, "business", at(line, start), duration) == at(line, due)


@pytest.mark.parametrize(("start", "duration", "due", "hours"), BUSINESS)
def test_business_clock_elapsed_is_the_inverse(make_line, at, start, duration, due, hours):
    line = make_line("MX", hours)
    assert clock_elapsed(line, "business", at(line, start), at(line, due)) == duration


def test_24x7_clock(make_line, at):
    line = make_line("MX")
    start = at(line, "2026-11-28 23:00")
    assert clock_add(line, "24x7", start, 3 * H) == start + 3 * H
    assert clock_elapsed(line, "24x7", start, start + 3 * H) == 3 * H
    assert clock_elapsed(line, "24x7", start, start - H) == timedelta(0)


def test_clock_errors(make_line, at):
    line = make_line("MX")
    start = at(line, "2026-11-30 10:00")
    with pytest.raises(ValueError, match="unknown SLA clock"):
        clock_add(line, "office", start, H)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="negative"):
        clock_add(line, "business", start, -H)
    with pytest.raises(ValueError, match="never open"):
        clock_add(make_line("MX", "closed"), "business", start, H)


def test_business_clock_is_long_range(make_line, at):
    # 150 weekdays of 15 h, weekends closed, holidays ignored: 30 weeks exactly.
    line = make_line("MX", WEEKDAYS_ONLY, holidays=False)
    start = at(line, "2026-11-30 06:00")
    due = clock_add(line, "business", start, 150 * 15 * H)
    assert due == at(line, "2027-06-25 21:00")
    assert clock_elapsed(line, "business", start, due) == 150 * 15 * H


@pytest.mark.parametrize(
    ("severity", "registered", "attention", "solution"),
    [
        ("S1", "2026-11-30 10:00", "2026-11-30 11:00", "2026-11-30 13:00"),
        ("S2", "2026-11-30 10:00", "2026-11-30 11:30", "2026-11-30 14:00"),
        ("S3", "2026-11-30 10:00", "2026-11-30 12:00", "2026-11-30 14:00"),
        ("S4", "2026-11-30 10:00", "2026-11-30 12:00", "2026-11-30 14:00"),
        # After hours: S1 runs 24x7 from arrival, the others from the opening.
        ("S1", "2026-11-30 23:00", "2026-12-01 00:00", "2026-12-01 02:00"),
        ("S3", "2026-11-30 23:00", "2026-12-01 08:00", "2026-12-01 10:00"),
        ("S2", "2026-11-30 20:00", "2026-12-01 06:30", "2026-12-01 09:00"),
    ],
)
def test_sla_due(cfg, at, severity, registered, attention, solution):
    line = cfg.lines["MX"]
    due = sla_due(cfg, line, severity, at(line, registered))
    assert due == SlaDue(at(line, attention), at(line, solution))


def test_severity_change_recomputes_from_registration(cfg, at):
    line = cfg.lines["MX"]
    registered = at(line, "2026-11-30 10:00")
    assert sla_due(cfg, line, "S3", registered).solution_due == at(line, "2026-11-30 14:00")
    # Raised to S1 at 11:00: both times are counted from registration again, on S1's clock.
    raised = sla_due(cfg, line, "S1", registered)
    assert raised == SlaDue(at(line, "2026-11-30 11:00"), at(line, "2026-11-30 13:00"))
    lowered = sla_due(cfg, line, "S4", registered)
    assert lowered == SlaDue(at(line, "2026-11-30 12:00"), at(line, "2026-11-30 14:00"))


def test_unknown_severity(cfg, at):
    with pytest.raises(ValueError, match="no SLA target for severity 'S9'"):
        sla_due(cfg, cfg.lines["MX"], "S9", at(cfg.lines["MX"], "2026-11-30 10:00"))


@pytest.mark.parametrize(
    ("severity", "pauses", "now", "solution"),
    [
        ("S3", [("11:00", "12:00")], None, "2026-11-30 15:00"),
        ("S3", [("11:00", "12:00"), ("11:30", "12:30")], None, "2026-11-30 15:30"),  # merged
        ("S3", [("13:00", None)], "13:30", "2026-11-30 14:30"),  # open pause up to now
        ("S3", [("12:00", "11:00")], None, "2026-11-30 14:00"),  # backwards: ignored
        # A pause over the night costs no business time but all of it on a 24x7 clock.
        ("S3", [("20:30", "+05:00")], None, "2026-11-30 14:30"),
        ("S1", [("20:30", "+05:00")], None, "2026-11-30 21:30"),
        ("S1", [("11:00", "11:45")], None, "2026-11-30 13:45"),
    ],
)
def test_pauses_extend_the_solution_clock(cfg, at, severity, pauses, now, solution):
    line = cfg.lines["MX"]
    day, next_day = "2026-11-30", "2026-12-01"

    def moment(text: str | None):
        if text is None:
            return None
        return at(line, f"{next_day} {text[1:]}" if text.startswith("+") else f"{day} {text}")

    registered = at(line, f"{day} 10:00")
    due = sla_due(
        cfg,
        line,
        severity,
        registered,
        pauses=[(moment(b), moment(e)) for b, e in pauses],
        now=moment(now),
    )
    assert due.solution_due == at(line, solution)
    assert due.attention_due == sla_due(cfg, line, severity, registered).attention_due


def test_open_pause_needs_now(cfg, at):
    line = cfg.lines["MX"]
    start = at(line, "2026-11-30 10:00")
    with pytest.raises(ValueError, match="needs `now`"):
        sla_due(cfg, line, "S3", start, pauses=[(start + H, None)])


@pytest.mark.parametrize(
    ("severity", "registered", "starts"),
    [
        ("S1", "2026-11-30 23:00", "2026-11-30 23:00"),
        ("S3", "2026-11-30 23:00", "2026-12-01 06:00"),
        ("S3", "2026-11-30 10:00", "2026-11-30 10:00"),
    ],
)
def test_clock_starts_at(cfg, at, severity, registered, starts):
    line = cfg.lines["MX"]
    assert clock_starts_at(cfg, line, severity, at(line, registered)) == at(line, starts)


F = False
T = True


@pytest.mark.parametrize(
    ("now", "attended", "resolved", "paused", "expected"),
    [
        # minutes after registration; attention due at 60, solution at 180
        (10, None, None, F, SlaState(F, F, F, F)),
        (45, None, None, F, SlaState(F, F, T, F)),  # 15 min left: at risk
        (44, None, None, F, SlaState(F, F, F, F)),
        (60, None, None, F, SlaState(F, F, T, F)),  # due now: not yet past
        (61, None, None, F, SlaState(T, F, F, F)),
        (61, 30, None, F, SlaState(F, F, F, F)),
        (170, 30, None, F, SlaState(F, F, F, T)),
        (181, 30, None, F, SlaState(F, T, F, F)),
        (181, 30, None, T, SlaState(F, F, F, F)),  # paused: never breached while paused
        (170, 30, None, T, SlaState(F, F, F, F)),
        (300, 70, 200, F, SlaState(T, T, F, F)),  # done late stays breached
        (300, 50, 170, F, SlaState(F, F, F, F)),
        (300, 50, 170, T, SlaState(F, F, F, F)),
        (61, 65, None, F, SlaState(T, F, F, F)),
    ],
)
def test_sla_state(utc, now, attended, resolved, paused, expected):
    base = utc("2026-11-30 16:00")

    def after(minutes):
        return None if minutes is None else base + minutes * M

    state = sla_state(
        base + 60 * M, base + 180 * M, after(attended), after(resolved), after(now), paused=paused
    )
    assert state == expected


def test_sla_state_window(utc):
    base = utc("2026-11-30 16:00")
    state = sla_state(base + H, base + 3 * H, None, None, base, at_risk_window=2 * H)
    assert state == SlaState(False, False, True, False)


@pytest.mark.parametrize(
    ("attended", "resolved", "met"),
    [(30, 170, True), (60, 180, True), (61, 170, False), (30, 181, False), (None, 100, False),
     (30, None, False)],
)  # fmt: skip
def test_met_sla(utc, attended, resolved, met):
    base = utc("2026-11-30 16:00")

    def after(minutes):
        return None if minutes is None else base + minutes * M

    assert met_sla(base + 60 * M, base + 180 * M, after(attended), after(resolved)) is met
