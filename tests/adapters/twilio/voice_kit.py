"""Voice and Click2Call test kit: a loopback fake of Twilio's Calls API and signed webhooks.

The fake speaks the 2010-04-01 REST wire format (form-encoded POST, JSON answers, Basic auth,
Twilio's error JSON) so the real `twilio` client is pointed at it through TWILIO_API_BASE.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from email.utils import format_datetime
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from adapters.click2call import web as click2call_web
from adapters.twilio import status as twilio_status
from adapters.voice import webhook as voice_twilio
from tests.conftest import FakeClock

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token-5f2b"
PUBLIC_URL = "https://gw.callmyway.test"
VOICE_ADAPTERS = {
    "twilio_status": twilio_status.setup,
    "voice": voice_twilio.setup,
    "click2call": click2call_web.setup,
}


class FakeTwilio:
    """Calls.json of one account: create (POST) and list (GET), with failure modes."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.calls: list[dict[str, Any]] = []  # calls that exist at "Twilio"
        self.requests: list[MultiDict[str]] = []  # every create request received
        self.mode = "ok"  # "ok" | "500" | "400" | "timeout" (call created, answer never sent)
        self.release = asyncio.Event()
        self.server: TestServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return str(self.server.make_url("")).rstrip("/")

    def _authorized(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}"

    def _call_json(self, form: MultiDict[str]) -> dict[str, Any]:
        sid = "CA" + secrets.token_hex(16)
        stamp = format_datetime(self.clock())  # RFC 2822, as Twilio's API returns dates
        return {
            "account_sid": ACCOUNT_SID,
            "annotation": None,
            "answered_by": None,
            "api_version": "2010-04-01",
            "caller_name": None,
            "date_created": stamp,
            "date_updated": stamp,
            "direction": "outbound-api",
            "duration": None,
            "end_time": None,
            "forwarded_from": None,
            "from": form.get("From"),
            "from_formatted": form.get("From"),
            "group_sid": None,
            "parent_call_sid": None,
            "phone_number_sid": "PN" + "0" * 32,
            "price": None,
            "price_unit": "USD",
            "queue_time": "0",
            "sid": sid,
            "start_time": None,
            "status": "queued",
            "to": form.get("To"),
            "to_formatted": form.get("To"),
            "trunk_sid": None,
            "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json",
            "subresource_uris": {},
        }

    async def create(self, request: web.Request) -> web.Response:
        if not self._authorized(request) or request.match_info["sid"] != ACCOUNT_SID:
            return web.json_response(
                {"code": 20003, "message": "Authenticate", "status": 401}, status=401
            )
        form = MultiDict(await request.post())
        self.requests.append(form)
        if self.mode == "500":
            return web.json_response(
                {
                    "code": 20500,
                    "message": "An internal server error has occurred",
                    "more_info": "https://www.twilio.com/docs/errors/20500",
                    "status": 500,
                },
                status=500,
            )
        if self.mode == "400":
            return web.json_response(
                {
                    "code": 21215,
                    "message": "Account not authorized to call this number",
                    "more_info": "https://www.twilio.com/docs/errors/21215",
                    "status": 400,
                },
                status=400,
            )
        call = self._call_json(form)
        call["_request"] = form
        self.calls.append(call)
        if self.mode == "timeout":
            await self.release.wait()  # the call exists; its answer is lost on the way back
        return web.json_response({k: v for k, v in call.items() if k != "_request"}, status=201)

    async def list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"code": 20003, "status": 401}, status=401)
        to, frm = request.query.get("To"), request.query.get("From")
        found = [
            {k: v for k, v in c.items() if k != "_request"}
            for c in reversed(self.calls)
            if (to is None or c["to"] == to) and (frm is None or c["from"] == frm)
        ]
        uri = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json"
        return web.json_response(
            {
                "calls": found,
                "end": max(len(found) - 1, 0),
                "first_page_uri": uri,
                "next_page_uri": None,
                "page": 0,
                "page_size": 50,
                "previous_page_uri": None,
                "start": 0,
                "uri": uri,
            }
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Calls.json", self.create)
        app.router.add_get("/2010-04-01/Accounts/{sid}/Calls.json", self.list)
        self.server = TestServer(app)
        await self.server.start_server()

    async def close(self) -> None:
        self.release.set()
        if self.server is not None:
            await self.server.close()


def sign(path: str, params: MultiDict[str], token: str = AUTH_TOKEN) -> str:
    """X-Twilio-Signature of a POST to PUBLIC_URL + path with these form parameters."""
    return RequestValidator(token).compute_signature(PUBLIC_URL + path, params)


async def post_signed(client: TestClient, path: str, params: MultiDict[str]) -> Any:
    """POST a form to the gateway signed as Twilio signs it."""
    return await client.post(path, data=params, headers={"X-Twilio-Signature": sign(path, params)})


def voice_form(call_sid: str, caller: str, called: str, **extra: str | None) -> MultiDict[str]:
    """The parameters Twilio posts to a voice webhook for an incoming call (Twilio docs).

    By default the caller's carrier attested the number (StirVerstat A, as Twilio adds for
    SHAKEN-signed calls); `StirVerstat=None` drops it, as for most international calls.
    """
    params = MultiDict(
        AccountSid=ACCOUNT_SID,
        ApiVersion="2010-04-01",
        CallSid=call_sid,
        CallStatus="ringing",
        Called=called,
        CalledCity="",
        CalledCountry="CR",
        CalledState="",
        CalledZip="",
        Caller=caller,
        CallerCity="SAN JOSE",
        CallerCountry="CR",
        CallerState="",
        CallerZip="",
        Direction="inbound",
        From=caller,
        FromCity="SAN JOSE",
        FromCountry="CR",
        FromState="",
        FromZip="",
        To=called,
        ToCity="",
        ToCountry="CR",
        ToState="",
        ToZip="",
        StirVerstat="TN-Validation-Passed-A",
    )
    for key, value in extra.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    return params


def twiml(text: str) -> ET.Element:
    """Parse a TwiML answer; fails the test if it is not a <Response> document."""
    root = ET.fromstring(text)
    assert root.tag == "Response"
    return root


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait (bounded) for the gateway's background workers to reach a state."""
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def get_incident(client: TestClient, token: str, tracking: str) -> dict[str, Any]:
    """GET /api/v1/incidents/{tracking} as an agent."""
    resp = await client.get(
        f"/api/v1/incidents/{tracking}", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 200, await resp.text()
    return dict(await resp.json())


def kinds(incident: dict[str, Any]) -> list[str]:
    """The event kinds of an incident, in order."""
    return [e["kind"] for e in incident["events"]]


def event(incident: dict[str, Any], kind: str) -> dict[str, Any]:
    """The detail of the last event of `kind`."""
    found = [e["detail"] for e in incident["events"] if e["kind"] == kind]
    assert found, f"no {kind} event in {kinds(incident)}"
    return dict(found[-1])
