"""WhatsApp through Twilio: the inbound webhook (answered with TwiML) and the channel's wiring.

POST /webhooks/twilio/whatsapp: signature check → one `Inbound` → `intake.accept` → TwiML with
the acknowledgement for a new incident, an empty `<Response/>` otherwise. Store down → 503, so in
the Twilio Console (Messaging › Senders › WhatsApp senders › the sender) set "Webhook URL for
incoming messages" to GATEWAY_PUBLIC_URL/webhooks/twilio/whatsapp and "Fallback URL" to
GATEWAY_PUBLIC_URL/webhooks/twilio/whatsapp/fallback: Twilio calls it when the first answers 5xx
or times out. The fallback tries the intake once more; if the store still cannot commit, it keeps
the signed form on disk (`adapters.twilio.spool`, fsynced), answers 200 with a short "received"
message, and the tracking number follows through the outbox once the spool is replayed.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape as xml_escape

from aiohttp import web
from multidict import MultiDict, MultiDictProxy
from twilio.twiml.messaging_response import MessagingResponse
from yarl import URL

from adapters.twilio.client import install_client
from adapters.twilio.signature import signed_url, verified_form
from adapters.twilio.spool import TwilioSpool, spool_of
from adapters.whatsapp.media import JOB_KIND, MediaFetcher
from adapters.whatsapp.outbound import make_reply_guard, make_sender
from gateway.core.errors import Rejected, TemporaryFailure
from gateway.core.language import detect_language
from gateway.core.model import AttachmentIn, Contact, Inbound, Receipt
from gateway.core.services import gw_of
from gateway.core.timeutil import iso
from routing.phone import normalize_phone
from routing.resolve import resolve_line

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
WEBHOOK_PATH = "/webhooks/twilio/whatsapp"
FALLBACK_PATH = WEBHOOK_PATH + "/fallback"
MAX_MEDIA = 10  # Twilio: at most 10 media per message
MAX_SID = 64


def _phone(form: Mapping[str, str]) -> str:
    raw = form.get("From", "")
    if not raw.lower().startswith("whatsapp:"):
        raise Rejected(f"From must be 'whatsapp:+E164', not {raw[:40]!r}", field="From")
    phone = normalize_phone(raw)
    if phone is None:
        raise Rejected(f"From {raw[:40]!r} is not a valid phone number", field="From")
    return phone


def _attachments(form: Mapping[str, str]) -> tuple[AttachmentIn, ...]:
    count_text = form.get("NumMedia", "0").strip() or "0"
    if not count_text.isdigit() or int(count_text) > MAX_MEDIA:
        message = f"NumMedia must be 0 to {MAX_MEDIA}, not {count_text[:10]!r}"
        raise Rejected(message, field="NumMedia")
    found = []
    for index in range(int(count_text)):
        url = form.get(f"MediaUrl{index}", "").strip()
        if not url:
            raise Rejected(f"MediaUrl{index} is missing", field=f"MediaUrl{index}")
        ctype = form.get(f"MediaContentType{index}", "application/octet-stream").strip().lower()
        # Twilio's media URLs end with the Media SID (ME...): a stable, safe file name.
        stem = "".join(c for c in URL(url).name if c.isalnum())[:40] or f"media{index}"
        found.append(
            AttachmentIn(
                filename=stem + (mimetypes.guess_extension(ctype) or ""),
                content_type=ctype[:100],
                size=0,
                data=None,  # fetched after the commit (`media`)
                url=url[:2000],
            )
        )
    return tuple(found)


def _text(form: Mapping[str, str], attachments: tuple[AttachmentIn, ...]) -> str:
    body = form.get("Body", "").strip()
    if body:
        return body
    if form.get("Latitude") and form.get("Longitude"):
        place = " ".join(filter(None, (form.get("Label"), form.get("Address"))))
        return f"[ubicación {form['Latitude']},{form['Longitude']}] {place}".strip()
    if attachments:
        return f"[{len(attachments)} archivo(s) adjunto(s)]"
    return ""


def parse_inbound(form: Mapping[str, str], now: datetime, raw: bytes | None = None) -> Inbound:
    """A Twilio WhatsApp webhook form → the core's Inbound (Rejected names the bad field)."""
    sid = form.get("MessageSid", "").strip() or form.get("SmsMessageSid", "").strip()
    if not sid or len(sid) > MAX_SID or not sid.isalnum():
        raise Rejected("MessageSid is missing or malformed", field="MessageSid")
    phone = _phone(form)
    name = form.get("ProfileName", "").strip()[:100] or None
    attachments = _attachments(form)
    return Inbound(
        channel="whatsapp",
        provider_id=sid,
        contact=Contact(name=name, phone=phone),
        text=_text(form, attachments),
        received_at=now,
        attachments=attachments,
        thread_by_contact=True,
        acknowledge=False,  # the acknowledgement is the TwiML answer itself
        author=name,
        raw=raw,
        meta={"wa_id": form.get("WaId")},
    )


# The library's answer without a message (a follow-up): the same every time, built once.
_NO_MESSAGE = str(MessagingResponse())


def twiml(receipt: Receipt) -> web.Response:
    """The TwiML answer: the acknowledgement for a new incident, thanks for a rating, nothing
    for another follow-up."""
    # A retried MessageSid (duplicate) gets the same answer as the first delivery.
    if receipt.follow_up == "csat":
        return twiml_text(receipt.ack_text)  # thanks for the rating
    if not receipt.created:
        return web.Response(text=_NO_MESSAGE, content_type="application/xml")
    return twiml_text(receipt.ack_text)


def _message_skeleton() -> tuple[str, str]:
    """The library's TwiML for one message, built once around a marker: (before, after) the text.

    ElementTree, which the library serializes with, escapes a text node's &, < and > and nothing
    else; `xml_escape` does the same, so `before + xml_escape(text) + after` is the library's
    answer for every text (a test holds the two equal) without building a tree per request.
    """
    marker = "TWIML-MESSAGE-TEXT"
    response = MessagingResponse()
    response.message(marker)
    before, after = str(response).split(marker)
    return before, after


_BEFORE_TEXT, _AFTER_TEXT = _message_skeleton()


def twiml_text(text: str) -> web.Response:
    """TwiML answering the customer with one message."""
    if text:
        body = _BEFORE_TEXT + xml_escape(text) + _AFTER_TEXT
    else:  # ElementTree writes an empty element as <Message />
        response = MessagingResponse()
        response.message(text)
        body = str(response)
    return web.Response(text=body, content_type="application/xml")


async def _accept(gw: Gateway, fetcher: MediaFetcher, inbound: Inbound) -> Receipt:
    """Commit the message (and its media job, before any answer); start fetching its media."""
    receipt = await gw.intake.accept(inbound)
    if inbound.attachments:
        await fetcher.ensure_job(inbound.provider_id)
        fetcher.start(inbound.provider_id)
    return receipt


async def _signed_form(request: web.Request, gw: Gateway) -> MultiDictProxy[str]:
    try:
        return await verified_form(request, gw.settings)
    except web.HTTPForbidden:
        gw.metrics.reject("whatsapp", "signature")
        raise


def make_handler(fetcher: MediaFetcher) -> Callable[[web.Request], Awaitable[web.Response]]:
    """POST /webhooks/twilio/whatsapp."""

    async def whatsapp_webhook(request: web.Request) -> web.Response:
        gw = gw_of(request)
        form = await _signed_form(request, gw)
        inbound = parse_inbound(form, gw.clock(), raw=await request.read())
        try:
            receipt = await _accept(gw, fetcher, inbound)
        except TemporaryFailure:
            # 503 so Twilio retries or calls the Fallback URL; the MessageSid dedupes it.
            log.warning("WhatsApp %s not committed: answering 503", inbound.provider_id)
            raise
        return twiml(receipt)

    return whatsapp_webhook


def make_fallback_handler(
    fetcher: MediaFetcher, spool: TwilioSpool
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """POST /webhooks/twilio/whatsapp/fallback: the intake, else the disk spool (checklist T8)."""

    async def whatsapp_fallback(request: web.Request) -> web.Response:
        gw = gw_of(request)
        form = await _signed_form(request, gw)  # Twilio signs the fallback URL it calls
        inbound = parse_inbound(form, gw.clock(), raw=await request.read())
        try:
            return twiml(await _accept(gw, fetcher, inbound))
        except TemporaryFailure:
            pass
        pairs = [(k, v) for k, v in form.items()]
        url = signed_url(gw.settings, request)
        signature = request.headers.get("X-Twilio-Signature", "")
        try:
            await asyncio.to_thread(spool.put, "whatsapp", pairs, url, signature, iso(gw.clock()))
        except OSError as exc:  # nothing kept: Twilio must see an error
            log.error("WhatsApp %s could not be spooled: %s", inbound.provider_id, exc)
            raise TemporaryFailure("the message could not be kept; try again") from exc
        log.warning("WhatsApp %s spooled to disk: the store cannot commit", inbound.provider_id)
        return twiml_text(gw.texts.render("spooled", _language(gw, inbound), name=inbound.author))

    return whatsapp_fallback


def make_replay(gw: Gateway, fetcher: MediaFetcher) -> Callable[[list[tuple[str, str]]], Any]:
    """The spool's processor: a spooled form through the intake, acknowledged via the outbox
    (its TwiML answer is long gone)."""

    async def replay(pairs: list[tuple[str, str]]) -> None:
        form = MultiDictProxy(MultiDict(pairs))
        inbound = parse_inbound(form, gw.clock(), raw=urlencode(pairs).encode())
        receipt = await _accept(gw, fetcher, replace(inbound, acknowledge=True))
        if not receipt.duplicate:
            gw.outbox.wake()

    return replay


def _language(gw: Gateway, inbound: Inbound) -> str:
    """The customer's language before any incident exists: their words, else their line's."""
    line = resolve_line(gw.settings.routing, phone=inbound.contact.phone).line
    return detect_language(inbound.text) or line.language


def setup(gw: Gateway) -> None:
    """Register the webhook, the media fetcher and its job, the outbox sender and reply guard."""
    install_client(gw)
    fetcher = MediaFetcher(gw)
    gw.extras["whatsapp_media"] = fetcher
    gw.app.cleanup_ctx.append(fetcher.context)
    gw.scheduler.register(JOB_KIND, fetcher.run_job)
    gw.outbox.register("whatsapp", make_sender(gw))
    gw.reply_guards["whatsapp"] = make_reply_guard(gw.settings)
    gw.app.router.add_post(WEBHOOK_PATH, make_handler(fetcher))
    spool = spool_of(gw)
    spool.register("whatsapp", make_replay(gw, fetcher))
    gw.app.router.add_post(FALLBACK_PATH, make_fallback_handler(fetcher, spool))
