"""Shared fixtures: settings on a fresh database, a controllable clock, a running app.

Every test that uses a database runs twice: on a temporary SQLite file and on a fresh database
of a throwaway PostgreSQL cluster (`tests/pgcluster.py`, started once per session from the
machine's server binaries). Where those binaries are missing the PostgreSQL half is left out
and the session says so plainly; `GATEWAY_TEST_POSTGRES=require` (CI) makes that an error.
Tests about SQLite itself are marked `sqlite_only`; tests of several instances `postgresql_only`.
The app runs on a real loopback port (aiohttp's TestServer), driven with real HTTP/WebSocket
clients.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from config.loader import load_settings
from config.settings import Settings
from gateway.app import create_app
from gateway.core.auth import add_user, create_token
from gateway.core.model import Contact, Inbound
from gateway.core.services import GW, Gateway
from tests.pgcluster import Cluster, find_bindir

# Monday 2026-11-30 15:00 UTC = 09:00 in Costa Rica (the default line): inside business hours.
OPEN_TIME = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
# Monday 2026-11-30 05:00 UTC = Sunday 23:00 in Costa Rica: every LATAM line is closed.
CLOSED_TIME = datetime(2026, 11, 30, 5, 0, tzinfo=UTC)


class FakeClock:
    """A clock tests move by hand; the gateway reads it through `create_app(clock=...)`."""

    def __init__(self, now: datetime = OPEN_TIME):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, moment: datetime) -> None:
        self.now = moment


class FakeResolver:
    """DNS from a dict {(name, type): [answers]} (the `gateway.core.dns.Resolver` role).

    Names it does not know have no records (NXDOMAIN); a value that is an exception is raised
    (a timeout). Every query is recorded in `asked`.
    """

    def __init__(self, records: dict[tuple[str, str], Any] | None = None):
        self.records = {(n.lower().rstrip("."), t): v for (n, t), v in (records or {}).items()}
        self.asked: list[tuple[str, str]] = []

    async def query(self, name: str, rdtype: str) -> list[Any]:
        key = (name.lower().rstrip("."), rdtype)
        self.asked.append(key)
        value = self.records.get(key, [])
        if isinstance(value, BaseException):
            raise value
        return list(value)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


PG_BINDIR = find_bindir()
PG_REQUIRED = os.environ.get("GATEWAY_TEST_POSTGRES") == "require"
PG_MISSING = (
    "PostgreSQL server binaries not found: the suite ran on SQLite only. Install Debian's"
    " `postgresql` package to run it on both databases (CI always does)."
)
TEMPLATE = "gateway_template"


def pytest_configure(config: pytest.Config) -> None:
    if PG_BINDIR is None and PG_REQUIRED:
        raise pytest.UsageError(PG_MISSING + " GATEWAY_TEST_POSTGRES=require is set.")


def pytest_report_header(config: pytest.Config) -> str:
    if PG_BINDIR is None:
        return PG_MISSING
    return f"databases: SQLite and PostgreSQL ({PG_BINDIR})"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if PG_BINDIR is None:
        terminalreporter.write_line(PG_MISSING, yellow=True, bold=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses a database on each database this machine has."""
    if "db_backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker
    backends = [] if marker("postgresql_only") else ["sqlite"]
    if PG_BINDIR is not None and not marker("sqlite_only"):
        backends.append("postgresql")
    metafunc.parametrize("db_backend", backends)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """One throwaway PostgreSQL server for the session, with a migrated template database."""
    assert PG_BINDIR is not None
    cluster = Cluster(PG_BINDIR).start()
    try:
        template = cluster.create_database()
        asyncio.run(_migrate(template))
        name = template.rsplit("/", 1)[1]
        import psycopg

        with psycopg.connect(cluster.url(), autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {name} RENAME TO {TEMPLATE}")
        yield cluster
    finally:
        cluster.stop()


async def _migrate(url: str) -> None:
    """Create every table (core, workspace, adapters) once, for the template database."""
    settings = load_settings({"GATEWAY_DB": url, "GATEWAY_SMTP_PORT": "0"})
    gw = create_app(settings)[GW]
    await gw.store.open()
    try:
        await gw.store.migrate(gw.migrations)
    finally:
        await gw.store.close()


@pytest.fixture
def db_url(db_backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database of the test's backend: an SQLite file, or a PostgreSQL database."""
    if db_backend == "sqlite":
        yield f"sqlite:///{tmp_path}/gateway.db"
        return
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    # The previous test's database goes now, when nothing of that test can still be using
    # it (fixtures that close its app may tear down after this one).
    for old in _USED_DATABASES:
        cluster.drop_database(old)
    _USED_DATABASES.clear()
    url = cluster.create_database(template=TEMPLATE)
    _USED_DATABASES.append(url)
    yield url


_USED_DATABASES: list[str] = []


@pytest.fixture
def make_settings(db_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """make_settings(overrides={toml tree}, **env) -> Settings on the test's database."""

    def make(overrides: dict[str, Any] | None = None, **env: str) -> Settings:
        base = {"GATEWAY_DB": db_url, "GATEWAY_SMTP_PORT": "0"}
        tree = dict(overrides or {})
        if not db_url.startswith("sqlite:"):
            # An instance's local disk for the Twilio spool (SQLite keeps it beside its file).
            twilio = {"spool_dir": str(tmp_path / "spool" / "twilio"), **tree.get("twilio", {})}
            tree["twilio"] = twilio
        return load_settings({**base, **env}, tree or None)

    return make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


AppFactory = Callable[..., Awaitable[tuple[TestClient, Gateway]]]


@pytest.fixture
def start_app(aiohttp_client: Any, clock: FakeClock) -> AppFactory:
    """await start_app(settings, adapters=None) -> (client, gw), served on loopback."""

    async def start(
        settings: Settings, *, adapters: Any = None, clock_: Any = None, resolver: Any = None
    ) -> tuple[TestClient, Gateway]:
        # Never the network: DNS (sender authentication) answers from a fake, empty by default.
        resolver = resolver if resolver is not None else FakeResolver()
        app = create_app(settings, clock=clock_ or clock, adapters=adapters, resolver=resolver)
        client = await aiohttp_client(app)
        return client, app[GW]

    return start


@pytest.fixture
def agent_token() -> Callable[..., Awaitable[str]]:
    """await agent_token(gw, name='ana', role='l1', team=None) -> bearer token."""

    async def make(
        gw: Gateway, name: str = "ana", role: str = "l1", team: str | None = None
    ) -> str:
        now = gw.clock()

        def create(tx: Any) -> str:
            add_user(tx, name, role, team, "correct horse battery", now)
            return create_token(tx, name, now)

        return await gw.store.transact(create)

    return make


@pytest.fixture
def full_settings(make_settings: Callable[..., Settings]) -> Settings:
    """Every channel on (Twilio and Telegram credentials), every provider API unreachable
    (loopback port 9): only the gateway's own endpoints are exercised, never the network."""
    return make_settings(
        TWILIO_ACCOUNT_SID="AC" + "0" * 32,
        TWILIO_AUTH_TOKEN="twilio-token",
        TWILIO_API_BASE="http://127.0.0.1:9",
        TELEGRAM_BOT_TOKEN="123:abc",
        TELEGRAM_WEBHOOK_SECRET="s3cret",
        TELEGRAM_API_BASE="http://127.0.0.1:9",
    )


async def whatsapp_incident(gw: Gateway, provider_id: str) -> str:
    """A WhatsApp incident taken straight through the intake (no acknowledgement); its tracking."""
    receipt = await gw.intake.accept(
        Inbound(
            channel="whatsapp",
            provider_id=provider_id,
            contact=Contact(phone="+50688880000"),
            text="hola",
            received_at=gw.clock(),
            thread_by_contact=True,
            acknowledge=False,
        )
    )
    return receipt.tracking
