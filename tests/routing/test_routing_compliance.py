"""SLA verdicts, hand-computed: both clocks, DST, holidays, pauses, after-hours arrival,
severity changes (the budget of the severity in force) and incidents open at the month's end.

Seed hours (local): Monday-Friday 06:00-21:00, Saturday-Sunday 07:00-17:00. SLA table here:
S1 1 h / 3 h on 24x7, S3 2 h / 4 h on business hours. 2026-11-30 is a Monday; 2026-11-16 is
Mexico's Revolution Day (a holiday); the US leaves daylight time on 2026-11-01 at 02:00.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from routing.compliance import History, month_bounds, verdict
from routing.model import SlaTarget
from routing.sla import sla_due

H = timedelta(hours=1)
M = timedelta(minutes=1)
SLA = {
    "S1": SlaTarget(1 * H, 3 * H, "24x7"),
    "S3": SlaTarget(2 * H, 4 * H, "business"),
}


@pytest.fixture
def setup(make_cfg, make_line, at):
    cfg = make_cfg()
    cfg = type(cfg)(lines=cfg.lines, default_country="CR", sla=SLA)

    def judge(code, registered, severity, *, changes=(), pauses=(), attended=None, resolved=None,
              now="2026-12-15 12:00"):  # fmt: skip
        line = cfg.lines[code]
        reg = at(line, registered)
        history = History(
            registered_at=reg,
            severities=((reg, severity), *((at(line, t), s) for t, s in changes)),
            pauses=tuple((at(line, b), at(line, e) if e else None) for b, e in pauses),
            attended_at=at(line, attended) if attended else None,
            resolved_at=at(line, resolved) if resolved else None,
        )
        return verdict(cfg, line, history, at(line, now)), line

    return judge, cfg


def test_24x7_met(setup, at):
    judge, _ = setup
    v, line = judge(
        "MX", "2026-11-30 10:00", "S1", attended="2026-11-30 10:45", resolved="2026-11-30 12:30"
    )
    assert v.attention.due == at(line, "2026-11-30 11:00")
    assert v.solution.due == at(line, "2026-11-30 13:00")
    assert (v.attention.state, v.solution.state, v.state) == ("met", "met", "met")
    assert v.attention.clock == "24x7" and v.attention.overrun is None


def test_business_after_hours_arrival(setup, at):
    # Arrives 03:00, the line opens 06:00: attention due 08:00, solution 10:00.
    judge, _ = setup
    v, line = judge(
        "MX", "2026-11-30 03:00", "S3", attended="2026-11-30 08:30", resolved="2026-11-30 09:00"
    )
    assert v.attention.due == at(line, "2026-11-30 08:00")
    assert v.solution.due == at(line, "2026-11-30 10:00")
    assert v.attention.state == "breached" and v.attention.overrun == 30 * M
    assert v.solution.state == "met"
    assert v.state == "breached" and v.attention.clock == "business"


def test_business_over_a_holiday(setup, at):
    # Sunday 16:00: one hour left that day; Monday 16th is a holiday; Tuesday opens 06:00.
    judge, _ = setup
    v, line = judge("MX", "2026-11-15 16:00", "S3", attended="2026-11-17 06:59")
    assert v.attention.due == at(line, "2026-11-17 07:00")
    assert v.solution.due == at(line, "2026-11-17 09:00")
    assert v.attention.state == "met"
    assert v.solution.state == "breached" and v.solution.overrun > 24 * H  # open at report time


def test_pause_on_business_hours_counts_only_open_time(setup, at, cfg):
    # 18:00-20:00 runs (2 h); paused 20:00 → Tuesday 07:00; 2 h left from 07:00 → 09:00.
    judge, _ = setup
    v, line = judge(
        "MX",
        "2026-11-30 18:00",
        "S3",
        pauses=[("2026-11-30 20:00", "2026-12-01 07:00")],
        attended="2026-11-30 18:10",
        resolved="2026-12-01 09:00",
    )
    assert v.solution.due == at(line, "2026-12-01 09:00")
    assert v.solution.state == "met"
    # The queue's own due time (routing.sla) agrees when no severity changed.
    queue = sla_due(
        type(cfg)(lines=cfg.lines, default_country="CR", sla=SLA),
        line,
        "S3",
        at(line, "2026-11-30 18:00"),
        [(at(line, "2026-11-30 20:00"), at(line, "2026-12-01 07:00"))],
    )
    assert queue.solution_due == v.solution.due


def test_pause_on_24x7_and_attention_never_paused(setup, at):
    judge, _ = setup
    v, line = judge(
        "MX",
        "2026-11-30 10:00",
        "S1",
        pauses=[("2026-11-30 10:30", "2026-11-30 12:30")],
        attended="2026-11-30 11:10",
        resolved="2026-11-30 14:30",
    )
    assert v.attention.due == at(line, "2026-11-30 11:00")
    assert v.attention.state == "breached" and v.attention.overrun == 10 * M
    assert v.solution.due == at(line, "2026-11-30 15:00")
    assert v.solution.state == "met"


def test_waiting_on_the_customer_at_report_time_is_pending(setup):
    judge, _ = setup
    v, _line = judge(
        "MX",
        "2026-11-30 10:00",
        "S1",
        pauses=[("2026-11-30 10:30", None)],
        attended="2026-11-30 10:20",
        now="2026-12-03 10:00",
    )
    assert (v.attention.state, v.solution.state, v.state) == ("met", "pending", "pending")


def test_upgrade_spends_the_rest_of_the_budget_on_the_new_clock(setup, at):
    # S3 for 1 h (half its 2 h attention, a quarter of its 4 h solution), then S1:
    # attention 0.5 x 1 h = 30 min -> 11:30; solution 0.75 x 3 h = 2 h 15 -> 13:15.
    judge, _ = setup
    v, line = judge(
        "MX",
        "2026-11-30 10:00",
        "S3",
        changes=[("2026-11-30 11:00", "S1")],
        attended="2026-11-30 11:40",
        resolved="2026-11-30 13:10",
    )
    assert v.attention.due == at(line, "2026-11-30 11:30")
    assert v.solution.due == at(line, "2026-11-30 13:15")
    assert v.attention.state == "breached" and v.attention.overrun == 10 * M
    assert v.solution.state == "met" and v.solution.clock == "24x7"


def test_downgrade_keeps_what_was_spent(setup, at):
    # S1 at 20:00 for 30 min (half of attention, 1/6 of solution), then S3 on business hours:
    # attention 0.5 x 2 h = 1 h: 20:30-21:00 + Tuesday 06:00-06:30;
    # solution 5/6 x 4 h = 3 h 20: 20:30-21:00 + Tuesday 06:00-08:50.
    judge, _ = setup
    v, line = judge(
        "MX",
        "2026-11-30 20:00",
        "S1",
        changes=[("2026-11-30 20:30", "S3")],
        attended="2026-12-01 06:20",
        resolved="2026-12-01 09:00",
    )
    assert v.attention.due == at(line, "2026-12-01 06:30")
    assert v.solution.due == at(line, "2026-12-01 08:50")
    assert v.attention.state == "met"
    assert v.solution.state == "breached" and v.solution.overrun == 10 * M
    assert v.solution.clock == "business"


def test_a_change_after_the_deadline_fell_does_not_move_it(setup, at):
    judge, _ = setup
    v, line = judge(
        "MX",
        "2026-11-30 10:00",
        "S1",
        changes=[("2026-11-30 11:30", "S3")],
        attended="2026-11-30 11:20",
    )
    assert v.attention.due == at(line, "2026-11-30 11:00")
    assert v.attention.state == "breached"


def test_open_at_month_end_is_judged_at_report_time(setup, at):
    judge, _ = setup
    v, line = judge(
        "MX", "2026-11-30 20:00", "S1", attended="2026-11-30 20:10", now="2026-12-01 02:00"
    )
    assert v.solution.due == at(line, "2026-11-30 23:00")
    assert v.solution.state == "breached" and v.solution.overrun == 3 * H
    v, _ = judge(
        "MX", "2026-11-30 20:00", "S1", attended="2026-11-30 20:10", now="2026-11-30 22:00"
    )
    assert v.solution.state == "pending" and v.state == "pending"


def test_dst_fall_back_on_a_us_line(setup, at, utc):
    # Saturday 16:00 EDT: 1 h to 17:00, Sunday 07:00 EST + 1 h = 08:00 EST = 13:00 UTC.
    judge, _ = setup
    v, _line = judge("US", "2026-10-31 16:00", "S3", attended="2026-11-01 07:30")
    assert v.attention.due == utc("2026-11-01 13:00")
    assert v.solution.due == utc("2026-11-01 15:00")  # 3 h left on Sunday: 10:00 EST
    assert v.attention.state == "met"
    # 24x7 over the repeated hour: 01:30 EDT (05:30 UTC) + 3 h = 08:30 UTC (03:30 EST).
    v, _line = judge("US", "2026-11-01 01:30", "S1", resolved="2026-11-01 03:20")
    assert v.solution.due == utc("2026-11-01 08:30")
    assert v.solution.state == "met"


def test_month_bounds_in_the_line_zone() -> None:
    assert month_bounds("America/New_York", 2026, 11) == (
        datetime(2026, 11, 1, 4, tzinfo=UTC),
        datetime(2026, 12, 1, 5, tzinfo=UTC),
    )
    assert month_bounds("America/Mexico_City", 2026, 12) == (
        datetime(2026, 12, 1, 6, tzinfo=UTC),
        datetime(2027, 1, 1, 6, tzinfo=UTC),
    )


def test_dst_spring_forward_on_a_canadian_line(setup, utc):
    # Saturday 16:30 EST (21:30 UTC): 30 min that day; Sunday opens 07:00 EDT (11:00 UTC),
    # 1 h 30 more -> 12:30 UTC. A 24x7 S1 at 01:30 EST (06:30 UTC): due 07:30 UTC (03:30 EDT).
    judge, _ = setup
    v, _line = judge("CA", "2026-03-07 16:30", "S3", now="2026-03-09 12:00")
    assert v.attention.due == utc("2026-03-08 12:30")
    v, _line = judge("CA", "2026-03-08 01:30", "S1", attended="2026-03-08 03:29")
    assert v.attention.due == utc("2026-03-08 07:30")
    assert v.attention.state == "met"
    assert month_bounds("America/Toronto", 2026, 3) == (
        datetime(2026, 3, 1, 5, tzinfo=UTC),
        datetime(2026, 4, 1, 4, tzinfo=UTC),
    )


def test_changes_at_one_instant_keep_their_order(setup, at):
    # S1 → S3 → S1 within the same second: S1 is in force throughout.
    judge, _ = setup
    v, line = judge(
        "MX",
        "2026-11-30 10:00",
        "S1",
        changes=[("2026-11-30 10:30", "S3"), ("2026-11-30 10:30", "S1")],
    )
    assert v.attention.due == at(line, "2026-11-30 11:00")
