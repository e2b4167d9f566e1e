"""Channel adapters: each package translates one provider's wire format to and from the core.

The registry is explicit (no dynamic imports): name → `setup(gw)`, which registers the
adapter's routes, outbox sender, scheduled-job handlers, migrations and listeners. Adapters
depend only on the core (`gateway.core`, `gateway.store`'s `Tx`, `gateway.web.http`); they never
import each other except through a provider package they share (`adapters.twilio`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from adapters import click2call, email, telegram, twilio, voice, webchat, whatsapp

if TYPE_CHECKING:
    from gateway.core.services import Gateway

ADAPTERS: dict[str, Callable[[Gateway], None]] = {
    "email": email.setup,
    "telegram": telegram.setup,
    "whatsapp": whatsapp.setup,
    "twilio_status": twilio.setup,
    "voice": voice.setup,
    "click2call": click2call.setup,
    "webchat": webchat.setup,
}
