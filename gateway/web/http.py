"""HTTP plumbing shared by the API and the adapters: the JSON error format and its middleware.

Errors: `{"error": {"code", "message", "field"?}}` with 400/401/403/404/409/413/429/503. A
client's mistake is never a 500; a 500 means a bug and is logged with its traceback.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any

from aiohttp import web

from gateway.core.errors import (
    Conflict,
    Forbidden,
    GatewayError,
    NotFound,
    Rejected,
    TemporaryFailure,
)

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Seconds after which a provider's webhook is logged as slow ([gateway] slow_webhook).
SLOW_WEBHOOK = web.AppKey("slow_webhook", float)
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "temporarily_unavailable",
}


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _parse_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def _trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(request: web.Request, trusted_proxies: tuple[str, ...]) -> str:
    """The address per-client limits count: the peer, or behind trusted proxies the client.

    X-Forwarded-For is read only when the direct peer is one of `trusted_proxies`, and then from
    the right, skipping the proxies' own hops: the first address a trusted proxy did not add is
    the client (anything to its left was written by the client and may be forged). Without
    trusted proxies the header is ignored, so no caller can pick its own address.
    (aiohttp-remotes' XForwardedFiltered does not check the peer, and XForwardedStrict refuses
    any request whose chain length differs, health checks included: hence this function.)
    """
    peer = request.remote or "unknown"
    networks = _parse_networks(trusted_proxies)
    if not networks or not _trusted(peer, networks):
        return peer
    hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", []) for h in v.split(",")]
    client = peer
    for hop in reversed(hops):
        try:
            client = str(ipaddress.ip_address(hop))
        except ValueError:
            return peer  # garbage in the chain: count the proxy, never a made-up name
        if not _trusted(client, networks):
            return client
    return client  # every hop is a trusted network: the left-most is the client


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """The contract's JSON error body."""
    body: dict[str, Any] = {"code": code or _CODES.get(status, "error"), "message": message}
    if field:
        body["field"] = field
    return web.json_response({"error": body}, status=status, headers=headers)


def status_of(exc: GatewayError) -> int:
    """HTTP status of a core error."""
    if isinstance(exc, TemporaryFailure):
        return 503
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Forbidden):
        return 403
    if isinstance(exc, Conflict):
        return 409
    return 400 if isinstance(exc, Rejected) else 500


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map core errors and aiohttp's own HTTP errors to the JSON error format on API paths;
    log a provider webhook answered after `SLOW_WEBHOOK` seconds (checklist T6)."""
    if not request.path.startswith("/webhooks/"):
        return await _answer(request, handler)
    started = time.monotonic()
    response = await _answer(request, handler)
    elapsed = time.monotonic() - started
    if elapsed > request.app.get(SLOW_WEBHOOK, 5.0):
        # Twilio gives up after 15 s and retries (Telegram likewise): the retry is deduplicated
        # on the provider's id, but a webhook this slow points at the database or the host.
        log.warning(
            "slow webhook: %s %s answered %d after %.1f s; the provider may retry it",
            request.method,
            request.path,
            response.status,
            elapsed,
        )
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except GatewayError as exc:
        status = status_of(exc)
        headers = {"Retry-After": "5"} if status == 503 else None
        return error_response(status, exc.message, code=exc.code, field=exc.field, headers=headers)
    except web.HTTPRequestEntityTooLarge:
        limit = request._client_max_size
        return error_response(413, f"the request body is larger than {limit} bytes")
    except web.HTTPException as exc:
        if exc.status >= 400 and _is_api(request):
            return error_response(exc.status, exc.reason or "error", headers=_keep(exc))
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal error; it has been logged", code="internal")


def _keep(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k in ("Allow", "Retry-After")}


def _is_api(request: web.Request) -> bool:
    return request.path.startswith(("/api/", "/webhooks/"))


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object of a request body, or a 400 naming what is wrong."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise
    if not raw:
        raise Rejected("the request body must be a JSON object", field="body")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Rejected(f"the request body is not valid JSON: {exc}", field="body") from None
    if not isinstance(data, dict):
        raise Rejected("the request body must be a JSON object", field="body")
    return data
