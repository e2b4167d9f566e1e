"""Twilio webhook signatures: every Twilio channel verifies its callers here.

Signatures are verified against `GATEWAY_PUBLIC_URL` + the request path and query (what Twilio
signed), never the URL this process sees behind a proxy, and over the whole multi-valued form
(`getall`), with Twilio's own `RequestValidator`.
"""

from __future__ import annotations

import hmac
import logging
from functools import lru_cache
from typing import Any

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from twilio.request_validator import RequestValidator, get_signature_algorithm

from config.settings import Settings

log = logging.getLogger(__name__)
# Twilio's richest webhook (WhatsApp with 10 media) has well under 100 fields; a form with far
# more is not Twilio and is refused before parsing or signature work (checklist T11).
MAX_FORM_FIELDS = 256


class FormTooLarge(web.HTTPClientError):
    """413 for a form with more fields than any Twilio webhook sends."""

    status_code = 413


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
    raw = await request.read()  # bounded by the app's client_max_size (413 above it)
    if request.content_type == "application/x-www-form-urlencoded":
        fields = raw.count(b"&") + 1
        if fields > MAX_FORM_FIELDS:
            log.warning("rejected Twilio webhook %s: %d form fields", request.path, fields)
            raise FormTooLarge(reason=f"the form has {fields} fields; at most {MAX_FORM_FIELDS}")
    form = await request.post()  # parses the body read above (aiohttp caches it)
    params = _text_fields(form)
    algorithm = get_signature_algorithm(
        request.headers.get("X-Twilio-Webhooks-Signature-Settings", "")
    )
    validator = _validator(settings.twilio.auth_token or "")
    url = signed_url(settings, request)
    if not signature or not _valid(validator, url, params, signature, algorithm):
        # Security log line without the body, the signature or the token (checklist T1).
        log.warning("rejected Twilio webhook %s: bad or missing signature", request.path)
        raise web.HTTPForbidden(reason="invalid Twilio signature")
    return params


def _text_fields(form: MultiDictProxy[Any]) -> MultiDictProxy[str]:
    """The form's text fields (files are not signed): the parsed form itself when, as for every
    urlencoded body Twilio sends, there is nothing else (no copy per request)."""
    if all(isinstance(v, str) for v in form.values()):
        return form
    return MultiDictProxy(MultiDict((k, v) for k, v in form.items() if isinstance(v, str)))


@lru_cache(maxsize=4)
def _validator(token: str) -> RequestValidator:
    return RequestValidator(token)


def _valid(
    validator: RequestValidator,
    url: str,
    params: MultiDictProxy[str],
    signature: str,
    algorithm: str | None,
) -> bool:
    # `validate` always signs two URL variants (with and without an explicit port); the exact
    # URL matches in the common case, so try it alone first and keep `validate` for the rest.
    # The library signs (it reads every value of a repeated field with `getall`); the result is
    # compared in constant time by hmac.compare_digest (C) instead of its Python loop.
    try:
        expected = validator.compute_signature(url, params, algorithm)
        if hmac.compare_digest(expected.encode(), signature.encode()):
            return True
    except ValueError:  # an algorithm this library does not know
        return False
    return bool(validator.validate(url, params, signature, algorithm))
