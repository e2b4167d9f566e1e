"""Composition root: `create_app(settings, *, clock, store)` wires the core and the adapters.

Adapters are listed explicitly in `adapters.ADAPTERS`; each `setup(gw)` adds its routes, senders,
job handlers, migrations and background listeners. Start-up order: store (open, migrate,
secret key) → workers → adapters' listeners; shutdown runs in reverse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Mapping
from typing import Any

from aiohttp import web

from config.settings import Settings
from gateway import workspace
from gateway.core import feedback, health, noc, quarantine, retention
from gateway.core.bus import Bus
from gateway.core.dns import Resolver
from gateway.core.intake import Intake
from gateway.core.metrics import Metrics
from gateway.core.outbox import Outbox
from gateway.core.providers import ProviderHealth
from gateway.core.scheduler import Scheduler
from gateway.core.services import GW, AdapterSetup, Gateway
from gateway.core.texts import Texts
from gateway.core.timeutil import Clock, parse_iso, utcnow
from gateway.store.postgres import PostgresStore, is_postgres_url
from gateway.store.protocol import Store
from gateway.store.sqlite import SqliteStore, sqlite_path
from gateway.web import api, forensics, listen, reports
from gateway.web.http import BODY_TIMEOUT, SLOW_WEBHOOK, error_middleware, input_middleware

log = logging.getLogger(__name__)


def render_ack(settings: Settings, texts: Texts, payload: dict[str, Any]) -> str:
    """The acknowledgement text of an outbox 'ack' row, in the customer's language."""
    lines = settings.routing.lines
    line = lines.get(payload.get("country") or "", settings.routing.default_line)
    return texts.render(
        "ack",
        payload.get("language") or line.language,
        tracking=payload["tracking"],
        name=payload.get("name"),
        line=line,
        after_hours=bool(payload.get("after_hours")),
        opens_at=parse_iso(payload.get("opens_at")),
    )


def make_store(settings: Settings) -> Store:
    """The store named by the settings' database URL."""
    if is_postgres_url(settings.db_url):
        return PostgresStore(settings.db_url, instance=settings.instance)
    return SqliteStore(sqlite_path(settings.db_url))


async def prepare_store(gw: Gateway) -> None:
    """Open, migrate, and load (or create once) the secret key."""
    await gw.store.open()
    await gw.store.migrate(gw.migrations)
    if gw.settings.secret_key:
        gw.secret_key = gw.settings.secret_key
    else:
        fresh = secrets.token_urlsafe(32)
        gw.secret_key = await gw.store.transact(lambda tx: tx.meta_set_default("secret_key", fresh))


def create_app(
    settings: Settings,
    *,
    clock: Clock = utcnow,
    store: Store | None = None,
    adapters: Mapping[str, AdapterSetup] | None = None,
    resolver: Resolver | None = None,
) -> web.Application:
    """Build the whole gateway as an aiohttp application (listeners start with the app).

    `resolver` answers the DNS queries of sender authentication (tests pass a fake one); by
    default the system's resolvers through dnspython.
    """
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[error_middleware, input_middleware],
        # Bodies are never decompressed: input_middleware answers 415 to any Content-Encoding
        # (a decompressing parser fails after the handler answered, or expands a small body).
        handler_args={"auto_decompress": False, **listen.handler_args(settings)},
    )
    app[SLOW_WEBHOOK] = settings.slow_webhook.total_seconds()
    app[BODY_TIMEOUT] = settings.limits.http_body_timeout.total_seconds()
    app[listen.GUARD] = listen.make_guard(settings)  # per-address cap, header deadline
    store = store or make_store(settings)
    metrics = Metrics()
    metrics.watch_store(store)
    bus = Bus()
    texts = Texts()
    outbox = Outbox(store, clock, settings.outbox, bus, metrics)
    intake = Intake(settings, store, clock, texts, bus, metrics)
    gw = Gateway(
        settings=settings,
        store=store,
        clock=clock,
        texts=texts,
        bus=bus,
        metrics=metrics,
        intake=intake,
        outbox=outbox,
        scheduler=Scheduler(store, clock, metrics, bus),
        app=app,
        resolver=resolver,
        providers=ProviderHealth(clock, metrics),
    )
    app[GW] = gw
    gw.add_migrations("feedback", feedback.MIGRATIONS)  # csat, recently resolved conversations
    gw.add_migrations("quarantine", quarantine.MIGRATIONS)  # held items, background work claims
    gw.add_migrations("robust_edge", health.MIGRATIONS)  # health probe row, counting indexes
    intake.on_commit = outbox.wake
    outbox.render_ack = lambda payload: render_ack(settings, texts, payload)
    app.cleanup_ctx.append(_store_ctx)
    app.cleanup_ctx.append(_workers_ctx)
    api.setup(app)
    workspace.setup(gw)  # agent pages, sessions and the life-cycle actions API
    reports.setup(app)
    gw.add_migrations("forensics", forensics.MIGRATIONS)  # search and event-history indexes
    forensics.setup(app)  # incident search, event history, complete record, alarm episodes
    noc.setup(gw)  # NOC alarms: thresholds, episodes, notices (README "The NOC")
    if adapters is None:
        from adapters import ADAPTERS

        adapters = ADAPTERS
    for name, setup in adapters.items():
        log.debug("setting up adapter %s", name)
        setup(gw)
    return app


async def _store_ctx(app: web.Application) -> AsyncIterator[None]:
    gw = app[GW]
    await prepare_store(gw)
    yield
    await gw.store.close()


async def _workers_ctx(app: web.Application) -> AsyncIterator[None]:
    gw = app[GW]
    tasks = [
        asyncio.create_task(gw.outbox.run(), name="outbox"),
        asyncio.create_task(gw.scheduler.run(), name="scheduler"),
        # Other instances' changes (PostgreSQL) reach this instance's live pages.
        asyncio.create_task(gw.store.follow(gw.bus.publish), name="change-feed"),
        asyncio.create_task(
            retention.run(gw.store, gw.clock, gw.settings.retention), name="retention"
        ),
    ]
    yield
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
