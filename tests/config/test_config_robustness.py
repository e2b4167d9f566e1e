"""[limits] and [retention]: defaults load, and a value that would break dedupe or the memory
bound stops the start naming its key."""

from __future__ import annotations

from datetime import timedelta

import pytest

from config.loader import ConfigError, load_settings

ENV = {"GATEWAY_DB": "sqlite:///var/x.db"}


def test_defaults() -> None:
    settings = load_settings(ENV)
    assert settings.retention.receipts == timedelta(days=30)
    assert settings.limits.smtp_data_memory_bytes >= settings.email.max_message_bytes


@pytest.mark.parametrize(
    ("tree", "key"),
    [
        ({"retention": {"receipts": "3d"}}, "retention.receipts"),  # inside SMTP's retry window
        ({"retention": {"outbox": "1h"}}, "retention.outbox"),
        ({"email": {"ack_window": "3d"}, "retention": {"outbox": "2d"}}, "retention.outbox"),
        ({"limits": {"smtp_data_memory_bytes": 2048}}, "limits.smtp_data_memory_bytes"),
        ({"limits": {"http_connections_per_ip": 0}}, "limits.http_connections_per_ip"),
        ({"limits": {"http_header_timeout": "0s"}}, "limits.http_header_timeout"),
        ({"limits": {"nope": 1}}, "limits"),
    ],
)
def test_bad_values_name_their_key(tree: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(ENV, tree)
    assert key in str(err.value)
