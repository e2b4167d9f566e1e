"""Twilio's REST client, shared by WhatsApp replies, voice and Click2Call calls.

It uses Twilio's `AsyncTwilioHttpClient` (never the blocking one) with a timeout, pointed at
`TWILIO_API_BASE`; one client is created with the app and closed at shutdown.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client

from config.settings import Settings
from gateway.core.providers import ProviderHealth

if TYPE_CHECKING:
    from gateway.core.services import Gateway

TWILIO_CLIENT = "twilio_client"  # key in gw.extras


class BoundedTwilioHttpClient(AsyncTwilioHttpClient):
    """Twilio's async HTTP client with its timeout applied.

    `AsyncTwilioHttpClient.request` passes its `timeout` argument (None unless a caller gives
    one) straight to aiohttp, where None means no limit at all; the client's own `timeout` is
    never used. An outbox sender must not hang forever on a silent API, so default to it.
    """

    health: ProviderHealth | None = None  # where each call's outcome is recorded (NOC alarms)

    async def request(
        self,
        *args: Any,
        timeout: float | None = None,  # noqa: ASYNC109 - the library method's signature
        **kwargs: Any,
    ) -> Any:
        """Make the request with the client's timeout unless the caller gave one; the outcome
        goes to the adapter health (`health`) when set: 5xx or no answer is a failure."""
        try:
            response = await super().request(*args, timeout=timeout or self.timeout, **kwargs)
        except Exception as exc:
            if self.health is not None:
                self.health.failed("twilio", f"{type(exc).__name__}: {exc}")
            raise
        if self.health is not None:
            status = getattr(response, "status_code", 200)
            if status >= 500:
                self.health.failed("twilio", f"Twilio answered {status}")
            else:
                self.health.ok("twilio")
        return response


def make_client(settings: Settings, health: ProviderHealth | None = None) -> Client:
    """A Twilio REST client on the async HTTP client, pointed at TWILIO_API_BASE."""
    http = BoundedTwilioHttpClient(timeout=10)
    http.health = health
    client = Client(settings.twilio.account_sid, settings.twilio.auth_token, http_client=http)
    client.api.base_url = settings.twilio.api_base
    return client


def twilio_client(gw: Gateway) -> Client:
    """The shared client created at start (503 when Twilio is not configured)."""
    client = gw.extras.get(TWILIO_CLIENT)
    if client is None:
        raise web.HTTPServiceUnavailable(reason="Twilio is not configured on this gateway")
    return client


def install_client(gw: Gateway) -> None:
    """Create the shared Twilio client with the app and close it at shutdown (idempotent)."""
    if gw.extras.get("twilio_client_installed"):
        return
    gw.extras["twilio_client_installed"] = True

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        if gw.settings.twilio.enabled:
            gw.extras[TWILIO_CLIENT] = make_client(gw.settings, gw.providers)
        yield
        client = gw.extras.pop(TWILIO_CLIENT, None)
        if client is not None:
            await client.http_client.close()

    gw.app.cleanup_ctx.append(ctx)
