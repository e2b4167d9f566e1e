"""The `[alarms]` section: shipped defaults, overrides, 0 switching a threshold off, and every
bad value named by its key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from config.loader import ConfigError, load_settings


def test_alarm_defaults_and_overrides() -> None:
    shipped = load_settings({}).alarms
    assert shipped.enabled and shipped.interval == timedelta(minutes=1)
    assert shipped.notify == () and shipped.webhook == ""
    assert shipped.unattended["L1"] == timedelta(minutes=30)
    tuned = load_settings(
        {},
        {
            "alarms": {
                "notify": ["noc@callmyway.com"],
                "webhook": "https://hooks.example.com/noc/",
                "outbox_age": "0",
                "unattended": {"L3": "0s"},
            }
        },
    ).alarms
    assert tuned.notify == ("noc@callmyway.com",)
    assert tuned.webhook == "https://hooks.example.com/noc"
    assert tuned.outbox_age == timedelta(0) and tuned.unattended["L3"] == timedelta(0)
    assert tuned.unattended["L2"] == timedelta(hours=2)  # merged key by key


@pytest.mark.parametrize(
    ("alarms", "message"),
    [
        ({"notify": ["noc"]}, "alarms.notify: 'noc' is not an email address"),
        ({"notify": "noc@callmyway.com"}, "alarms.notify: must be a list of strings"),
        ({"webhook": "ftp://x"}, "alarms.webhook: must be an http(s) URL"),
        ({"interval": "0s"}, "alarms.interval: must be longer than zero"),
        ({"repeat": "soon"}, "alarms.repeat:"),
        ({"at_risk": -1}, "alarms.at_risk: must be between 0"),
        ({"unattended": {"L4": "1h"}}, "alarms.unattended.L4: unknown key"),
        ({"oldest": 1}, "alarms.oldest: unknown key"),
        ({"database": "yes"}, "alarms.database: must be true or false"),
    ],
)
def test_bad_alarm_values_name_their_key(alarms: dict, message: str) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        load_settings({}, {"alarms": alarms})
