"""Crash soak: a mixed stream over every channel while the gateway is SIGKILLed and restarted.

One real gateway process (`python -m gateway serve`, tests/instances.py) on a fresh database
takes a stream of new contacts spread over --seconds: email through SMTP, WhatsApp and voice
Twilio webhooks with valid signatures, Telegram webhook updates, chat WebSocket conversations
and Click2Call requests. Every client behaves like its provider: it retries (after a refused
connection, a 5xx, a 451, a lost socket) until it gets its acknowledgement (2xx, 250, the chat
`ticket` frame). Meanwhile the process is SIGKILLed --kills times mid-stream and started again
on the same ports. The outbound side talks to loopback fakes only: a Twilio API (Messages and
Calls), a Telegram Bot API and an SMTP relay; sender authentication believes the relay
(127.0.0.1 is a trusted relay), so the gateway never asks DNS.

At the end (once the outbox and the body extractor have settled) it checks, per channel:
every acknowledged contact is present exactly once (its unique text in exactly one inbound
message; voice and Click2Call by their call id and phone), every email body is extracted, and
every acknowledgement was delivered at least once and at most twice (the outbox is
at-least-once: one duplicate after a crash between the provider's answer and the commit).
Any failed check exits non-zero.

    .venv/bin/python bench/soak.py [--db sqlite|postgresql|both] [--contacts 40] [--kills 4]
                                   [--seconds 20] [--json PATH]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import asyncio
import contextlib
import json
import random
import secrets
import sqlite3
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import aiohttp
import aiosmtplib
import psycopg
from aiohttp import web
from aiosmtpd.smtp import SMTP
from twilio.request_validator import RequestValidator

from bench.databases import LABELS, Databases, add_options, table, write_json
from tests.instances import PUBLIC_URL, Instance

SID = "AC" + "5" * 32
TOKEN = "soak-auth-token-0123456789abcdef"
BOT_ID = "7212345678"
TG_TOKEN = f"{BOT_ID}:AAHsoakTokenForTheCrashSoak0123456789"
TG_SECRET = "cmw-soak-webhook-secret"
WA_NUMBER = "+50640004000"
US_LINE = "+13056445335"
SUPPORT = "soporte@callmyway.com"
CHANNELS = ("email", "whatsapp", "voice", "telegram", "webchat", "click2call")
# Channels whose acknowledgement goes through the outbox (WhatsApp's is the TwiML answer itself,
# the chat's the `ticket` frame, voice's the spoken TwiML, Click2Call's the 202).
ACKED = ("email", "telegram")
GIVE_UP = 180.0  # seconds a client keeps retrying one contact


class Fakes:
    """Twilio's API, Telegram's Bot API and an SMTP relay on loopback; counts what arrives."""

    def __init__(self) -> None:
        self.sent: dict[str, Counter[str]] = {
            c: Counter() for c in ("whatsapp", "telegram", "email")
        }
        self.calls: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self._relay: asyncio.AbstractServer | None = None
        self.url = ""
        self.relay_port = 0

    async def start(self) -> Fakes:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{acc}/Messages.json", self.message)
        app.router.add_post("/2010-04-01/Accounts/{acc}/Calls.json", self.call)
        app.router.add_get("/2010-04-01/Accounts/{acc}/Calls.json", self.list_calls)
        app.router.add_post("/bot{token}/{method}", self.bot)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        loop = asyncio.get_running_loop()
        self._relay = await loop.create_server(
            lambda: SMTP(self, hostname="relay.soak", loop=loop), "127.0.0.1", 0
        )
        self.relay_port = self._relay.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._relay is not None:
            self._relay.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            self.sent["email"][rcpt.lower()] += 1
        return "250 2.0.0 queued"

    async def message(self, request: web.Request) -> web.Response:
        form = await request.post()
        to = str(form.get("To", "")).removeprefix("whatsapp:")
        self.sent["whatsapp"][to] += 1
        sid = "SM" + secrets.token_hex(16)
        return web.json_response(_resource(sid, form, "Messages"), status=201)

    async def call(self, request: web.Request) -> web.Response:
        form = await request.post()
        sid = "CA" + secrets.token_hex(16)
        resource = _resource(sid, form, "Calls")
        self.calls.append(resource)
        return web.json_response(resource, status=201)

    async def list_calls(self, request: web.Request) -> web.Response:
        to, frm = request.query.get("To"), request.query.get("From")
        found = [c for c in self.calls if c["to"] in (to, None) and c["from"] in (frm, None)]
        uri = f"/2010-04-01/Accounts/{SID}/Calls.json"
        return web.json_response(
            {"calls": found[::-1], "end": 0, "first_page_uri": uri, "next_page_uri": None,
             "page": 0, "page_size": 50, "previous_page_uri": None, "start": 0, "uri": uri}
        )  # fmt: skip

    async def bot(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = dict(await request.post()) if request.can_read_body else {}
        if method == "getMe":
            result: Any = {"id": int(BOT_ID), "is_bot": True, "first_name": "CallMyWay",
                           "username": "CallMyWaySoakBot"}  # fmt: skip
        elif method == "sendMessage":
            chat = str(params.get("chat_id", ""))
            self.sent["telegram"][chat] += 1
            result = {
                "message_id": sum(self.sent["telegram"].values()),
                "date": int(time.time()),
                "chat": {"id": int(chat), "type": "private"},
                "text": params.get("text"),
            }
        elif method == "getWebhookInfo":
            result = {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        else:
            result = True
        return web.json_response({"ok": True, "result": result})


def _resource(sid: str, form: Any, kind: str) -> dict[str, Any]:
    stamp = format_datetime(datetime.now(UTC))  # RFC 2822, as Twilio's API returns dates
    return {
        "account_sid": SID, "api_version": "2010-04-01", "sid": sid, "status": "queued",
        "to": str(form.get("To", "")), "from": str(form.get("From", "")),
        "date_created": stamp, "date_updated": stamp, "direction": "outbound-api",
        "body": form.get("Body"), "num_media": "0", "num_segments": "1", "price": None,
        "error_code": None, "error_message": None, "subresource_uris": {},
        "uri": f"/2010-04-01/Accounts/{SID}/{kind}/{sid}.json",
    }  # fmt: skip


class Gateway:
    """The gateway process under test, killed and restarted on the same ports."""

    def __init__(self, db_url: str, workdir: Path, fakes: Fakes, name: str = "soak"):
        env = {
            "GATEWAY_DB": db_url,
            "GATEWAY_SMTP_RELAY": f"127.0.0.1:{fakes.relay_port}",
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_API_BASE": fakes.url,
            "TELEGRAM_BOT_TOKEN": TG_TOKEN,
            "TELEGRAM_WEBHOOK_SECRET": TG_SECRET,
            "TELEGRAM_API_BASE": fakes.url,
        }
        self.instance = Instance(name, workdir, env)
        config = Path(self.instance.env["GATEWAY_CONFIG"])
        # Instance's config makes 127.0.0.1 a trusted relay (no DNS); the soak's many
        # Click2Call requests come from one address and would hit the hourly limits.
        config.write_text(
            config.read_text() + "\n[click2call]\nmax_calls_per_number_per_hour = 1000\n"
            "max_calls_per_ip_per_hour = 1000000\n"
        )
        self.kills = 0
        self.down_s = 0.0

    async def start(self) -> None:
        self.instance.start()
        await self.instance.healthy(60)

    async def kill_and_restart(self) -> None:
        started = time.monotonic()
        self.instance.kill()
        self.kills += 1
        await self.start()
        self.down_s += time.monotonic() - started

    def stop(self) -> None:
        self.instance.stop()


class Stream:
    """The clients: one task per contact, retrying until acknowledged (for `give_up` seconds)."""

    give_up = GIVE_UP

    def __init__(self, gw: Gateway, run: str, http: aiohttp.ClientSession):
        self.gw = gw
        self.run = run
        self.http = http
        self.validator = RequestValidator(TOKEN)
        self.acked: dict[str, list[dict[str, Any]]] = {c: [] for c in CHANNELS}
        self.tries: Counter[str] = Counter()

    @property
    def base(self) -> str:
        return self.gw.instance.url

    def text(self, channel: str, i: int) -> str:
        return f"Sin servicio desde hoy, caso de prueba [soak-{self.run}-{channel}-{i}]"

    async def until_acked(self, channel: str, i: int, attempt: Any) -> None:
        deadline = time.monotonic() + self.give_up
        while True:
            self.tries[channel] += 1
            try:
                result = await attempt()
            except (OSError, aiohttp.ClientError, TimeoutError, aiosmtplib.SMTPException):
                result = None
            if result is not None:
                self.acked[channel].append({"i": i, **result})
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{channel} contact {i} was never acknowledged")
            await asyncio.sleep(0.2 + random.random() * 0.3)

    async def email(self, i: int) -> None:
        msg = EmailMessage()
        address = f"cliente{i}.{self.run}@example.com"
        msg["From"] = f"Cliente {i} <{address}>"
        msg["To"] = SUPPORT
        msg["Subject"] = f"Sin internet {i}"
        msg["Message-ID"] = f"<soak-{self.run}-{i}@example.com>"
        msg.set_content(self.text("email", i))

        async def attempt() -> dict[str, Any] | None:
            port = self.gw.instance.smtp_port
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
            try:
                await client.connect()
                await client.send_message(msg, sender=address, recipients=[SUPPORT])
                return {"recipient": address}
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code >= 500:
                    raise SystemExit(f"email {i}: permanent {exc.code} {exc.message}") from None
                return None
            except aiosmtplib.SMTPRecipientsRefused as exc:
                raise SystemExit(f"email {i}: recipient refused {exc}") from None
            finally:
                with contextlib.suppress(Exception):
                    client.close()

        await self.until_acked("email", i, attempt)

    async def signed(self, path: str, params: list[tuple[str, str]]) -> tuple[int, str]:
        """POST a Twilio-signed form; the status and the body (TwiML)."""
        signature = self.validator.compute_signature(PUBLIC_URL + path, dict(params))
        async with self.http.post(
            self.base + path, data=params, headers={"X-Twilio-Signature": signature}
        ) as resp:
            return resp.status, await resp.text()

    async def whatsapp(self, i: int) -> None:
        phone = f"+5215500{i:06d}"
        sid = f"SM{self.run}{i:024d}"[:34]
        params = [
            ("SmsMessageSid", sid), ("NumMedia", "0"), ("ProfileName", f"Cliente {i}"),
            ("MessageType", "text"), ("SmsSid", sid), ("WaId", phone.lstrip("+")),
            ("SmsStatus", "received"), ("Body", self.text("whatsapp", i)),
            ("To", f"whatsapp:{WA_NUMBER}"), ("NumSegments", "1"), ("ReferralNumMedia", "0"),
            ("MessageSid", sid), ("AccountSid", SID), ("From", f"whatsapp:{phone}"),
            ("ApiVersion", "2010-04-01"),
        ]  # fmt: skip

        async def attempt() -> dict[str, Any] | None:
            status, twiml = await self.signed("/webhooks/twilio/whatsapp", params)
            return {"recipient": phone, "sid": sid, "twiml": twiml} if status == 200 else None

        await self.until_acked("whatsapp", i, attempt)

    async def voice(self, i: int) -> None:
        caller = f"+1305555{i:04d}"
        sid = f"CA{self.run}{i:024d}"[:34]
        params = [
            ("AccountSid", SID), ("ApiVersion", "2010-04-01"), ("CallSid", sid),
            ("CallStatus", "ringing"), ("Called", US_LINE), ("Caller", caller),
            ("Direction", "inbound"), ("From", caller), ("To", US_LINE),
            ("CallerCountry", "US"), ("ToCountry", "US"), ("StirVerstat", "TN-Validation-Passed-A"),
        ]  # fmt: skip

        async def attempt() -> dict[str, Any] | None:
            status, _ = await self.signed("/webhooks/twilio/voice", params)
            return {"sid": sid} if status == 200 else None

        await self.until_acked("voice", i, attempt)

    async def telegram(self, i: int) -> None:
        chat = 500_000_000 + int(self.run, 16) % 1000 * 10_000 + i
        update = {
            "update_id": 10_000 + i,
            "message": {
                "message_id": 1,
                "from": {"id": chat, "is_bot": False, "first_name": f"Cliente{i}",
                         "language_code": "es"},
                "chat": {"id": chat, "first_name": f"Cliente{i}", "type": "private"},
                "date": int(time.time()),
                "text": self.text("telegram", i),
            },
        }  # fmt: skip
        headers = {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}

        async def attempt() -> dict[str, Any] | None:
            async with self.http.post(
                self.base + "/webhooks/telegram", json=update, headers=headers
            ) as resp:
                await resp.read()
                return {"recipient": str(chat)} if resp.status == 200 else None

        await self.until_acked("telegram", i, attempt)

    async def webchat(self, i: int) -> None:
        token: list[str | None] = [None]
        start = {
            "type": "start", "client_id": f"soak-{i}", "name": f"Visitante {i}",
            "email": f"visita{i}@example.com", "country": "CR", "text": self.text("webchat", i),
            "users": "one", "can_work": True,
        }  # fmt: skip

        async def attempt() -> dict[str, Any] | None:
            async with self.http.ws_connect(
                self.base + "/chat/ws", headers={"Origin": PUBLIC_URL}, timeout=10
            ) as ws:
                await ws.send_json({"type": "hello", **({"token": token[0]} if token[0] else {})})
                sent = False
                while True:
                    msg = await ws.receive(timeout=15)
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        return None
                    frame = json.loads(msg.data)
                    if frame["type"] == "welcome":
                        token[0] = frame.get("token") or token[0]
                        if not sent:
                            await ws.send_json(start)
                            sent = True
                    elif frame["type"] == "ticket":
                        return {"tracking": frame["tracking"]}
                    elif frame["type"] == "error":
                        return None  # "not saved": resend the same client_id

        await self.until_acked("webchat", i, attempt)

    async def click2call(self, i: int) -> None:
        phone = f"+5068800{i:04d}"
        body = {"name": f"Cliente {i}", "phone": phone, "country": "CR",
                "description": self.text("click2call", i)}  # fmt: skip
        headers = {"Origin": PUBLIC_URL, "Idempotency-Key": f"soak-{self.run}-{i}"}

        async def attempt() -> dict[str, Any] | None:
            async with self.http.post(
                self.base + "/api/v1/click2call", json=body, headers=headers
            ) as resp:
                data = await resp.json(content_type=None) if resp.status < 500 else {}
                if resp.status in (400, 403, 404, 409, 413, 415, 422):
                    raise SystemExit(f"click2call {i}: {resp.status} {data}")
                return (
                    {"phone": phone, "tracking": data["tracking"]} if resp.status == 202 else None
                )

        await self.until_acked("click2call", i, attempt)


def rows_of(url: str, sql: str) -> list[tuple[Any, ...]]:
    """Every row of a query, from either database."""
    if url.startswith("sqlite:///"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return list(conn.execute(sql).fetchall())
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql).fetchall())


async def settle(url: str, seconds: float) -> float:
    """Wait until the outbox is delivered and every body extracted; how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        busy = rows_of(
            url,
            "SELECT (SELECT count(*) FROM outbox WHERE status IN ('pending', 'sending')),"
            " (SELECT count(*) FROM messages WHERE CAST(flags AS text) LIKE '%body_pending%')",
        )[0]
        if busy == (0, 0):
            return time.monotonic() - started
        await asyncio.sleep(0.5)
    raise SystemExit(f"not settled after {seconds:.0f}s: outbox, pending bodies = {busy}")


def check(url: str, stream: Stream, fakes: Fakes) -> dict[str, Any]:
    """The end state; raises SystemExit with every failure found."""
    failures: list[str] = []
    bodies = [str(r[0]) for r in rows_of(url, "SELECT body FROM messages WHERE direction = 'in'")]
    descriptions = [str(r[0] or "") for r in rows_of(url, "SELECT description FROM incidents")]
    for channel in ("email", "whatsapp", "telegram", "webchat"):
        for contact in stream.acked[channel]:
            needle = stream.text(channel, contact["i"])
            found = sum(body.count(needle) for body in bodies)
            if found != 1:
                failures.append(f"{channel} {contact['i']}: its text in {found} messages")
    for needle in (stream.text("click2call", c["i"]) for c in stream.acked["click2call"]):
        found = sum(d.count(needle) for d in descriptions) + sum(b.count(needle) for b in bodies)
        if found < 1:
            failures.append(f"click2call: {needle!r} not stored")
    voice = Counter(str(r[0]) for r in rows_of(url, "SELECT provider_id FROM receipts"))
    for contact in stream.acked["voice"]:
        found = sum(n for key, n in voice.items() if contact["sid"] in key)
        if found != 1:
            failures.append(f"voice {contact['i']}: {found} receipts for {contact['sid']}")
    claims = [
        json.dumps(r[0]) if isinstance(r[0], dict) else str(r[0] or "")
        for r in rows_of(url, "SELECT claims FROM incidents WHERE channel = 'click2call'")
    ]
    rung = Counter(str(c["to"]) for c in fakes.calls)
    for contact in stream.acked["click2call"]:
        found = sum(f'"{contact["phone"]}"' in c for c in claims)
        if found != 1:
            failures.append(f"click2call {contact['i']}: {found} incidents")
        if rung[contact["phone"]] > 1:
            failures.append(f"click2call {contact['i']}: rung {rung[contact['phone']]} times")
    pending = rows_of(
        url, "SELECT count(*) FROM messages WHERE CAST(flags AS text) LIKE '%body_pending%'"
    )
    if pending[0][0]:
        failures.append(f"{pending[0][0]} email bodies not extracted")
    duplicates: Counter[str] = Counter()
    most = 0
    for channel in ACKED:
        for contact in stream.acked[channel]:
            n = fakes.sent[channel][contact["recipient"].lower()]
            most = max(most, n)
            if n == 0:
                failures.append(f"{channel} {contact['i']}: acknowledgement never delivered")
            elif n > 2:
                failures.append(f"{channel} {contact['i']}: acknowledgement delivered {n} times")
            elif n == 2:
                duplicates[channel] += 1
    dead = rows_of(url, "SELECT count(*) FROM outbox WHERE status = 'dead'")[0][0]
    if dead:
        failures.append(f"{dead} outbox rows dead-lettered")
    if failures:
        raise SystemExit("soak failed:\n  " + "\n  ".join(failures[:40]))
    return {
        "duplicate_acks": sum(duplicates.values()),
        "max_deliveries": most,
        "calls_placed": sum(rung.values()),
    }


async def one_database(kind: str, dbs: Databases, args: argparse.Namespace, tmp: Path) -> dict:
    url = dbs.url(kind, "soak")
    fakes = await Fakes().start()
    gw = Gateway(url, tmp / kind, fakes)
    run = secrets.token_hex(3)
    started = time.monotonic()
    try:
        await gw.start()
        connector = aiohttp.TCPConnector(limit=64, force_close=True)
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            stream = Stream(gw, run, http)
            rnd = random.Random(args.seed)

            async def later(delay: float, coro: Any) -> None:
                await asyncio.sleep(delay)
                await coro

            tasks = [
                later(rnd.random() * args.seconds, getattr(stream, channel)(i))
                for channel in CHANNELS
                for i in range(args.contacts)
            ]

            async def killer() -> None:
                for _ in range(args.kills):
                    slot = args.seconds / args.kills
                    await asyncio.sleep(slot * (0.3 + 0.5 * rnd.random()))
                    await gw.kill_and_restart()
                    await asyncio.sleep(slot * 0.2)

            await asyncio.gather(killer(), *tasks)
            stream_s = time.monotonic() - started
            settle_s = await settle(url, args.settle)
            figures = check(url, stream, fakes)
    finally:
        gw.stop()
        await fakes.stop()
    acked = {c: len(stream.acked[c]) for c in CHANNELS}
    total = sum(acked.values())
    return {
        "contacts": total,
        "acknowledged": acked,
        "attempts": sum(stream.tries.values()),
        "retries": sum(stream.tries.values()) - total,
        "kills": gw.kills,
        "restart_s": gw.down_s / max(gw.kills, 1),
        "stream_s": stream_s,
        "settle_s": settle_s,
        **figures,
    }


async def main(args: argparse.Namespace) -> None:
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, Databases(args.db, tmp) as dbs:
        print(
            f"crash soak: {args.contacts} contacts per channel ({len(CHANNELS)} channels) over"
            f" {args.seconds:g}s, {args.kills} SIGKILLs mid-stream"
        )
        for kind in dbs.kinds:
            print(f"  {dbs.describe(kind)}", flush=True)
            figures[kind] = await one_database(kind, dbs, args, Path(tmp))
    rows = [
        ("contacts acknowledged", [str(figures[k]["contacts"]) for k in figures]),
        ("client attempts (retries)",
         [f"{figures[k]['attempts']} ({figures[k]['retries']})" for k in figures]),
        ("SIGKILLs, mean restart", [f"{figures[k]['kills']}, {figures[k]['restart_s']:.1f}s"
                                    for k in figures]),
        ("stream, then settle", [f"{figures[k]['stream_s']:.1f}s, {figures[k]['settle_s']:.1f}s"
                                 for k in figures]),
        ("duplicate acks (bound: 1 each)",
         [f"{figures[k]['duplicate_acks']} (max {figures[k]['max_deliveries']} per contact)"
          for k in figures]),
        ("present exactly once, bodies extracted", ["yes" for _ in figures]),
    ]  # fmt: skip
    table(list(figures), rows)
    print("kinds:", ", ".join(LABELS[k] for k in figures))
    write_json(args.json, figures)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    parser.add_argument("--contacts", type=int, default=40, help="new contacts per channel")
    parser.add_argument("--kills", type=int, default=4, help="SIGKILLs during the stream")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long the stream lasts")
    parser.add_argument("--settle", type=float, default=120.0, help="seconds to settle at most")
    parser.add_argument("--seed", type=int, default=7)
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
