"""WhatsApp test kit: a loopback fake of Twilio's REST API and media, signed webhook posts.

The fake speaks Twilio's wire format (form in, Message resource JSON out, error JSON with
`code`/`message`/`more_info`/`status`); media answers a Basic-authenticated GET on the API host
with a 302 to a pre-signed "CDN" path, as api.twilio.com does. Field sets of the webhook forms
follow Twilio's "Messaging webhook request" and "status callback" documentation.
"""

from __future__ import annotations

import base64
import itertools
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient
from multidict import MultiDict
from twilio.request_validator import RequestValidator
from yarl import URL

from adapters.twilio import status as twilio_status
from adapters.whatsapp import webhook as whatsapp_twilio
from gateway.core.services import Gateway

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "f2c3a1b0d9e8f7a6b5c4d3e2f1a0b9c8"
PUBLIC_URL = "https://soporte.callmyway.test"
WA_NUMBER = "+50640004000"
ADAPTERS = {"whatsapp": whatsapp_twilio.setup, "twilio_status": twilio_status.setup}
JPEG = b"\xff\xd8\xff\xe0" + b"\x00JFIF" + bytes(range(256)) * 8 + b"\xff\xd9"
_counter = itertools.count(1)


def sid(prefix: str = "SM") -> str:
    """A fresh Twilio-shaped SID (prefix + 32 hex digits)."""
    return prefix + uuid.uuid4().hex


@dataclass
class Media:
    """One media object the fake serves: bytes, declared type, and how it answers."""

    data: bytes
    content_type: str = "image/jpeg"
    status: int = 200
    redirect_to: str | None = None  # absolute Location instead of the CDN path


@dataclass
class FakeTwilio:
    """State of the fake: what it received and how it answers next."""

    url: str = ""
    sent: list[MultiDict[str]] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)  # "ok" | "429" | "500" | "21211" | "63016"
    media: dict[str, Media] = field(default_factory=dict)
    media_requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, auth)
    # (gateway's loopback base URL, status): call back *before* answering create(), as Twilio
    # sometimes does, to the StatusCallback path on the gateway.
    early_callback: tuple[str, str] | None = None

    def media_url(self, name: str) -> str:
        """Where Twilio would say the media of an inbound message lives."""
        return f"{self.url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/MM1/Media/{name}"


def _error(status: int, code: int, message: str) -> web.Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return web.json_response(body, status=status)


async def _call_back(target: tuple[str, str], callback_url: str, message_sid: str) -> None:
    base, status = target
    form = status_form(message_sid, status)
    path = URL(callback_url).path
    headers = {"X-Twilio-Signature": signature(path, form, url=callback_url.removesuffix(path))}
    async with (
        aiohttp.ClientSession() as session,
        session.post(base + path, data=form, headers=headers) as resp,
    ):
        assert resp.status == 200


def fake_app(state: FakeTwilio) -> web.Application:
    """Twilio's Messages.json and media endpoints on loopback."""

    async def create_message(request: web.Request) -> web.Response:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return _error(401, 20003, "Authenticate")
        form = await request.post()
        state.sent.append(MultiDict((k, str(v)) for k, v in form.items()))
        mode = state.modes.pop(0) if state.modes else "ok"
        if mode == "429":
            return _error(429, 20429, "Too Many Requests")
        if mode == "500":
            return _error(500, 20500, "Internal Server Error")
        if mode == "21211":
            return _error(400, 21211, "The 'To' number is not a valid phone number.")
        message_sid = sid("SM")
        if state.early_callback:
            await _call_back(state.early_callback, str(form["StatusCallback"]), message_sid)
        resource = {
            "account_sid": ACCOUNT_SID,
            "api_version": "2010-04-01",
            "body": form.get("Body", ""),
            "date_created": "Mon, 30 Nov 2026 15:00:00 +0000",
            "date_sent": None,
            "date_updated": "Mon, 30 Nov 2026 15:00:00 +0000",
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": form.get("From"),
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": None,
            "sid": message_sid,
            "status": "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message_sid}/Media.json"
            },
            "to": form.get("To"),
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{message_sid}.json",
        }
        return web.json_response(resource, status=201)

    async def media(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        state.media_requests.append((request.path, request.headers.get("Authorization")))
        item = state.media.get(name)
        if item is None:
            return _error(404, 20404, "Not found")
        location = item.redirect_to or f"{state.url}/cdn/{name}?Expires=1&Signature=abc"
        raise web.HTTPFound(location)

    async def cdn(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        state.media_requests.append((request.path, request.headers.get("Authorization")))
        item = state.media[name]
        if item.status != 200:
            return web.Response(status=item.status, text="unavailable")
        return web.Response(body=item.data, content_type=item.content_type)

    app = web.Application()
    app.router.add_post("/2010-04-01/Accounts/{account}/Messages.json", create_message)
    app.router.add_get("/2010-04-01/Accounts/{account}/Messages/{msg}/Media/{name}", media)
    app.router.add_get("/cdn/{name}", cdn)
    return app


def inbound_form(
    phone: str = "+5215512345678",
    body: str = "Hola, no tengo tono en mi línea desde esta mañana",
    *,
    message_sid: str | None = None,
    name: str = "Ana Pérez",
    media: list[tuple[str, str]] = (),  # type: ignore[assignment]
) -> MultiDict[str]:
    """A WhatsApp inbound webhook form as Twilio posts it (field set from Twilio's docs)."""
    message_sid = message_sid or sid("MM" if media else "SM")
    wa_id = phone.lstrip("+")
    form: MultiDict[str] = MultiDict(
        [
            ("SmsMessageSid", message_sid),
            ("NumMedia", str(len(media))),
            ("ProfileName", name),
            ("MessageType", "image" if media else "text"),
            ("SmsSid", message_sid),
            ("WaId", wa_id),
            ("SmsStatus", "received"),
            ("Body", body),
            ("To", f"whatsapp:{WA_NUMBER}"),
            ("NumSegments", "1"),
            ("ReferralNumMedia", "0"),
            ("MessageSid", message_sid),
            ("AccountSid", ACCOUNT_SID),
            ("From", f"whatsapp:{phone}"),
            ("ApiVersion", "2010-04-01"),
        ]
    )
    for index, (url, ctype) in enumerate(media):
        form.add(f"MediaContentType{index}", ctype)
        form.add(f"MediaUrl{index}", url)
    return form


MASK = "X"


def status_form(message_sid: str, status: str, **extra: str) -> MultiDict[str]:
    """A WhatsApp message status callback as Twilio posts it."""
    form: MultiDict[str] = MultiDict(
        [
            ("ChannelPrefix", "whatsapp"),
            ("ApiVersion", "2010-04-01"),
            ("MessageStatus", status),
            ("SmsSid", message_sid),
            ("SmsStatus", status),
            ("ChannelInstallSid", "XE" + "1" * 32),
            ("To", "whatsapp:+5215512345678"),
            ("From", f"whatsapp:{WA_NUMBER}"),
            ("MessageSid", message_sid),
            ("StructuredMessage", "false"),
            ("AccountSid", ACCOUNT_SID),
            # Twilio masks the last digits of the customer's address itself, as here.
            ("ChannelToAddress", "+52155123" + MASK * 5),
        ]
    )
    for key, value in extra.items():
        form.add(key, value)
    return form


def signature(
    path: str, form: MultiDict[str], *, url: str = PUBLIC_URL, token: str = AUTH_TOKEN
) -> str:
    """X-Twilio-Signature as Twilio computes it for `url + path` and the whole form."""
    return RequestValidator(token).compute_signature(url + path, form)


PostSigned = Callable[..., Awaitable[Any]]


async def post_signed(
    client: TestClient,
    path: str,
    form: MultiDict[str],
    *,
    sign_form: MultiDict[str] | None = None,
    url: str = PUBLIC_URL,
    headers: dict[str, str] | None = None,
) -> Any:
    """POST `form` url-encoded with a signature over `sign_form` (default: the form itself)."""
    sig = signature(path, sign_form if sign_form is not None else form, url=url)
    return await client.post(
        path, data=form, headers={"X-Twilio-Signature": sig, **(headers or {})}
    )


async def count(gw: Gateway, table: str) -> int:
    """Rows in a table (tests only)."""
    row = await gw.store.read(lambda tx: tx.one(f"SELECT count(*) AS n FROM {table}"))
    assert row is not None
    return int(row["n"])
