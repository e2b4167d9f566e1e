"""Benchmark: the WhatsApp webhook of the real gateway vs a bare aiohttp handler, one run.

Each server runs in this process (pinned to CPU 0 when there are two); the load comes from a
second process (this script with --load, pinned to CPU 1): 50 keep-alive connections (a lean
HTTP/1.1 client, or aiohttp's with --client aiohttp) posting Twilio-signed WhatsApp forms,
bounded by a request count and a time limit, loopback only.
The gateway commits to a file-backed SQLite database (WAL, synchronous=FULL); afterwards every
accepted message is counted in it. A third server, the bare handler plus one group-committed row
per request in the same store, shows the floor that any durable webhook pays on this machine;
two more add the incident's rows, then what the issue requires of any implementation (Twilio's
signature, the number's country, the MessageSid dedupe, the TwiML acknowledgement).
Every phase runs once per round (--rounds, 3 by default); the ratios are taken within a round and
their median printed, since the bare handler alone moves by a quarter between runs here.
Usage: python bench/webhook.py [--requests 3000] [--conns 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlencode

# Run as a script, Python puts bench/ first on sys.path, where a sibling benchmark's module
# (e.g. queue.py) would shadow the standard library: use the repository root instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

import aiohttp
from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from gateway.core.timeutil import iso, utcnow
from gateway.store.sqlite import SqliteStore
from gateway.store.tx import Tx
from routing.phone import country_of_phone, normalize_phone

PATH = "/webhooks/twilio/whatsapp"
SID = "AC" + "0" * 32
TOKEN = "bench-auth-token-0123456789abcdef"


def pin(cpu: int) -> None:
    """Keep server and load generator on separate cores when the machine has two."""
    if os.environ.get("BENCH_NO_PIN"):
        return
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {cpu})


def forms(n: int, public_url: str, tag: str) -> list[tuple[bytes, str]]:
    """n signed WhatsApp forms (~600 bytes); two messages per phone: new incident + follow-up."""
    validator = RequestValidator(TOKEN)
    out = []
    for i in range(n):
        sid = "SM" + uuid.uuid4().hex
        params = [
            ("SmsMessageSid", sid),
            ("NumMedia", "0"),
            ("ProfileName", f"Cliente {i}"),
            ("MessageType", "text"),
            ("SmsSid", sid),
            ("WaId", f"5068{tag}{i // 2:06d}"),
            ("SmsStatus", "received"),
            ("Body", "Hola, no tengo tono en mi línea desde esta mañana, ¿me pueden ayudar?"),
            ("To", "whatsapp:+50640004000"),
            ("NumSegments", "1"),
            ("ReferralNumMedia", "0"),
            ("MessageSid", sid),
            ("AccountSid", SID),
            ("From", f"whatsapp:+5068{tag}{i // 2:06d}"),
            ("ApiVersion", "2010-04-01"),
        ]
        signature = validator.compute_signature(public_url + PATH, dict(params))
        out.append((urlencode(params).encode(), signature))
    return out


async def _aiohttp_worker(
    session: aiohttp.ClientSession, url: str, queue: asyncio.Queue, stats: Stats
) -> None:
    while not queue.empty() and time.perf_counter() < stats.deadline:
        body, signature = queue.get_nowait()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        }
        started = time.perf_counter()
        async with session.post(url + PATH, data=body, headers=headers) as resp:
            await resp.read()
        stats.record(started, resp.status)


async def _raw_worker(url: str, queue: asyncio.Queue, stats: Stats) -> None:
    """HTTP/1.1 keep-alive by hand: a far cheaper client, so the server is what is measured."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        while not queue.empty() and time.perf_counter() < stats.deadline:
            body, signature = queue.get_nowait()
            head = (
                f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"X-Twilio-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            started = time.perf_counter()
            writer.write(head.encode() + body)
            raw = await reader.readuntil(b"\r\n\r\n")
            lines = raw.decode("latin-1").split("\r\n")
            length = next(
                int(line.split(":", 1)[1])
                for line in lines
                if line.lower().startswith("content-length:")
            )
            await reader.readexactly(length)
            stats.record(started, int(lines[0].split()[1]))
    finally:
        writer.close()


class Stats:
    """Latencies and status counts of one phase."""

    def __init__(self, limit: float):
        self.deadline = time.perf_counter() + limit
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}

    def record(self, started: float, status: int) -> None:
        self.latencies.append(time.perf_counter() - started)
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def load(args: argparse.Namespace) -> dict:
    """The second process: post signed forms over `conns` connections; latency stats."""
    pin(1)
    queue: asyncio.Queue[tuple[bytes, str]] = asyncio.Queue()
    for item in forms(args.requests, args.public_url, args.tag):
        queue.put_nowait(item)
    stats = Stats(args.limit)
    started = time.perf_counter()
    if args.client == "aiohttp":
        connector = aiohttp.TCPConnector(limit=args.conns)
        async with aiohttp.ClientSession(connector=connector) as session:
            workers = [_aiohttp_worker(session, args.load, queue, stats) for _ in range(args.conns)]
            await asyncio.gather(*workers)
    else:
        await asyncio.gather(*(_raw_worker(args.load, queue, stats) for _ in range(args.conns)))
    elapsed = time.perf_counter() - started
    latencies = sorted(stats.latencies)
    return {
        "requests": len(latencies),
        "statuses": stats.statuses,
        "seconds": elapsed,
        "rps": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
    }


async def drive(url: str, public_url: str, args: argparse.Namespace, tag: str) -> dict:
    """Run the load generator as a second process and read its JSON result."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--load", url, "--public-url", public_url,
        "--requests", str(args.requests), "--conns", str(args.conns),
        "--limit", str(args.limit), "--tag", tag, "--client", args.client,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    cpu = time.process_time()  # this process only serves while the load runs
    out, _ = await proc.communicate()
    result = json.loads(out)
    result["server_cpu_us"] = (time.process_time() - cpu) / max(result["requests"], 1) * 1e6
    return result


async def bare(request: web.Request) -> web.Response:
    """The baseline: parse the same form, answer TwiML."""
    form = await request.post()
    response = MessagingResponse()
    response.message(f"Recibido {form['MessageSid']}")
    return web.Response(text=str(response), content_type="application/xml")


def floor_handler(
    store: SqliteStore, write: Callable[[Tx, str, str, bytes], object]
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The bare handler plus `write(tx, sid, from, raw)` group-committed before the answer.

    Same form parsing and TwiML as `bare`, and the gateway's own store (WAL, synchronous=FULL,
    group commit), but no signature check, no routing, no threading: what the rows alone cost.
    """

    async def floor(request: web.Request) -> web.Response:
        form = await request.post()
        sid, sender, raw = str(form["MessageSid"]), str(form["From"]), await request.read()
        await store.transact(lambda tx: write(tx, sid, sender, raw))
        response = MessagingResponse()
        response.message(f"Recibido {sid}")
        return web.Response(text=str(response), content_type="application/xml")

    return floor


def one_row(tx: Tx, sid: str, sender: str, raw: bytes) -> None:
    """The least any durable webhook writes: the raw message."""
    tx.execute("INSERT INTO inbound (sid, raw) VALUES (?, ?)", (sid, raw))


def incident_rows(tx: Tx, sid: str, sender: str, raw: bytes) -> str | None:
    """What the gateway writes, as plain SQL into its schema: for a new contact its contact,
    incident (tracking number), message, two events and receipt; for a follow-up (the open
    conversation found) the message, an event and the receipt. The TwiML is the ack."""
    now = utcnow()
    at, phone, text = iso(now), sender.removeprefix("whatsapp:"), "Hola, no tengo tono"
    key = f"whatsapp:{phone}"
    tracking = None
    found = tx.conn.execute(
        "SELECT id FROM incidents WHERE conversation_key = ?"
        " AND status IN ('new', 'in_progress', 'waiting_customer')",
        (key,),
    ).fetchone()
    if found:
        incident = found[0]
        tx.insert_event(incident, now, "customer", "message_received", {})
    else:
        contact = tx.execute(
            "INSERT INTO contacts (name, phone, created_at) VALUES (?, ?, ?)", (phone, phone, at)
        )
        incident = tx.execute(
            "INSERT INTO incidents (tracking, channel, country, line, severity, subject,"
            " description, contact_id, conversation_key, occurred_at, registered_at,"
            " registered_by, attention_due, solution_due, urgent_due, routing, updated_at)"
            " VALUES (?, 'whatsapp', 'CR', '+50640004000', 'S3', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?)",
            (tracking := tx.next_tracking(now), text, text, contact, key, at, at, key, at, at,
             at, '{"reasons": ["phone in CR"]}', at),
        )  # fmt: skip
        events = [(now, "system", "registered", {}), (now, "system", "routed", {})]
        tx.insert_events(incident, events)
    message = tx.execute(
        "INSERT INTO messages (incident_id, direction, channel, author, sender, body, at)"
        " VALUES (?, 'in', 'whatsapp', ?, ?, ?, ?)",
        (incident, phone, phone, text, at),
    )
    tx.insert_receipt("whatsapp", sid, now, incident_id=incident, message_id=message, raw=raw)
    return tracking


def checked(store: SqliteStore) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The incident-rows floor plus what the issue itself requires of any implementation.

    Twilio's RequestValidator over the form (403 when it fails), the sender's number parsed
    and placed in a country by phonenumbers (cached per number, as the gateway does), a
    MessageSid dedupe lookup, and TwiML with the tracking number for a new incident. Still no
    routing by schedule, SLA clocks, events beyond the floor's, contact matching, metrics or
    live queue: what remains for them is the room the target leaves.
    """
    validator = RequestValidator(TOKEN)

    def write(tx: Tx, sid: str, sender: str, raw: bytes) -> tuple[bool, str | None]:
        if tx.receipt("whatsapp", sid) is not None:
            return True, None  # a retry: the same (here: empty) answer, nothing written
        return False, incident_rows(tx, sid, sender, raw)

    async def checked_handler(request: web.Request) -> web.Response:
        form = await request.post()
        # The floors are signed for the URL they listen on (the gateway: GATEWAY_PUBLIC_URL).
        expected = validator.compute_signature(f"http://{request.host}{PATH}", form)
        if not hmac.compare_digest(expected, request.headers.get("X-Twilio-Signature", "")):
            raise web.HTTPForbidden(reason="invalid Twilio signature")
        sid, sender, raw = str(form["MessageSid"]), str(form["From"]), await request.read()
        phone = normalize_phone(sender)
        if phone is None or country_of_phone(phone) is None:
            raise web.HTTPBadRequest(reason="From is not a phone number")
        _, tracking = await store.transact(lambda tx: write(tx, sid, sender, raw))
        response = MessagingResponse()
        if tracking:
            response.message(f"Recibimos su mensaje. Su número de seguimiento es {tracking}.")
        return web.Response(text=str(response), content_type="application/xml")

    return checked_handler


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def one_round(args: argparse.Namespace) -> dict[str, dict]:
    """Bare handler, the floors and the gateway, one after the other; each phase's results."""
    from adapters.twilio import status as twilio_status
    from adapters.whatsapp import webhook as whatsapp_twilio
    from config.loader import load_settings
    from gateway.app import create_app
    from gateway.core.services import GW

    app = web.Application()
    app.router.add_post(PATH, bare)
    runner, url = await serve(app)
    results = {"bare aiohttp": await drive(url, url, args, "1")}
    await runner.cleanup()

    for name, write in (
        ("+ 1 row", one_row),
        ("+ incident rows", incident_rows),
        ("+ issue's checks", None),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteStore(f"{tmp}/floor.db")
            await store.open()
            await store.migrate()  # the gateway's schema, for the incident rows
            await store.transact(
                lambda tx: tx.execute(
                    "CREATE TABLE inbound (id INTEGER PRIMARY KEY, sid TEXT UNIQUE, raw BLOB)"
                )
            )
            app = web.Application()
            app.router.add_post(PATH, floor_handler(store, write) if write else checked(store))
            runner, url = await serve(app)
            results[name] = await drive(url, url, args, str(2 + len(results)))
            await runner.cleanup()
            await store.close()

    with tempfile.TemporaryDirectory() as tmp:
        # The public URL must be known before the app starts: reserve a port first.
        probe = web.Application()
        probe_runner, probe_url = await serve(probe)
        port = probe_url.rsplit(":", 1)[1]
        await probe_runner.cleanup()
        env = {
            "GATEWAY_DB": f"sqlite:///{tmp}/bench.db",
            "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "TWILIO_ACCOUNT_SID": SID,
            "TWILIO_AUTH_TOKEN": TOKEN,
            "TWILIO_API_BASE": "http://127.0.0.1:9",
        }
        settings = load_settings(env)
        adapters = {"whatsapp": whatsapp_twilio.setup, "twilio_status": twilio_status.setup}
        gw_app = create_app(settings, adapters=adapters)
        gw_runner = web.AppRunner(gw_app, access_log=None)
        await gw_runner.setup()
        await web.TCPSite(gw_runner, "127.0.0.1", int(port)).start()
        gateway = await drive(f"http://127.0.0.1:{port}", env["GATEWAY_PUBLIC_URL"], args, "2")
        gw = gw_app[GW]
        stored = await gw.store.read(
            lambda tx: tx.one("SELECT count(*) AS n FROM receipts WHERE channel = 'whatsapp'")
        )
        incidents = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents"))
        gateway["committed"] = (stored["n"], incidents["n"], getattr(gw.store, "batches", 0))
        results["gateway"] = gateway
        await gw_runner.cleanup()
    return results


FLOOR_NOTES = {
    "+ 1 row": "no signature, routing or threading",
    "+ incident rows": "no signature, routing or threading",
    "+ issue's checks": "signature, phone country, dedupe, TwiML ack; no routing or threading",
}


async def main(args: argparse.Namespace) -> None:
    pin(0)
    ratios: dict[str, list[float]] = {}
    for number in range(1, args.rounds + 1):
        results = await one_round(args)
        base = results["bare aiohttp"]
        print(f"round {number} of {args.rounds}")
        for name, r in results.items():
            print(
                f"  {name:17s} {r['requests']:6d} req in {r['seconds']:.2f}s"
                f"  {r['rps']:8.0f} req/s  p50 {r['p50_ms']:.1f} ms  p99 {r['p99_ms']:.1f} ms"
                f"  server CPU {r['server_cpu_us']:.0f} µs/req  statuses {r['statuses']}"
            )
            ratios.setdefault(name, []).append(r["rps"] / base["rps"])
        gateway = results["gateway"]
        ok = gateway["statuses"].get("200", 0)
        stored, incidents, batches = gateway["committed"]
        print(
            f"  committed: {stored} of {ok} answered 200 ({incidents} incidents,"
            f" {batches} group commits)"
        )
        if stored != ok:
            raise SystemExit("an acknowledged message is missing from the database")
    # The bare handler's own speed moves by a quarter between runs on a shared machine: the
    # median over rounds, each ratio taken within its own round, is the figure to compare.
    for name, values in ratios.items():
        if name == "bare aiohttp":
            continue
        spread = ", ".join(f"{v:.2f}" for v in values)
        label = "gateway/bare" if name == "gateway" else f"(bare {name})/bare"
        note = " (target >= 0.5)" if name == "gateway" else f"  ({FLOOR_NOTES[name]})"
        print(f"ratio {label}: median {statistics.median(values):.2f} [{spread}]{note}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--limit", type=float, default=30.0, help="seconds per phase at most")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all phases (median)")
    parser.add_argument(
        "--client",
        choices=("raw", "aiohttp"),
        default="raw",
        help="load client: hand-written HTTP/1.1 keep-alive (cheap) or aiohttp's ClientSession",
    )
    parser.add_argument("--load", help=argparse.SUPPRESS)
    parser.add_argument("--public-url", help=argparse.SUPPRESS)
    parser.add_argument("--tag", default="1", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        print(json.dumps(asyncio.run(load(args))))
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
