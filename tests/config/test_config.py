"""Configuration: shipped defaults, merge order (defaults < GATEWAY_CONFIG < environment) and
every validation error naming its key; the CLI's one-line error and exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from config.loader import ConfigError, load_settings, masked, merge, parse_duration

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_defaults_hold_the_seed() -> None:
    s = load_settings({})
    lines = s.routing.lines
    assert sorted(lines) == sorted(
        ["MX", "CL", "CO", "US", "CA", "PE", "PA", "GT", "SV", "CR", "DO"]
    )
    assert lines["MX"].number == "+525541708422" and lines["MX"].timezone == "America/Mexico_City"
    assert lines["CO"].number == "+576015189663"  # Bogotá's post-2021 numbering
    assert lines["US"].language == "en" and lines["CA"].language == "en"
    assert lines["CR"].language == "es"
    monday = lines["CR"].hours[0][0]
    assert (monday.start, monday.end) == (6 * 60, 21 * 60)
    sunday = lines["CR"].hours[6][0]
    assert (sunday.start, sunday.end) == (7 * 60, 17 * 60)
    sla = s.routing.sla
    assert (sla["S1"].attention, sla["S1"].solution) == (timedelta(hours=1), timedelta(hours=3))
    assert sla["S2"].attention == timedelta(hours=1.5) and sla["S2"].solution == timedelta(hours=4)
    assert [sla[k].clock for k in ("S1", "S2", "S3", "S4")] == [
        "24x7",
        "24x7",
        "business",
        "business",
    ]
    assert s.email.addresses == ("soporte@callmyway.com",)
    assert s.whatsapp.number == "+50640004000"
    assert s.routing.default_country == "CR"
    assert s.db_url == "sqlite:///var/gateway.db"
    assert s.public_url == "http://127.0.0.1:8080"
    assert not s.twilio.enabled and not s.telegram.enabled


def test_file_merges_key_by_key_and_environment_wins(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(
        '[gateway]\ndefault_country = "MX"\nhttp_port = 9000\n'
        '[lines.MX.hours]\nsat = "closed"\n'
        '[sla.S3]\nclock = "24x7"\n'
    )
    s = load_settings({"GATEWAY_CONFIG": str(path), "GATEWAY_HTTP_PORT": "9100"})
    assert s.routing.default_country == "MX"
    assert s.http_port == 9100  # environment over file
    assert s.routing.lines["MX"].hours[5] == ()  # Saturday closed for MX only
    assert s.routing.lines["MX"].hours[0][0].start == 360  # Monday kept from [hours]
    assert s.routing.lines["CL"].hours[5] != ()
    assert s.routing.sla["S3"].clock == "24x7"
    assert s.routing.sla["S3"].attention == timedelta(hours=2)  # sibling key kept
    assert s.public_url == "http://127.0.0.1:9100"


def test_merge_is_recursive() -> None:
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}}) == {"a": {"b": 1, "c": 3}}


@pytest.mark.parametrize(
    ("env", "overrides", "message"),
    [
        ({"GATEWAY_HTTP_PORT": "abc"}, None, "GATEWAY_HTTP_PORT: 'abc' is not a port number"),
        ({"GATEWAY_SMTP_PORT": "70000"}, None, "GATEWAY_SMTP_PORT:"),
        ({"GATEWAY_DB": "mysql://x"}, None, "GATEWAY_DB: 'mysql://x' is not sqlite"),
        ({"GATEWAY_PUBLIC_URL": "ftp://x"}, None, "GATEWAY_PUBLIC_URL: must be an http(s) URL"),
        ({"GATEWAY_SMTP_RELAY": "relay"}, None, "GATEWAY_SMTP_RELAY: 'relay' is not host:port"),
        ({"TELEGRAM_WEBHOOK_SECRET": "a b"}, None, "TELEGRAM_WEBHOOK_SECRET:"),
        ({"TWILIO_API_BASE": "nope"}, None, "TWILIO_API_BASE: must be an http(s) URL"),
        ({}, {"gateway": {"default_country": "BR"}}, "gateway.default_country: 'BR' has no"),
        ({}, {"gateway": {"colour": 1}}, "gateway.colour: unknown key"),
        (
            {},
            {"gateway": {"trusted_proxies": ["10.0.0.0/8", "proxy.local"]}},
            "gateway.trusted_proxies: 'proxy.local' is not an IP network",
        ),
        ({}, {"telegram": {"max_file_bytes": 0}}, "telegram.max_file_bytes:"),
        (
            {},
            {"email": {"trusted_relays": ["10.0.0.5/32"]}},
            "email.authserv_id: must be set when trusted_relays is not empty",
        ),
        ({}, {"email": {"trusted_relays": ["mx.local"]}}, "email.trusted_relays: 'mx.local'"),
        ({}, {"gateway": {"metrics_networks": ["any"]}}, "gateway.metrics_networks: 'any'"),
        ({}, {"agents": {"hash_workers": 0}}, "agents.hash_workers: must be between 1"),
        ({}, {"agents": {"token_lifetime": "forever"}}, "agents.token_lifetime:"),
        ({}, {"twilio": {"spool_replay_interval": "soon"}}, "twilio.spool_replay_interval:"),
        ({}, {"fax": {}}, "fax: unknown section"),
        ({}, {"hours": {"mon": "25:00-26:00"}}, "hours.mon:"),
        ({}, {"hours": {"tue": "10:00-09:00"}}, "hours.tue:"),
        ({}, {"lines": {"MX": {"timezone": "Mars/Base"}}}, "lines.MX.timezone: 'Mars/Base'"),
        ({}, {"lines": {"MX": {"language": "pt"}}}, "lines.MX.language: must be 'es' or 'en'"),
        ({}, {"lines": {"MX": {"number": "+56227609072"}}}, "lines.MX.number: +56227609072 is not"),
        ({}, {"lines": {"MX": {"number": "12"}}}, "lines.MX.number: '12' is not a valid phone"),
        ({}, {"lines": {"MX": {"holidays": "yes"}}}, "lines.MX.holidays: must be true or false"),
        ({}, {"lines": {"MX": {"closed_dates": ["2026-13-01"]}}}, "lines.MX.closed_dates:"),
        ({}, {"lines": {"MX": {"hourz": {}}}}, "lines.MX.hourz: unknown key"),
        (
            {},
            {
                "lines": {
                    "MX": {
                        "hours": {
                            d: "closed" for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                        }
                    }
                }
            },
            "lines.MX.hours: the line is closed every day",
        ),
        ({}, {"sla": {"S1": {"attention": "soon"}}}, "sla.S1.attention: 'soon' is not a duration"),
        ({}, {"sla": {"S1": {"clock": "weekdays"}}}, "sla.S1.clock: must be '24x7' or 'business'"),
        ({}, {"sla": {"S2": {"solution": "1h"}}}, "sla.S2.solution: must not be shorter"),
        ({}, {"sla": {"S5": {}}}, "sla.S5: unknown key"),
        ({}, {"email": {"addresses": []}}, "email.addresses: must name at least one"),
        ({}, {"email": {"addresses": ["not-an-address"]}}, "email.addresses: 'not-an-address'"),
        ({}, {"email": {"max_message_bytes": -1}}, "email.max_message_bytes: must be between"),
        ({}, {"whatsapp": {"number": "+1"}}, "whatsapp.number:"),
        ({}, {"webchat": {"allowed_origins": ["www.x.com"]}}, "webchat.allowed_origins:"),
        ({}, {"incidents": {"categories": []}}, "incidents.categories: must name at least one"),
        ({}, {"incidents": {"default_severity": "S7"}}, "incidents.default_severity:"),
        ({}, {"teams": {"redes": {"level": "L1", "topics": []}}}, "teams.redes.level:"),
        ({}, {"outbox": {"base_delay": "0s"}}, "outbox.base_delay: must be longer than zero"),
        ({}, {"penalties": {"per_breach": {"S9": 1.0}}}, "penalties.per_breach.S9: unknown key"),
        ({}, {"penalties": {"site_cap": "10%"}}, "penalties.site_cap: must be a number"),
        ({}, {"penalties": {"general_cap": 120}}, "penalties.general_cap: must be between 0"),
        ({}, {"penalties": {"target": 98}}, "penalties.target: must be between 0 and 1"),
        ({}, {"penalties": {"fine": 1}}, "penalties.fine: unknown key"),
    ],
)
def test_every_bad_value_names_its_key(env, overrides, message) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env, overrides)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_a_line_without_a_holiday_calendar_must_say_so() -> None:
    # Ascension Island (+247): phonenumbers knows it, the holidays package does not.
    line = {
        "name": "Ascensión",
        "number": "+24762889",
        "timezone": "Atlantic/St_Helena",
        "holidays": True,
        "language": "en",
    }
    with pytest.raises(ConfigError) as info:
        load_settings({}, {"lines": {"AC": line}})
    assert str(info.value) == (
        "lines.AC.holidays: no public-holiday calendar for AC; set holidays = false"
    )
    settings = load_settings({}, {"lines": {"AC": {**line, "holidays": False}}})
    assert settings.routing.lines["AC"].holidays is False


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"GATEWAY_CONFIG: file .* does not exist"):
        load_settings({"GATEWAY_CONFIG": str(tmp_path / "none.toml")})
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\n")
    with pytest.raises(ConfigError, match=r"GATEWAY_CONFIG: .* is not valid TOML"):
        load_settings({"GATEWAY_CONFIG": str(bad)})


def test_durations() -> None:
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("2d") == timedelta(days=2)
    with pytest.raises(ValueError):
        parse_duration("1 hour")


def test_secrets_are_masked() -> None:
    s = load_settings({"TWILIO_AUTH_TOKEN": "tok-123", "TWILIO_ACCOUNT_SID": "AC1"})
    tree = masked(s)
    assert tree["twilio"]["auth_token"] == "***"
    assert tree["twilio"]["account_sid"] == "AC1"
    assert "tok-123" not in json.dumps(tree)


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=cwd,
        timeout=60,
    )


def test_cli_bad_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _cli("serve", env={"GATEWAY_HTTP_PORT": "http"}, cwd=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert errors == [
        "configuration error: GATEWAY_HTTP_PORT: 'http' is not a port number (0-65535)"
    ]
    assert "Traceback" not in done.stderr


def test_cli_unknown_event_loop_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _cli("serve", env={"GATEWAY_EVENT_LOOP": "libev"}, cwd=tmp_path)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert errors == [
        "configuration error: GATEWAY_EVENT_LOOP must be 'uvloop' or 'asyncio', not 'libev'"
    ]


def test_cli_check_config_prints_effective_config_masked(tmp_path: Path) -> None:
    done = _cli(
        "check-config",
        env={"TELEGRAM_BOT_TOKEN": "123:secret", "GATEWAY_HTTP_PORT": "8181"},
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    tree = json.loads(done.stdout)
    assert tree["gateway"]["http_port"] == "8181"
    assert tree["telegram"]["bot_token"] == "***"
    assert "123:secret" not in done.stdout
    # Derived values are shown as they take effect: the spool sits beside the database.
    assert tree["twilio"]["spool_dir"] == "var/spool/twilio"
