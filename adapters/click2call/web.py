"""POST /api/v1/click2call: the website's call-back form becomes an incident and a call.

Order (checklist T12): origin allow-list → validation and toll-fraud guard → idempotency key and
per-number/per-IP hourly limits, stored in one transaction → intake (incident committed) →
call-back and its job persisted with the 202 body → in hours the call is placed; after hours
the scheduler places it when the line opens. Never a call before its marker is committed.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web
from multidict import MultiDictProxy
from yarl import URL

from adapters.click2call import calls as calls
from adapters.click2call import ledger as ledger
from adapters.click2call.guard import CallbackRequest, idempotency_key, parse_request
from adapters.twilio.calls import reply_sender
from adapters.twilio.client import install_client
from adapters.twilio.signature import twilio_enabled
from gateway.core.errors import Forbidden, GatewayError, TemporaryFailure
from gateway.core.model import Contact, Inbound, Receipt
from gateway.core.services import GW
from gateway.core.timeutil import iso
from gateway.web.http import client_address, error_response, read_json, status_of
from routing.phone import country_of_phone

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
PATH = "/api/v1/click2call"
WATCHDOG_DELAY = timedelta(minutes=2)  # in hours: the job re-checks the call soon after


def allowed_origin(gw: Gateway, origin: str | None) -> str | None:
    """The CORS origin to grant: the origin itself when listed or the gateway's own; else None.

    Never '*': an empty list allows only the gateway's own pages (issue #15), since any website
    could otherwise make its visitors' browsers request calls to numbers of its choosing.
    """
    allowed = gw.settings.click2call.allowed_origins
    own = str(URL(gw.settings.public_url).origin())
    if origin and (origin.lower() in allowed or origin == own):
        return origin
    return None


def _cors(resp: web.StreamResponse, grant: str | None) -> web.StreamResponse:
    if grant:
        resp.headers["Access-Control-Allow-Origin"] = grant
        resp.headers["Vary"] = "Origin"
        resp.headers["Access-Control-Expose-Headers"] = "Retry-After"
    return resp


async def preflight(request: web.Request) -> web.StreamResponse:
    """OPTIONS: CORS preflight of the website's JSON POST."""
    grant = allowed_origin(request.app[GW], request.headers.get("Origin"))
    if grant is None:
        return error_response(403, "this website origin may not request calls", field="Origin")
    resp = web.Response(status=204)
    resp.headers["Access-Control-Allow-Methods"] = "POST"
    resp.headers["Access-Control-Allow-Headers"] = "Content-Type, Idempotency-Key"
    resp.headers["Access-Control-Max-Age"] = "600"
    return _cors(resp, grant)


def _inbound(gw: Gateway, req: CallbackRequest, request_id: str) -> Inbound:
    cfg = gw.settings.routing
    line = cfg.lines.get(country_of_phone(req.phone) or "", cfg.default_line)
    text = gw.texts.render(
        "voice_callback_request",
        line.language,
        name=req.name,
        phone=req.phone,
        email=req.email,
        description=req.description,
    )
    # The form proves nothing about who filled it in: its name, phone and email are claims,
    # never an identity that finds, fills or threads into another contact's incidents.
    claims = {"name": req.name, "phone": req.phone, "email": req.email or ""}
    return Inbound(
        channel="click2call",
        provider_id=request_id,
        contact=Contact(),
        claims={k: v for k, v in claims.items() if v},
        text=text,
        received_at=gw.clock(),
        chosen_country=req.country,
        acknowledge=False,  # the 202 answers the website; the call itself is the contact
        author=req.name,
    )


def _body(receipt: Receipt) -> dict[str, Any]:
    scheduled = receipt.after_hours and receipt.opens_at is not None
    return {
        "tracking": receipt.tracking,
        "status": "scheduled" if scheduled else "calling",
        "scheduled_for": iso(receipt.opens_at) if scheduled else None,
    }


async def _handle(request: web.Request, gw: Gateway) -> web.Response:
    if allowed_origin(gw, request.headers.get("Origin")) is None:
        gw.metrics.reject("click2call", "origin")
        raise Forbidden("this website origin may not request calls", field="Origin")
    twilio_enabled(gw.settings)
    req = parse_request(await read_json(request), gw.settings)
    key = idempotency_key(request.headers.get("Idempotency-Key"))
    now = gw.clock()
    limits = {
        "phone": gw.settings.click2call.max_calls_per_number_per_hour,
        "ip": gw.settings.click2call.max_calls_per_ip_per_hour,
    }
    # X-Forwarded-For only from [gateway] trusted_proxies: any other caller could forge it and
    # escape the per-address limit.
    ip = client_address(request, gw.settings.trusted_proxies)
    admission = await gw.store.transact(
        lambda tx: ledger.admit(
            tx, key=key, phone=req.phone, ip=ip, request_id=uuid.uuid4().hex, now=now, limits=limits
        ),
        keys=ledger.admit_keys(key, req.phone, ip),
    )
    if admission.retry_after is not None:
        gw.metrics.reject("click2call", f"rate_limited_{admission.scope}")
        what = "this number" if admission.scope == "phone" else "this address"
        return error_response(
            429,
            f"too many call requests for {what}; try again later",
            headers={"Retry-After": str(admission.retry_after)},
        )
    if admission.body is not None:
        return web.json_response(admission.body, status=202)
    receipt = await gw.intake.accept(_inbound(gw, req, admission.request_id))
    body = _body(receipt)
    after_hours = body["status"] == "scheduled"
    run_at = now + WATCHDOG_DELAY
    if after_hours and receipt.opens_at is not None:
        run_at = receipt.opens_at
    row = {
        "tracking": receipt.tracking,
        "incident_id": receipt.incident_id,
        "request_id": admission.request_id,
        "phone": req.phone,
        "name": req.name,
        "line": receipt.country,
        "language": receipt.language,
    }
    body, new = await gw.store.transact(
        lambda tx: ledger.register(tx, request=row, key=key, body=body, run_at=run_at, now=now)
    )
    if new:
        gw.after_commit({"type": "incident", "event": "updated", "tracking": receipt.tracking})
    if new and not after_hours:
        await calls.run_attempt(gw, receipt.tracking, 1)
    return web.json_response(body, status=202)


async def click2call(request: web.Request) -> web.StreamResponse:
    """POST /api/v1/click2call → 202 {"tracking", "status", "scheduled_for"}."""
    gw = request.app[GW]
    grant = allowed_origin(gw, request.headers.get("Origin"))
    try:
        resp: web.StreamResponse = await _handle(request, gw)
    except GatewayError as exc:
        status = status_of(exc)
        headers = {"Retry-After": "5"} if isinstance(exc, TemporaryFailure) else None
        resp = error_response(status, exc.message, code=exc.code, field=exc.field, headers=headers)
    return _cors(resp, grant)


def setup(gw: Gateway) -> None:
    """The Click2Call endpoint, answer webhook, job handler, status handler and tables."""
    install_client(gw)
    gw.add_migrations("click2call", ledger.MIGRATIONS)
    router = gw.app.router
    router.add_post(PATH, click2call)
    router.add_route("OPTIONS", PATH, preflight)
    router.add_post(calls.ANSWER_PATH, calls.answer)
    gw.scheduler.register(ledger.JOB, calls.job_handler(gw))
    gw.outbox.register("click2call", reply_sender(gw))

    async def handler(form: MultiDictProxy[str]) -> None:
        await calls.on_call_status(gw, form)

    gw.extras.setdefault("twilio_call_status_handlers", []).append(handler)
