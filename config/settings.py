"""Frozen, typed settings the gateway runs on; built only by `config.loader`.

Routing's own types (lines, SLA table) live in `routing.model`; the rest is here, one dataclass
per section of `defaults.toml`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from config.alarms import AlarmSettings
from routing.model import RoutingConfig


@dataclass(frozen=True)
class EmailSettings:
    """SMTP intake and outbound mail."""

    addresses: tuple[str, ...]
    from_address: str
    max_message_bytes: int
    max_recipients: int
    max_attachment_bytes: int
    ack_window: timedelta
    idle_timeout: timedelta
    parse_timeout: timedelta
    # Sender authentication (CONTRACT "SMTP"): Authentication-Results is believed only from these
    # peers (CIDRs) and only under this authserv-id; from anyone else the gateway checks
    # SPF/DKIM/DMARC itself, each DNS query bounded by dns_timeout.
    trusted_relays: tuple[str, ...] = ()
    authserv_id: str = ""
    dns_timeout: timedelta = timedelta(seconds=5)
    verify_sender: bool = True


@dataclass(frozen=True)
class TwilioSettings:
    """Twilio credentials and API base (WhatsApp, voice, Click2Call)."""

    account_sid: str | None
    auth_token: str | None
    api_base: str
    spool_dir: str = "var/spool/twilio"  # absolute, or relative to the working directory
    spool_replay_interval: timedelta = timedelta(seconds=10)

    @property
    def enabled(self) -> bool:
        """Twilio endpoints answer 503 unless both credentials are set."""
        return bool(self.account_sid and self.auth_token)


@dataclass(frozen=True)
class WhatsAppSettings:
    """The WhatsApp sender and its media limits."""

    number: str
    template_content_sid: str | None
    session_window: timedelta
    max_media_bytes: int
    media_types: tuple[str, ...]


@dataclass(frozen=True)
class TelegramSettings:
    """Telegram bot credentials and API base."""

    bot_token: str | None
    webhook_secret: str | None
    api_base: str
    request_timeout: timedelta = timedelta(seconds=10)
    allowed_networks: tuple[str, ...] = ()  # CIDRs; empty: any peer (the secret still applies)
    max_file_bytes: int = 20 * 1024 * 1024  # the Bot API's getFile limit
    webhook_check_interval: timedelta = timedelta(minutes=5)
    pending_alert_after: timedelta = timedelta(hours=1)

    @property
    def enabled(self) -> bool:
        """The Telegram endpoint answers 503 unless token and secret are set."""
        return bool(self.bot_token and self.webhook_secret)


@dataclass(frozen=True)
class VoiceSettings:
    """TwiML speech and voicemail settings of the phone lines."""

    language: str
    voice: str
    language_en: str
    voice_en: str
    max_voicemail_seconds: int
    dial_timeout: int


@dataclass(frozen=True)
class WebchatSettings:
    """Chat widget limits and allowed embedding origins."""

    allowed_origins: tuple[str, ...]
    max_frame_bytes: int
    messages_per_minute: int
    max_sockets_per_ip: int
    max_sockets_per_visitor: int
    heartbeat: timedelta


@dataclass(frozen=True)
class Click2CallSettings:
    """Toll-fraud guard and retry policy of website callbacks."""

    max_calls_per_number_per_hour: int
    max_calls_per_ip_per_hour: int
    allowed_origins: tuple[str, ...]
    retry_delay: timedelta


@dataclass(frozen=True)
class AgentSettings:
    """Agent credentials: sign-in throttling, the password hashing pool, API token lifetime."""

    max_failures: int = 5  # per user name and client address, within failure_window
    max_failures_per_account: int = 20  # per user name, any address
    max_failures_per_address: int = 20  # per client address, any user name
    failure_window: timedelta = timedelta(minutes=15)
    hash_workers: int = 2  # threads running argon2 (never the default pool)
    hash_queue: int = 32  # sign-ins waiting for a hash thread beyond this: 429 at once
    token_lifetime: timedelta = timedelta(days=90)
    session_check: timedelta = timedelta(seconds=30)  # live sockets re-check their session


@dataclass(frozen=True)
class Team:
    """An L2/L3 team and the topics or accounts it takes."""

    name: str
    level: str
    topics: tuple[str, ...]


@dataclass(frozen=True)
class IncidentSettings:
    """Closure categories and teams."""

    categories: tuple[str, ...]
    teams: Mapping[str, Team]
    # How agents read each category ("configuracion" -> "Configuración"); others: humanized.
    category_names: Mapping[str, str] = field(default_factory=dict)
    csat_window: timedelta = timedelta(days=7)  # a 1-5 answer counts this long after resolving
    thanks_window: timedelta = timedelta(days=7)  # a bare "gracias" joins a closed incident


@dataclass(frozen=True)
class LimitSettings:
    """Resource bounds against floods and slow clients ([limits])."""

    http_connections_per_ip: int = 256
    http_header_timeout: timedelta = timedelta(seconds=15)
    http_body_timeout: timedelta = timedelta(seconds=30)
    smtp_max_connections: int = 200
    smtp_connections_per_ip: int = 50
    smtp_data_memory_bytes: int = 256 * 1024 * 1024


@dataclass(frozen=True)
class RetentionSettings:
    """How long old rows are kept ([retention])."""

    outbox: timedelta = timedelta(days=30)
    receipts: timedelta = timedelta(days=30)
    interval: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class OutboxSettings:
    """Retry policy of everything sent to customers."""

    max_attempts: int
    base_delay: timedelta
    max_delay: timedelta


@dataclass(frozen=True)
class PenaltySettings:
    """How the monthly report turns SLA breaches into invoice discounts (percent)."""

    target: float = 0.98
    per_breach: Mapping[str, float] = field(
        default_factory=lambda: {"S1": 2.0, "S2": 1.5, "S3": 1.0, "S4": 0.5}
    )
    site_per_point: float = 0.0
    general_per_point: float = 1.0
    site_cap: float = 10.0
    general_cap: float = 10.0


@dataclass(frozen=True)
class Settings:
    """The whole effective configuration."""

    routing: RoutingConfig
    db_url: str
    http_host: str
    http_port: int
    smtp_host: str
    smtp_port: int
    public_url: str
    smtp_relay: tuple[str, int] | None
    secret_key: str | None
    shutdown_timeout: timedelta
    max_body_bytes: int
    email: EmailSettings
    whatsapp: WhatsAppSettings
    twilio: TwilioSettings
    telegram: TelegramSettings
    voice: VoiceSettings
    webchat: WebchatSettings
    click2call: Click2CallSettings
    incidents: IncidentSettings
    outbox: OutboxSettings
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For is believed
    slow_webhook: timedelta = timedelta(seconds=5)  # slower provider webhooks are logged
    instance: str = "gateway"  # this instance's name (GATEWAY_INSTANCE; default hostname:pid)
    metrics_networks: tuple[str, ...] = ("127.0.0.0/8", "::1/128")  # /metrics without a token
    agents: AgentSettings = field(default_factory=AgentSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    penalties: PenaltySettings = field(default_factory=PenaltySettings)
    alarms: AlarmSettings = field(default_factory=AlarmSettings)  # the NOC's thresholds
    effective: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
