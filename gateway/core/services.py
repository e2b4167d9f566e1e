"""The services one running gateway is made of, handed to every adapter's `setup(gw)`.

This is the core's face towards the edges: adapters and the HTTP read side take these services
(and `gw_of(request)`) and never import the composition root (`gateway.app`) that builds them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from config.settings import Settings
from gateway.core.auth import User
from gateway.core.bus import Bus
from gateway.core.dns import Resolver
from gateway.core.intake import Intake
from gateway.core.metrics import Metrics
from gateway.core.outbox import Outbox
from gateway.core.providers import ProviderHealth
from gateway.core.replies import ReplyGuard
from gateway.core.scheduler import Scheduler
from gateway.core.texts import Texts
from gateway.core.timeutil import Clock
from gateway.store.migration import Migration, Plan
from gateway.store.protocol import Store

AdapterSetup = Callable[["Gateway"], None]


@dataclass
class Gateway:
    """The services one running gateway is made of; adapters receive this in `setup`."""

    settings: Settings
    store: Store
    clock: Clock
    texts: Texts
    bus: Bus
    metrics: Metrics
    intake: Intake
    outbox: Outbox
    scheduler: Scheduler
    app: web.Application
    migrations: Plan = field(default_factory=list)
    authenticators: list[Callable[[web.Request], Awaitable[User | None]]] = field(
        default_factory=list
    )
    secret_key: str = ""
    reply_guards: dict[str, ReplyGuard] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)
    resolver: Resolver | None = None  # DNS for sender authentication; None: the system's
    providers: ProviderHealth = field(default_factory=ProviderHealth)  # adapter health (NOC)

    def add_migrations(self, component: str, migrations: list[Migration]) -> None:
        """Tables an adapter owns, applied after the core's at start."""
        self.migrations.append((component, migrations))

    def after_commit(self, notice: dict[str, Any]) -> None:
        """Publish a committed change and wake the outbox (new rows may be due)."""
        self.bus.publish(notice)
        self.outbox.wake()


GW = web.AppKey("gw", Gateway)


def gw_of(request: web.Request) -> Gateway:
    """The gateway services of the app handling this request."""
    return request.app[GW]
