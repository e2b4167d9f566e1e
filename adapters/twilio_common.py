"""What every Twilio channel shares: webhook signature checks and the async REST client.

Signatures are verified against `GATEWAY_PUBLIC_URL` + the request path and query (what Twilio
signed), never the URL this process sees behind a proxy, and over the whole multi-valued form
(`getall`), with Twilio's own `RequestValidator`. The REST client uses Twilio's
`AsyncTwilioHttpClient` (never the blocking one) and `TWILIO_API_BASE`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.rest import Client

from config.settings import Settings

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)
TWILIO_CLIENT = "twilio_client"  # key in gw.extras


def signed_url(settings: Settings, request: web.Request) -> str:
    """The URL Twilio signed: the public base URL plus the path and query it requested."""
    return settings.public_url + request.rel_url.path_qs


def twilio_enabled(settings: Settings) -> None:
    """Raise 503 when Twilio credentials are not configured (CONTRACT)."""
    if not settings.twilio.enabled:
        raise web.HTTPServiceUnavailable(reason="Twilio is not configured on this gateway")


async def verified_form(request: web.Request, settings: Settings) -> MultiDictProxy[str]:
    """The webhook's form if its X-Twilio-Signature is valid; 403 otherwise (nothing stored)."""
    twilio_enabled(settings)
    signature = request.headers.get("X-Twilio-Signature", "")
    form = await request.post()  # bounded by the app's client_max_size (413 above it)
    params: MultiDict[str] = MultiDict((k, v) for k, v in form.items() if isinstance(v, str))
    algorithm = get_signature_algorithm(
        request.headers.get("X-Twilio-Webhooks-Signature-Settings", "")
    )
    validator = RequestValidator(settings.twilio.auth_token or "")
    url = signed_url(settings, request)
    if not signature or not validator.validate(url, params, signature, algorithm):
        # Security log line without the body, the signature or the token (checklist T1).
        log.warning("rejected Twilio webhook %s: bad or missing signature", request.path)
        raise web.HTTPForbidden(reason="invalid Twilio signature")
    return MultiDictProxy(params)


def make_client(settings: Settings) -> Client:
    """A Twilio REST client on the async HTTP client, pointed at TWILIO_API_BASE."""
    client = Client(
        settings.twilio.account_sid,
        settings.twilio.auth_token,
        http_client=AsyncTwilioHttpClient(timeout=10),
    )
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
            gw.extras[TWILIO_CLIENT] = make_client(gw.settings)
        yield
        client = gw.extras.pop(TWILIO_CLIENT, None)
        if client is not None:
            await client.http_client.close()

    gw.app.cleanup_ctx.append(ctx)
