"""The pure alarm evaluation: thresholds, episodes that open, repeat and recover (tables)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from config.alarms import AlarmSettings
from gateway.core.alarms import (
    Episode,
    ProviderState,
    Snapshot,
    checks,
    count_in_window,
    evaluate,
)
from gateway.core.noc import merge_provider, slot_after

NOW = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
TH = AlarmSettings()


def ago(**kw: float) -> datetime:
    return NOW - timedelta(**kw)


@pytest.mark.parametrize(
    ("snap", "keys"),
    [
        (Snapshot(), set()),
        (Snapshot(unattended={("L1", "CR"): ago(minutes=29)}), set()),
        (Snapshot(unattended={("L1", "CR"): ago(minutes=30)}), {"unattended:L1:CR"}),
        (Snapshot(unattended={("L2", "MX"): ago(minutes=90)}), set()),  # L2 waits 2 h
        (Snapshot(at_risk=10, breached=1), {"at_risk", "breached"}),
        (Snapshot(at_risk=9, breached=0), set()),
        (Snapshot(outbox_oldest={"email": ago(minutes=16)}), {"outbox_age:email"}),
        (Snapshot(dead={"whatsapp": 1, "email": 0}), {"dead_letters:whatsapp"}),
        (Snapshot(intake_failures=5, shunted=1), {"intake_failures", "shunted"}),
        (
            Snapshot(
                providers={"twilio": ProviderState(None, ago(minutes=1), "503", ago(minutes=6))}
            ),
            {"provider:twilio"},
        ),
        (
            Snapshot(
                providers={"smtp": ProviderState(ago(hours=1), ago(minutes=1), "x", ago(minutes=2))}
            ),
            set(),  # failing for 2 minutes only
        ),
        (Snapshot(database_ok=False), {"database"}),
    ],
)
def test_checks_compare_each_measure_with_its_threshold(snap: Snapshot, keys: set[str]) -> None:
    assert set(checks(snap, TH, NOW)) == keys


def test_zero_switches_a_threshold_off() -> None:
    off = replace(
        TH,
        at_risk=0,
        breached=0,
        dead_letters=0,
        outbox_age=timedelta(0),
        unattended={"L1": timedelta(0), "L2": timedelta(0), "L3": timedelta(0)},
        database=False,
    )
    snap = Snapshot(
        unattended={("L1", "CR"): ago(days=1)},
        at_risk=100,
        breached=100,
        outbox_oldest={"email": ago(days=1)},
        dead={"email": 9},
        database_ok=False,
    )
    assert checks(snap, off, NOW) == {}


def test_an_episode_opens_once_repeats_each_interval_and_recovers() -> None:
    bad = Snapshot(breached=3)
    first = evaluate(bad, TH, {}, NOW)
    assert [(a.kind, a.key) for a in first] == [("open", "breached")]
    assert first[0].summary == "3 incidentes abiertos vencidos" and first[0].value == 3
    open_ = {"breached": Episode("breached", NOW, NOW)}
    assert evaluate(bad, TH, open_, NOW + timedelta(minutes=59)) == []
    again = evaluate(bad, TH, open_, NOW + timedelta(hours=1))
    assert [(a.kind, a.key) for a in again] == [("repeat", "breached")]
    over = evaluate(Snapshot(), TH, open_, NOW + timedelta(hours=2))
    assert [(a.kind, a.key) for a in over] == [("recover", "breached")]


def test_providers_seen_by_two_instances_merge() -> None:
    failing = ProviderState(None, ago(minutes=1), "timeout", ago(minutes=10))
    healthy = ProviderState(ago(seconds=30), None, None, None)  # the other instance got through
    merged = merge_provider(failing, healthy)
    assert merged.failing_since is None and merged.last_ok == ago(seconds=30)
    both = merge_provider(failing, ProviderState(None, ago(minutes=3), "503", ago(minutes=7)))
    assert both.failing_since == ago(minutes=10) and both.error == "timeout"


def test_counter_growth_within_the_window() -> None:
    samples = [(ago(minutes=10), 2), (ago(minutes=5), 4), (ago(minutes=1), 9), (NOW, 10)]
    assert count_in_window(samples, NOW, timedelta(minutes=5)) == 6
    assert count_in_window(samples, NOW, timedelta(minutes=30)) == 8
    assert count_in_window([], NOW, timedelta(minutes=5)) == 0


def test_slots_are_the_same_on_every_instance() -> None:
    assert slot_after(NOW, timedelta(minutes=1)) == NOW + timedelta(minutes=1)
    assert slot_after(NOW + timedelta(seconds=59), timedelta(minutes=1)) == NOW + timedelta(
        minutes=1
    )
