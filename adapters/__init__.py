"""Channel adapters: each translates one provider's wire format to and from the core's types.

The registry is explicit (no dynamic imports): name → `setup(gw)`, which registers the
adapter's routes, outbox sender, scheduled-job handlers, migrations and listeners. Adapters never
touch the store's SQL, routing or SLA: they call `gw.intake.accept()` and map its receipt back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from adapters import telegram_bot

if TYPE_CHECKING:
    from gateway.app import Gateway

ADAPTERS: dict[str, Callable[[Gateway], None]] = {
    "telegram": telegram_bot.setup,
}
