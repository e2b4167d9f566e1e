"""HTTP plumbing shared by the API and the adapters: the JSON error format and its middleware.

Errors: `{"error": {"code", "message", "field"?}}` with 400/401/403/404/409/413/429/503. A
client's mistake is never a 500; a 500 means a bug and is logged with its traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import lru_cache
from typing import Any

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

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
# Seconds a request body may take to arrive once its headers did ([limits] http_body_timeout).
BODY_TIMEOUT = web.AppKey("body_timeout", float)
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
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
    except RequestPayloadError as exc:  # a body aiohttp's parser could not read (client's fault)
        return error_response(400, f"the request body could not be read: {exc.args[0]}")
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
    """The JSON object of a request body, or a 400 naming what is wrong.

    The body was usually parsed already by `input_middleware` (JSON content types); any other
    content type is parsed here by the same strict parser.
    """
    if _JSON in request:
        parsed = request[_JSON]
        if not isinstance(parsed, dict):
            raise Rejected("the request body must be a JSON object", field="body")
        return parsed
    return parse_json_object(await request.read())


# --- The request-reading layer (issue #16 item 1) -------------------------------------------
# One place turns every malformed input into a 4xx before a handler runs: compressed or
# mislabelled bodies, JSON that Python's json module would crash on (lone surrogates, numbers
# past the int-string limit, 100,000-deep nesting), and credential headers or cookies that
# hmac.compare_digest cannot compare (non-ASCII).

_JSON = web.RequestKey("cmw_json_body", object)
# Headers and cookies holding secrets compared with hmac.compare_digest, which raises TypeError
# on a non-ASCII str (and .encode() raises on the surrogates aiohttp decodes bad bytes into).
# The providers' signature headers are not here: a wrong one, ASCII or not, is their 403
# (checklist T1, G1), and their adapters compare bytes.
CREDENTIAL_HEADERS = ("Authorization", "X-CSRF-Token", "Idempotency-Key")
COOKIE_PREFIX = "cmw_"
_BODY_METHODS = ("POST", "PUT", "PATCH", "DELETE")


class BadInput(Exception):
    """A request the gateway refuses before any handler: HTTP status and a message."""

    def __init__(self, status: int, message: str, field: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def parse_json_object(raw: bytes) -> dict[str, Any]:
    """A JSON object from bytes, strictly; Rejected naming what is wrong (see parse_json)."""
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise Rejected("the request body must be a JSON object", field="body")
    return data


def parse_json(raw: bytes) -> Any:
    """A JSON value from bytes, strictly (orjson: RFC 8259 and valid UTF-8 only).

    Raises Rejected naming what is wrong: lone UTF-16 surrogates (they cannot be stored or sent
    on), numbers too large for a double (stdlib json raises ValueError past 4,300 digits),
    nesting deeper than 1,024 levels (stdlib json raises RecursionError), NaN/Infinity.
    """
    if not raw or not raw.strip():
        raise Rejected("the request body must be JSON; it is empty", field="body")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        msg = f"the request body is not valid JSON: {_json_problem(exc)}"
        raise Rejected(msg, field="body") from None
    return data


def _json_problem(exc: orjson.JSONDecodeError) -> str:
    text = str(exc)
    if "surrogate" in text:
        return f"a string holds a lone UTF-16 surrogate (\\ud800-\\udfff) ({text})"
    if "depth" in text:
        return f"nested deeper than 1024 levels ({text})"
    if "infinity" in text or "number" in text:
        return f"a number is out of range ({text})"
    return text


def is_ascii(value: str) -> bool:
    """Whether a header or cookie value is plain printable ASCII."""
    return value.isascii() and value.isprintable()


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison that never raises, whatever the client sent."""
    if not given:
        return False
    return hmac.compare_digest(
        given.encode("utf-8", "surrogateescape"), expected.encode("utf-8", "surrogateescape")
    )


def check_headers(request: web.Request) -> None:
    """Raise BadInput for credential headers or gateway cookies that are not ASCII, or a
    Content-Encoding the gateway does not accept."""
    for name in CREDENTIAL_HEADERS:
        for value in request.headers.getall(name, []):
            if not is_ascii(value):
                raise BadInput(400, f"the {name} header must be printable ASCII", field=name)
    for name, value in request.cookies.items():
        if name.startswith(COOKIE_PREFIX) and not is_ascii(value):
            raise BadInput(400, f"the cookie {name} must be printable ASCII", field=name)
    encoding = request.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in ("", "identity") and request.method in _BODY_METHODS:
        # No provider compresses its webhooks; a compressed body would also let a small request
        # expand past client_max_size in the parser (RFC 9110 §8.4.1 allows 415 for this).
        raise BadInput(
            415,
            f"Content-Encoding {encoding!r} is not accepted; send the body uncompressed",
            field="Content-Encoding",
        )


def _is_json(request: web.Request) -> bool:
    ctype = request.content_type
    return ctype == "application/json" or ctype.endswith("+json")


@web.middleware
async def input_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse malformed input with the contract's 400/413/415 before any handler runs."""
    try:
        check_headers(request)
        routed = request.match_info.http_exception is None
        if routed and request.method in _BODY_METHODS and request.body_exists:
            # Every body is read here, whole, within the deadline (slowloris on bodies); the
            # handlers' read()/post()/json() then use aiohttp's cached copy.
            # A body that came whole with the headers needs no deadline (no timer is armed).
            whole = request.content.is_eof()
            async with asyncio.timeout(None if whole else request.app.get(BODY_TIMEOUT, 30.0)):
                raw = await request.read()
            if _is_json(request):
                request[_JSON] = parse_json(raw)
    except BadInput as exc:
        return error_response(exc.status, exc.message, field=exc.field)
    except Rejected as exc:
        return error_response(400, exc.message, code=exc.code, field=exc.field)
    except web.HTTPRequestEntityTooLarge:
        limit = request._client_max_size
        return error_response(413, f"the request body is larger than {limit} bytes")
    except RequestPayloadError as exc:
        return error_response(400, f"the request body could not be read: {exc.args[0]}")
    except TimeoutError:
        limit = request.app.get(BODY_TIMEOUT, 30.0)
        response = error_response(408, f"the request body did not arrive within {limit:g} s")
        response.force_close()  # the rest of the body is not waited for
        return response
    return await handler(request)
