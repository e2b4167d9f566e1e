"""Load `defaults.toml`, merge `GATEWAY_CONFIG` and the environment over it, validate.

Every problem is a `ConfigError` whose text names the key (or environment variable) and what is
wrong with it; the command line prints that one line and exits 2. Nothing here starts anything.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from config.alarms import read_alarms
from config.settings import (
    AgentSettings,
    Click2CallSettings,
    EmailSettings,
    IncidentSettings,
    LimitSettings,
    OutboxSettings,
    PenaltySettings,
    RetentionSettings,
    Settings,
    Team,
    TelegramSettings,
    TwilioSettings,
    VoiceSettings,
    WebchatSettings,
    WhatsAppSettings,
)
from routing.model import DAY_KEYS, SEVERITIES, Line, RoutingConfig, SlaTarget
from routing.phone import country_of_phone, normalize_phone
from routing.schedule import has_holiday_calendar, parse_hours

DEFAULTS_PATH = Path(__file__).with_name("defaults.toml")

# Environment variable -> (section, key). The environment wins over every file.
ENVIRONMENT: dict[str, tuple[str, str]] = {
    "GATEWAY_DB": ("gateway", "db"),
    "GATEWAY_HTTP_HOST": ("gateway", "http_host"),
    "GATEWAY_HTTP_PORT": ("gateway", "http_port"),
    "GATEWAY_SMTP_HOST": ("gateway", "smtp_host"),
    "GATEWAY_SMTP_PORT": ("gateway", "smtp_port"),
    "GATEWAY_PUBLIC_URL": ("gateway", "public_url"),
    "GATEWAY_SMTP_RELAY": ("gateway", "smtp_relay"),
    "GATEWAY_SECRET_KEY": ("gateway", "secret_key"),
    "GATEWAY_INSTANCE": ("gateway", "instance"),
    "TWILIO_ACCOUNT_SID": ("twilio", "account_sid"),
    "TWILIO_AUTH_TOKEN": ("twilio", "auth_token"),
    "TWILIO_API_BASE": ("twilio", "api_base"),
    "TELEGRAM_BOT_TOKEN": ("telegram", "bot_token"),
    "TELEGRAM_WEBHOOK_SECRET": ("telegram", "webhook_secret"),
    "TELEGRAM_API_BASE": ("telegram", "api_base"),
}
SECRETS = {
    ("gateway", "secret_key"),
    ("twilio", "auth_token"),
    ("telegram", "bot_token"),
    ("telegram", "webhook_secret"),
}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_EMAIL = re.compile(r"^[A-Za-z0-9._+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")


class ConfigError(ValueError):
    """A configuration value that cannot be used; str() is the one line the operator sees."""


def parse_duration(text: str) -> timedelta:
    """'90s', '1.5h', '15m', '2d' -> timedelta; ValueError otherwise."""
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration like '90s', '15m', '1.5h' or '2d'")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `over` into a copy of `base` key by key (tables recursively, values replaced)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


class _Reader:
    """Typed access to the merged tree that names the key (or env variable) on error."""

    def __init__(self, tree: Mapping[str, Any], origins: Mapping[tuple[str, ...], str]):
        self.tree = tree
        self.origins = origins

    def name(self, *path: str) -> str:
        return self.origins.get(path, ".".join(path))

    def fail(self, path: tuple[str, ...], message: str) -> ConfigError:
        return ConfigError(f"{self.name(*path)}: {message}")

    def raw(self, *path: str) -> Any:
        node: Any = self.tree
        for part in path:
            if not isinstance(node, Mapping) or part not in node:
                raise self.fail(path, "missing")
            node = node[part]
        return node

    def table(self, *path: str) -> Mapping[str, Any]:
        value = self.raw(*path)
        if not isinstance(value, Mapping):
            raise self.fail(path, "must be a table")
        return value

    def str(self, *path: str, allow_empty: bool = False) -> str:
        value = self.raw(*path)
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, not {value!r}")
        if not allow_empty and not value.strip():
            raise self.fail(path, "must not be empty")
        return value.strip()

    def optional(self, *path: str) -> str | None:
        return self.str(*path, allow_empty=True) or None

    def int(self, *path: str, low: int = 0, high: int | None = None) -> int:
        value = self.raw(*path)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be a whole number, not {value!r}")
        if value < low or (high is not None and value > high):
            upper = f" and {high}" if high is not None else ""
            raise self.fail(path, f"must be between {low}{upper}, not {value}")
        return value

    def bool(self, *path: str) -> bool:
        value = self.raw(*path)
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, not {value!r}")
        return value

    def duration(self, *path: str) -> timedelta:
        try:
            value = parse_duration(self.raw(*path))
        except ValueError as exc:
            raise self.fail(path, str(exc)) from None
        if value <= timedelta(0):
            raise self.fail(path, "must be longer than zero")
        return value

    def strings(self, *path: str) -> tuple[str, ...]:
        value = self.raw(*path)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(path, "must be a list of strings")
        return tuple(v.strip() for v in value)

    def only(self, path: tuple[str, ...], allowed: set[str]) -> None:
        unknown = sorted(set(self.table(*path)) - allowed)
        if unknown:
            raise self.fail((*path, unknown[0]), "unknown key")

    def url(self, *path: str) -> str:
        value = self.str(*path).rstrip("/")
        if not re.match(r"^https?://[^/\s]+", value):
            raise self.fail(path, f"must be an http(s) URL, not {value!r}")
        return value

    def port(self, *path: str) -> int:
        try:
            return self.int(*path, low=0, high=65535)
        except ConfigError:
            raise self.fail(path, f"{self.raw(*path)!r} is not a port number (0-65535)") from None


def _defaults() -> dict[str, Any]:
    with DEFAULTS_PATH.open("rb") as fh:
        return tomllib.load(fh)


def _read_file(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"GATEWAY_CONFIG: file {path!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"GATEWAY_CONFIG: {path!r} is not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"GATEWAY_CONFIG: cannot read {path!r} ({exc.strerror})") from None


def load_settings(env: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build the settings: defaults, then `GATEWAY_CONFIG`, then `overrides`, then `env`."""
    tree = _defaults()
    defaults_sections = set(tree)
    if env.get("GATEWAY_CONFIG"):
        tree = merge(tree, _read_file(env["GATEWAY_CONFIG"]))
    if overrides:
        tree = merge(tree, overrides)
    origins: dict[tuple[str, ...], str] = {}
    for var, (section, key) in ENVIRONMENT.items():
        if var in env:
            tree = merge(tree, {section: {key: env[var]}})
            origins[(section, key)] = var
    unknown = sorted(set(tree) - defaults_sections)
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown section")
    return _build(_Reader(tree, origins))


def _build(r: _Reader) -> Settings:
    for section in ("gateway", "email", "whatsapp", "twilio", "telegram", "voice"):
        r.only((section,), set(_defaults()[section]))
    for section in ("webchat", "click2call", "incidents", "outbox", "agents"):
        r.only((section,), set(_defaults()[section]))
    for section in ("limits", "retention"):
        r.only((section,), set(_defaults()[section]))
    routing = _routing(r)
    http_host = r.str("gateway", "http_host")
    http_port = r.port("gateway", "http_port")
    public_url = r.str("gateway", "public_url", allow_empty=True).rstrip("/")
    default_url = f"http://{http_host}:{http_port}"
    public_url = r.url("gateway", "public_url") if public_url else default_url
    return Settings(
        routing=routing,
        db_url=_db_url(r),
        http_host=http_host,
        http_port=http_port,
        smtp_host=r.str("gateway", "smtp_host"),
        smtp_port=r.port("gateway", "smtp_port"),
        public_url=public_url,
        smtp_relay=_relay(r),
        secret_key=r.optional("gateway", "secret_key"),
        shutdown_timeout=r.duration("gateway", "shutdown_timeout"),
        max_body_bytes=r.int("gateway", "max_body_bytes", low=1024),
        trusted_proxies=_networks(r, ("gateway", "trusted_proxies")),
        slow_webhook=r.duration("gateway", "slow_webhook"),
        instance=_instance(r),
        metrics_networks=_networks(r, ("gateway", "metrics_networks")),
        agents=_agents(r),
        limits=_limits(r),
        retention=_retention(r),
        penalties=_penalties(r),
        email=_email(r),
        whatsapp=WhatsAppSettings(
            number=_phone(r, ("whatsapp", "number")),
            template_content_sid=r.optional("whatsapp", "template_content_sid"),
            session_window=r.duration("whatsapp", "session_window"),
            max_media_bytes=r.int("whatsapp", "max_media_bytes", low=1),
            media_types=r.strings("whatsapp", "media_types"),
        ),
        twilio=TwilioSettings(
            account_sid=r.optional("twilio", "account_sid"),
            auth_token=r.optional("twilio", "auth_token"),
            api_base=r.url("twilio", "api_base"),
            spool_dir=_spool_dir(r),
            spool_replay_interval=r.duration("twilio", "spool_replay_interval"),
        ),
        telegram=TelegramSettings(
            bot_token=r.optional("telegram", "bot_token"),
            webhook_secret=_telegram_secret(r),
            api_base=r.url("telegram", "api_base"),
            request_timeout=r.duration("telegram", "request_timeout"),
            allowed_networks=_networks(r, ("telegram", "allowed_networks")),
            max_file_bytes=r.int("telegram", "max_file_bytes", low=1),
            webhook_check_interval=r.duration("telegram", "webhook_check_interval"),
            pending_alert_after=r.duration("telegram", "pending_alert_after"),
        ),
        voice=VoiceSettings(
            language=r.str("voice", "language"),
            voice=r.str("voice", "voice"),
            language_en=r.str("voice", "language_en"),
            voice_en=r.str("voice", "voice_en"),
            max_voicemail_seconds=r.int("voice", "max_voicemail_seconds", low=1, high=14400),
            dial_timeout=r.int("voice", "dial_timeout", low=5, high=600),
        ),
        webchat=WebchatSettings(
            allowed_origins=_origins(r, ("webchat", "allowed_origins")),
            max_frame_bytes=r.int("webchat", "max_frame_bytes", low=256),
            messages_per_minute=r.int("webchat", "messages_per_minute", low=1),
            max_sockets_per_ip=r.int("webchat", "max_sockets_per_ip", low=1),
            max_sockets_per_visitor=r.int("webchat", "max_sockets_per_visitor", low=1),
            heartbeat=r.duration("webchat", "heartbeat"),
        ),
        click2call=Click2CallSettings(
            max_calls_per_number_per_hour=r.int("click2call", "max_calls_per_number_per_hour"),
            max_calls_per_ip_per_hour=r.int("click2call", "max_calls_per_ip_per_hour"),
            allowed_origins=_origins(r, ("click2call", "allowed_origins")),
            retry_delay=r.duration("click2call", "retry_delay"),
        ),
        incidents=IncidentSettings(
            categories=_categories(r),
            teams=_teams(r),
            category_names=_category_names(r),
            csat_window=r.duration("incidents", "csat_window"),
            thanks_window=r.duration("incidents", "thanks_window"),
        ),
        outbox=OutboxSettings(
            max_attempts=r.int("outbox", "max_attempts", low=1, high=100),
            base_delay=r.duration("outbox", "base_delay"),
            max_delay=r.duration("outbox", "max_delay"),
        ),
        alarms=read_alarms(r),
        effective=r.tree,
    )


def _db_url(r: _Reader) -> str:
    url = r.str("gateway", "db")
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return url
    if re.match(r"^postgres(ql)?://", url):
        parts = urlsplit(url)
        if not parts.path.strip("/") and "dbname=" not in parts.query:
            raise r.fail(("gateway", "db"), f"{display_url(url)!r} names no database")
        return url
    raise r.fail(("gateway", "db"), f"{url!r} is not sqlite:///path.db or postgresql://...")


def _instance(r: _Reader) -> str:
    """This instance's name: as configured, else hostname:pid (unique among live instances)."""
    name = r.str("gateway", "instance", allow_empty=True).strip()
    if not name:
        return f"{socket.gethostname()}:{os.getpid()}"
    if len(name) > 60 or not name.isprintable():
        raise r.fail(("gateway", "instance"), f"{name!r} is not a short printable name")
    return name


def display_url(url: str) -> str:
    """A database URL fit for logs and check-config: its password replaced by '***'."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _spool_dir(r: _Reader) -> str:
    """The Twilio spool: as configured, else beside the database (on the same volume)."""
    value = r.str("twilio", "spool_dir", allow_empty=True)
    if value:
        return value
    url = _db_url(r)
    # Beside an SQLite file (same volume); with PostgreSQL, on this instance's own disk.
    database = url.removeprefix("sqlite:///") if url.startswith("sqlite:") else "var/db"
    derived = str(Path(database).parent / "spool" / "twilio")
    r.tree["twilio"]["spool_dir"] = derived  # check-config shows where it really is
    return derived


def _relay(r: _Reader) -> tuple[str, int] | None:
    value = r.str("gateway", "smtp_relay", allow_empty=True)
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise r.fail(("gateway", "smtp_relay"), f"{value!r} is not host:port")
    return host.strip("[]"), int(port)


def _telegram_secret(r: _Reader) -> str | None:
    secret = r.optional("telegram", "webhook_secret")
    # Bot API: secret_token is 1-256 characters of A-Z, a-z, 0-9, _ and -.
    if secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
        raise r.fail(("telegram", "webhook_secret"), "only A-Z, a-z, 0-9, _ and - (1-256)")
    return secret


def _networks(r: _Reader, path: tuple[str, ...]) -> tuple[str, ...]:
    nets = r.strings(*path)
    for net in nets:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise r.fail(path, f"{net!r} is not an IP network like '149.154.160.0/20'") from None
    return nets


def _phone(r: _Reader, path: tuple[str, ...]) -> str:
    raw = r.str(*path)
    e164 = normalize_phone(raw)
    if e164 is None or country_of_phone(e164) is None:
        raise r.fail(path, f"{raw!r} is not a valid phone number in E.164 (+CC...)")
    return e164


def _origins(r: _Reader, path: tuple[str, ...]) -> tuple[str, ...]:
    origins = r.strings(*path)
    for origin in origins:
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise r.fail(path, f"{origin!r} is not an origin like https://www.example.com")
    return tuple(o.lower() for o in origins)


def _email(r: _Reader) -> EmailSettings:
    addresses = r.strings("email", "addresses")
    if not addresses:
        raise r.fail(("email", "addresses"), "must name at least one address")
    for address in (*addresses, r.str("email", "from_address")):
        if not _EMAIL.match(address):
            raise r.fail(("email", "addresses"), f"{address!r} is not an email address")
    relays = _networks(r, ("email", "trusted_relays"))
    authserv_id = r.str("email", "authserv_id", allow_empty=True)
    if relays and not authserv_id:
        # RFC 8601 §5: without our relays' authserv-id, any header a sender forged would pass.
        raise r.fail(("email", "authserv_id"), "must be set when trusted_relays is not empty")
    if authserv_id and not re.fullmatch(r"[A-Za-z0-9._-]{1,255}", authserv_id):
        raise r.fail(("email", "authserv_id"), f"{authserv_id!r} is not a host name")
    return EmailSettings(
        addresses=tuple(a.lower() for a in addresses),
        from_address=r.str("email", "from_address"),
        max_message_bytes=r.int("email", "max_message_bytes", low=1024),
        max_recipients=r.int("email", "max_recipients", low=1, high=1000),
        max_attachment_bytes=r.int("email", "max_attachment_bytes", low=1),
        ack_window=r.duration("email", "ack_window"),
        idle_timeout=r.duration("email", "idle_timeout"),
        parse_timeout=r.duration("email", "parse_timeout"),
        trusted_relays=relays,
        authserv_id=authserv_id,
        dns_timeout=r.duration("email", "dns_timeout"),
        verify_sender=r.bool("email", "verify_sender"),
    )


def _limits(r: _Reader) -> LimitSettings:
    limits = LimitSettings(
        http_connections_per_ip=r.int("limits", "http_connections_per_ip", low=1),
        http_header_timeout=r.duration("limits", "http_header_timeout"),
        http_body_timeout=r.duration("limits", "http_body_timeout"),
        smtp_max_connections=r.int("limits", "smtp_max_connections", low=1),
        smtp_connections_per_ip=r.int("limits", "smtp_connections_per_ip", low=1),
        smtp_data_memory_bytes=r.int("limits", "smtp_data_memory_bytes", low=1024),
    )
    if limits.smtp_data_memory_bytes < r.int("email", "max_message_bytes", low=1024):
        raise r.fail(
            ("limits", "smtp_data_memory_bytes"),
            "must be at least email.max_message_bytes (one message must fit)",
        )
    for key in ("http_header_timeout", "http_body_timeout"):
        if getattr(limits, key) <= timedelta(0):
            raise r.fail(("limits", key), "must be longer than 0s")
    return limits


def _retention(r: _Reader) -> RetentionSettings:
    retention = RetentionSettings(
        outbox=r.duration("retention", "outbox"),
        receipts=r.duration("retention", "receipts"),
        interval=r.duration("retention", "interval"),
    )
    # Dedupe needs the rows: a provider retrying after its receipt was purged would make a second
    # incident, and the acknowledgement window reads the outbox (README "Robustness").
    if retention.receipts < RECEIPTS_MINIMUM:
        raise r.fail(
            ("retention", "receipts"),
            "must be at least 7d: mail servers retry a delivery for up to 5 days (RFC 5321)",
        )
    ack_window = r.duration("email", "ack_window")
    if retention.outbox < max(timedelta(days=1), ack_window):
        raise r.fail(("retention", "outbox"), "must be at least 1d and email.ack_window")
    if retention.interval < timedelta(minutes=1):
        raise r.fail(("retention", "interval"), "must be at least 1m")
    return retention


RECEIPTS_MINIMUM = timedelta(days=7)


def _agents(r: _Reader) -> AgentSettings:
    return AgentSettings(
        max_failures=r.int("agents", "max_failures", low=1),
        max_failures_per_account=r.int("agents", "max_failures_per_account", low=1),
        max_failures_per_address=r.int("agents", "max_failures_per_address", low=1),
        failure_window=r.duration("agents", "failure_window"),
        hash_workers=r.int("agents", "hash_workers", low=1, high=32),
        hash_queue=r.int("agents", "hash_queue", low=1),
        token_lifetime=r.duration("agents", "token_lifetime"),
        session_check=r.duration("agents", "session_check"),
    )


def _percent(r: _Reader, path: tuple[str, ...], high: float = 100.0) -> float:
    value = r.raw(*path)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise r.fail(path, f"must be a number, not {value!r}")
    if not 0 <= value <= high:
        raise r.fail(path, f"must be between 0 and {high:g}, not {value}")
    return float(value)


def _penalties(r: _Reader) -> PenaltySettings:
    r.only(("penalties",), set(_defaults()["penalties"]))
    r.only(("penalties", "per_breach"), set(SEVERITIES))
    target = _percent(r, ("penalties", "target"), high=1.0)
    if target <= 0:
        raise r.fail(("penalties", "target"), "must be a fraction above 0, e.g. 0.98")
    return PenaltySettings(
        target=target,
        per_breach={s: _percent(r, ("penalties", "per_breach", s)) for s in SEVERITIES},
        site_per_point=_percent(r, ("penalties", "site_per_point")),
        general_per_point=_percent(r, ("penalties", "general_per_point")),
        site_cap=_percent(r, ("penalties", "site_cap")),
        general_cap=_percent(r, ("penalties", "general_cap")),
    )


def _categories(r: _Reader) -> tuple[str, ...]:
    categories = r.strings("incidents", "categories")
    if not categories:
        raise r.fail(("incidents", "categories"), "must name at least one category")
    return categories


def _category_names(r: _Reader) -> dict[str, str]:
    """How agents read each closure category; every key must be a configured category."""
    path = ("incidents", "category_names")
    categories = set(_categories(r))
    names: dict[str, str] = {}
    for key in r.table(*path):
        if key not in categories:
            raise r.fail((*path, key), "is not one of [incidents] categories")
        names[key] = r.str(*path, key)
    return names


def _teams(r: _Reader) -> dict[str, Team]:
    teams: dict[str, Team] = {}
    for name in r.table("teams"):
        r.only(("teams", name), {"level", "topics"})
        level = r.str("teams", name, "level")
        if level not in ("L2", "L3"):
            raise r.fail(("teams", name, "level"), f"must be L2 or L3, not {level!r}")
        teams[name] = Team(name=name, level=level, topics=r.strings("teams", name, "topics"))
    return teams


def _hours(r: _Reader, path: tuple[str, ...], base: dict[int, Any] | None = None) -> dict:
    table = r.table(*path)
    r.only(path, set(DAY_KEYS))
    hours = dict(base or {})
    for index, day in enumerate(DAY_KEYS):
        if day in table:
            try:
                hours[index] = parse_hours(r.str(*path, day))
            except ValueError as exc:
                raise r.fail((*path, day), str(exc)) from None
        elif base is None:
            raise r.fail((*path, day), "missing")
    return hours


def _routing(r: _Reader) -> RoutingConfig:
    default_hours = _hours(r, ("hours",))
    lines: dict[str, Line] = {}
    allowed = {"name", "number", "timezone", "holidays", "language", "hours"}
    allowed |= {"closed_dates", "l1_destination"}
    for code in r.table("lines"):
        path = ("lines", code)
        if not re.fullmatch(r"[A-Z]{2}", code):
            raise r.fail(path, "a line's key is an ISO 3166 alpha-2 code like MX")
        r.only(path, allowed)
        timezone = r.str(*path, "timezone")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise r.fail((*path, "timezone"), f"{timezone!r} is not an IANA time zone") from None
        language = r.str(*path, "language")
        if language not in ("es", "en"):
            raise r.fail((*path, "language"), f"must be 'es' or 'en', not {language!r}")
        number = _phone(r, (*path, "number"))
        if country_of_phone(number) != code:
            raise r.fail((*path, "number"), f"{number} is not a number of {code}")
        closed: set[date] = set()
        for text in r.strings(*path, "closed_dates") if "closed_dates" in r.table(*path) else ():
            try:
                closed.add(date.fromisoformat(text))
            except ValueError:
                raise r.fail((*path, "closed_dates"), f"{text!r} is not YYYY-MM-DD") from None
        hours = default_hours
        if "hours" in r.table(*path):
            hours = _hours(r, (*path, "hours"), base=default_hours)
        line = Line(
            code=code,
            name=r.str(*path, "name"),
            number=number,
            timezone=timezone,
            hours=hours,
            holidays=r.bool(*path, "holidays"),
            language=language,
            closed_dates=frozenset(closed),
            l1_destination=r.optional(*path, "l1_destination")
            if "l1_destination" in r.table(*path)
            else None,
        )
        _check_calendar(r, path, line)
        lines[code] = line
    if not lines:
        raise r.fail(("lines",), "at least one country line is required")
    default_country = r.str("gateway", "default_country").upper()
    if default_country not in lines:
        raise r.fail(("gateway", "default_country"), f"{default_country!r} has no [lines] entry")
    sla: dict[str, SlaTarget] = {}
    r.only(("sla",), set(SEVERITIES))
    for severity in SEVERITIES:
        path = ("sla", severity)
        r.only(path, {"attention", "solution", "clock"})
        clock = r.str(*path, "clock")
        if clock not in ("24x7", "business"):
            raise r.fail((*path, "clock"), f"must be '24x7' or 'business', not {clock!r}")
        target = SlaTarget(
            attention=r.duration(*path, "attention"),
            solution=r.duration(*path, "solution"),
            clock=clock,  # type: ignore[arg-type]
        )
        if target.solution < target.attention:
            raise r.fail((*path, "solution"), "must not be shorter than attention")
        sla[severity] = target
    default_severity = r.str("incidents", "default_severity").upper()
    if default_severity not in SEVERITIES:
        raise r.fail(("incidents", "default_severity"), f"must be S1..S4, not {default_severity!r}")
    return RoutingConfig(
        lines=lines,
        default_country=default_country,
        sla=sla,
        default_severity=default_severity,  # type: ignore[arg-type]
        at_risk_window=r.duration("incidents", "at_risk_window"),
    )


def _check_calendar(r: _Reader, path: tuple[str, ...], line: Line) -> None:
    """A line must open at some point, and its holiday calendar must exist."""
    if not any(line.hours.get(day) for day in range(7)):
        raise r.fail((*path, "hours"), "the line is closed every day of the week")
    if line.holidays and not has_holiday_calendar(line.code):
        message = f"no public-holiday calendar for {line.code}; set holidays = false"
        raise r.fail((*path, "holidays"), message)


def masked(settings: Settings) -> dict[str, Any]:
    """The effective configuration tree with secrets replaced by '***'."""
    tree = merge({}, settings.effective)
    for section, key in SECRETS:
        if tree.get(section, {}).get(key):
            tree[section][key] = "***"
    if tree.get("gateway", {}).get("db"):
        tree["gateway"]["db"] = display_url(tree["gateway"]["db"])
    return tree
