"""Channel adapters: each translates one provider's wire format to and from the core's types.

The registry is explicit (no dynamic imports): name → `setup(gw)`, which registers the
adapter's routes, outbox sender, scheduled-job handlers, migrations and listeners. Adapters never
touch the store's SQL, routing or SLA: they call `gw.intake.accept()` and map its receipt back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from adapters import (
    click2call_web,
    email_smtp,
    telegram_bot,
    twilio_status,
    voice_twilio,
    webchat_ws,
    whatsapp_twilio,
)

if TYPE_CHECKING:
    from gateway.app import Gateway

ADAPTERS: dict[str, Callable[[Gateway], None]] = {
    "email": email_smtp.setup,
    "telegram": telegram_bot.setup,
    "whatsapp": whatsapp_twilio.setup,
    "twilio_status": twilio_status.setup,
    "voice": voice_twilio.setup,
    "click2call": click2call_web.setup,
    "webchat": webchat_ws.setup,
}
