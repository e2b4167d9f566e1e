"""Benchmark: the WhatsApp webhook of the real gateway vs a bare aiohttp handler and floors,
on SQLite and on PostgreSQL (`--db`, default both), in one run.

Each server runs in this process (pinned to CPU 0 when there are two, with the PostgreSQL
server's processes); the load comes from a second process (bench/loadgen.py, pinned to CPU 1):
50 keep-alive connections (a lean HTTP/1.1 client, or aiohttp's with --client aiohttp)
posting Twilio-signed WhatsApp forms, bounded by a request count and a time limit, loopback only.
The bare handler (parse the form, answer TwiML) is the baseline. Then, on each database, three
floors and the gateway: the bare handler plus one group-committed row per request in the
gateway's store; plus the incident's rows; plus what the issue requires of any implementation
(Twilio's signature, the number's country, the MessageSid dedupe, the TwiML acknowledgement);
and the gateway itself, served as `serve` serves it (behind its connection guard), after which
every accepted message is counted in its database. Every server here runs on --loop (uvloop by
default, as `serve`; asyncio for the standard library's loop).
SQLite is file-backed (WAL, synchronous=FULL); PostgreSQL a durable throwaway cluster. "server
CPU" is this process's CPU per request (the PostgreSQL server's own processes are not in it).
Every phase runs once per round (--rounds, 3 by default); the ratios are taken within a round and
their median printed, since the bare handler alone moves by a quarter between runs here.
With --rate R, instead, the gateway alone on each database at R req/s offered (open loop): its
p50/p99 (issue 19: p99 <= 25 ms at 1,000 req/s).
Usage: python bench/webhook.py [--requests 3000] [--conns 50] [--rounds 3] [--db both]
                               [--loop uvloop|asyncio]
       python bench/webhook.py --rate 1000 [--requests 3000]
"""

from __future__ import annotations

import argparse
import gc
import hmac
import statistics
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

# Run as a script, Python puts bench/ first on sys.path, where a sibling benchmark's module
# (e.g. queue.py) would shadow the standard library: use the repository root instead.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from aiohttp import web
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from bench.databases import (
    LABELS,
    POSTGRESQL,
    SERVER_CPU,
    SQLITE,
    Databases,
    add_options,
    pin,
    settled,
    write_json,
)
from bench.loadgen import PATH, SID, TOKEN, drive
from gateway.cli import run_on_loop
from gateway.core.gil import quick_gil_handoff
from gateway.core.heap import freeze_startup_heap
from gateway.core.timeutil import iso, utcnow
from gateway.store.postgres import PostgresStore
from gateway.store.protocol import Store
from gateway.store.sqlite import SqliteStore, sqlite_path
from gateway.store.tx import Tx
from routing.phone import country_of_phone, normalize_phone


async def bare(request: web.Request) -> web.Response:
    """The baseline: parse the same form, answer TwiML."""
    form = await request.post()
    response = MessagingResponse()
    response.message(f"Recibido {form['MessageSid']}")
    return web.Response(text=str(response), content_type="application/xml")


def floor_handler(
    store: Store, write: Callable[[Tx, str, str, bytes], object]
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
    found = tx.one(
        "SELECT id FROM incidents WHERE conversation_key = ?"
        " AND status IN ('new', 'in_progress', 'waiting_customer')",
        (key,),
    )
    if found:
        incident = found["id"]
        tx.insert_event(incident, now, "customer", "message_received", {})
    else:
        contact = tx.insert(
            "INSERT INTO contacts (name, phone, created_at) VALUES (?, ?, ?)", (phone, phone, at)
        )
        incident = tx.insert(
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
    message = tx.insert(
        "INSERT INTO messages (incident_id, direction, channel, author, sender, body, at)"
        " VALUES (?, 'in', 'whatsapp', ?, ?, ?, ?)",
        (incident, phone, phone, text, at),
    )
    tx.insert_receipt("whatsapp", sid, now, incident_id=incident, message_id=message, raw=raw)
    return tracking


def checked(
    store: Store, *, public_url: str | None = None, keyed: bool = False
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The incident-rows floor plus what the issue itself requires of any implementation.

    Twilio's RequestValidator over the form (403 when it fails), the sender's number parsed
    and placed in a country by phonenumbers (cached per number, as the gateway does), a
    MessageSid dedupe lookup, and TwiML with the tracking number for a new incident. Still no
    routing by schedule, SLA clocks, events beyond the floor's, contact matching, metrics or
    live queue: what remains for them is the room the target leaves.

    The signature is checked for `public_url` (the URL Twilio signs) or else the URL the
    request reached. `keyed`: what several processes on one database need besides, the
    message's and the sender's lock keys declared to the store (as the gateway's intake declares
    them), so two messages of one new sender on two processes still make one incident.
    """
    validator = RequestValidator(TOKEN)

    def write(tx: Tx, sid: str, sender: str, raw: bytes) -> tuple[bool, str | None]:
        if tx.receipt("whatsapp", sid) is not None:
            return True, None  # a retry: the same (here: empty) answer, nothing written
        return False, incident_rows(tx, sid, sender, raw)

    async def checked_handler(request: web.Request) -> web.Response:
        form = await request.post()
        # The floors are signed for the URL they listen on (the gateway: GATEWAY_PUBLIC_URL).
        signed = public_url or f"http://{request.host}"
        expected = validator.compute_signature(signed + PATH, form)
        if not hmac.compare_digest(expected, request.headers.get("X-Twilio-Signature", "")):
            raise web.HTTPForbidden(reason="invalid Twilio signature")
        sid, sender, raw = str(form["MessageSid"]), str(form["From"]), await request.read()
        phone = normalize_phone(sender)
        if phone is None or country_of_phone(phone) is None:
            raise web.HTTPBadRequest(reason="From is not a phone number")
        keys = (f"receipt:whatsapp:{sid}", f"contact:whatsapp:{phone}") if keyed else ()
        _, tracking = await store.transact(lambda tx: write(tx, sid, sender, raw), keys=keys)
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


async def measure(url: str, public_url: str, args: argparse.Namespace, tag: str) -> dict:
    """`drive` with this process's heap frozen first and the GIL's quick hand-off, as `serve`
    once started (gateway.core.heap, gateway.core.gil); every phase alike: the bare handler, the
    floors and the gateway."""
    freeze_startup_heap()
    switch = quick_gil_handoff()  # as `serve` too
    try:
        return await drive(url, public_url, args, tag)
    finally:
        gc.unfreeze()
        sys.setswitchinterval(switch)


FLOORS = (("+ 1 row", one_row), ("+ incident rows", incident_rows), ("+ issue's checks", None))
INBOUND = {
    SQLITE: "CREATE TABLE inbound (id INTEGER PRIMARY KEY, sid TEXT UNIQUE, raw BLOB)",
    POSTGRESQL: "CREATE TABLE inbound (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
    " sid text UNIQUE, raw bytea)",
}


def open_store(url: str) -> Store:
    """The gateway's own store for a floor (group commit on either database)."""
    if url.startswith("sqlite:///"):
        return SqliteStore(sqlite_path(url))
    store = PostgresStore(url, instance="bench-floor")
    store.notify_changes = False  # live pages on other instances are the gateway's, not the floor's
    return store


async def floor_phase(url: str, kind: str, name: str, args: argparse.Namespace) -> dict:
    """One floor on a fresh database of `kind`."""
    write = dict(FLOORS)[name]
    store = open_store(url)
    await store.open()
    await store.migrate()  # the gateway's schema, for the incident rows
    await store.transact(lambda tx: tx.execute(INBOUND[kind]))
    app = web.Application()
    app.router.add_post(PATH, floor_handler(store, write) if write else checked(store))
    runner, served = await serve(app)
    try:
        return await measure(served, served, args, "3")
    finally:
        await runner.cleanup()
        await store.close()


async def gateway_phase(url: str, args: argparse.Namespace) -> dict:
    """The real gateway (WhatsApp and Twilio status adapters) on a fresh database."""
    from adapters.twilio import status as twilio_status
    from adapters.whatsapp import webhook as whatsapp_twilio
    from config.loader import load_settings
    from gateway.app import create_app
    from gateway.core.services import GW
    from gateway.web.listen import start_http

    # The public URL must be known before the app starts: reserve a port first.
    probe_runner, probe_url = await serve(web.Application())
    port = probe_url.rsplit(":", 1)[1]
    await probe_runner.cleanup()
    env = {
        "GATEWAY_DB": url,
        "GATEWAY_HTTP_HOST": "127.0.0.1",
        "GATEWAY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_API_BASE": "http://127.0.0.1:9",
    }
    settings = load_settings(env)
    adapters = {"whatsapp": whatsapp_twilio.setup, "twilio_status": twilio_status.setup}
    gw_app = create_app(settings, adapters=adapters)
    # Served as `serve` serves it: behind the connection guard (per-address cap, header deadline).
    gw_runner, _ = await start_http(gw_app, settings, int(port))
    try:
        await settled(gw_app[GW])  # alone on its database: writes that notify nobody
        gateway = await measure(f"http://127.0.0.1:{port}", env["GATEWAY_PUBLIC_URL"], args, "2")
        gw = gw_app[GW]
        stored = await gw.store.read(
            lambda tx: tx.one("SELECT count(*) AS n FROM receipts WHERE channel = 'whatsapp'")
        )
        incidents = await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents"))
        gateway["committed"] = (stored["n"], incidents["n"], getattr(gw.store, "batches", 0))
        return gateway
    finally:
        await gw_runner.cleanup()


async def one_round(args: argparse.Namespace, dbs: Databases) -> dict[str, dict]:
    """Bare handler, then on each database the floors and the gateway; each phase's results,
    keyed "bare aiohttp" and "<kind>:<phase>"."""
    app = web.Application()
    app.router.add_post(PATH, bare)
    runner, url = await serve(app)
    results = {"bare aiohttp": await measure(url, url, args, "1")}
    await runner.cleanup()
    for kind in dbs.kinds:
        for name, _ in FLOORS:
            results[f"{kind}:{name}"] = await floor_phase(dbs.url(kind, "floor"), kind, name, args)
        results[f"{kind}:gateway"] = await gateway_phase(dbs.url(kind, "gateway"), args)
    return results


FLOOR_NOTES = {
    "+ 1 row": "no signature, routing or threading",
    "+ incident rows": "no signature, routing or threading",
    "+ issue's checks": "signature, phone country, dedupe, TwiML ack; no routing or threading",
}


def median_spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} [{', '.join(f'{v:.2f}' for v in values)}]"


async def at_rate(args: argparse.Namespace) -> None:
    """The gateway alone on each database at `args.rate` req/s offered: its latency (issue 19:
    p99 <= 25 ms at 1,000 req/s, every message committed)."""
    pin(SERVER_CPU)
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, Databases(args.db, tmp) as dbs:
        print(f"{args.requests} signed WhatsApp posts offered at {args.rate:.0f} req/s (open"
              f" loop), {args.conns} connections")  # fmt: skip
        for kind in dbs.kinds:
            print(f"  {dbs.describe(kind)}", flush=True)
            r = await gateway_phase(dbs.url(kind, "gateway"), args)
            stored = r["committed"][0]
            print(
                f"  {LABELS[kind]:10s} gateway  {r['rps']:7.0f} req/s done  p50 {r['p50_ms']:5.1f}"
                f" ms  p99 {r['p99_ms']:6.1f} ms  statuses {r['statuses']}  committed {stored}"
            )
            if stored != r["statuses"].get("200", 0):
                raise SystemExit("an acknowledged message is missing from the database")
            figures[kind] = {
                "offered_rps": args.rate,
                **{k: r[k] for k in ("rps", "p50_ms", "p99_ms")},
            }
    print("target: p99 <= 25 ms at 1,000 req/s offered")
    write_json(args.json, figures)


async def main(args: argparse.Namespace) -> None:
    pin(SERVER_CPU)
    ratios: dict[str, list[float]] = {}
    gateway_rps: dict[str, list[float]] = {}
    checks_rps: dict[str, list[float]] = {}
    p99: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp, Databases(args.db, tmp) as dbs:
        print(f"{args.requests} signed WhatsApp posts per phase, {args.conns} connections")
        for kind in dbs.kinds:
            print(f"  {dbs.describe(kind)}")
        print(f"  {dbs.placement()}", flush=True)
        for number in range(1, args.rounds + 1):
            results = await one_round(args, dbs)
            base = results["bare aiohttp"]
            print(f"round {number} of {args.rounds}")
            for name, r in results.items():
                kind, _, phase = name.rpartition(":")
                label = f"{LABELS.get(kind, ''):10s} {phase}"
                print(
                    f"  {label:28s} {r['requests']:6d} req in {r['seconds']:.2f}s"
                    f"  {r['rps']:7.0f} req/s  p50 {r['p50_ms']:5.1f} ms  p99 {r['p99_ms']:6.1f} ms"
                    f"  server CPU {r['server_cpu_us']:4.0f} µs/req  statuses {r['statuses']}",
                    flush=True,
                )
                ratios.setdefault(name, []).append(r["rps"] / base["rps"])
            for kind in dbs.kinds:
                gateway = results[f"{kind}:gateway"]
                checks = results[f"{kind}:+ issue's checks"]
                ratios.setdefault(f"{kind}:gateway/checks", []).append(
                    gateway["rps"] / checks["rps"]
                )
                gateway_rps.setdefault(kind, []).append(gateway["rps"])
                checks_rps.setdefault(kind, []).append(checks["rps"])
                p99.setdefault(kind, []).append(gateway["p99_ms"])
                ok = gateway["statuses"].get("200", 0)
                stored, incidents, batches = gateway["committed"]
                print(
                    f"  {LABELS[kind]} committed: {stored} of {ok} answered 200 ({incidents}"
                    f" incidents, {batches} group commits)"
                )
                if stored != ok:
                    raise SystemExit("an acknowledged message is missing from the database")
        kinds = dbs.kinds
    # The bare handler's own speed moves by a quarter between runs on a shared machine: the
    # median over rounds, each ratio taken within its own round, is the figure to compare.
    figures: dict[str, dict[str, float]] = {}
    for kind in kinds:
        print(f"{LABELS[kind]}:")
        for name, _ in FLOORS:
            values = ratios[f"{kind}:{name}"]
            print(f"  floor ({name})/bare: {median_spread(values)}  ({FLOOR_NOTES[name]})")
        print(f"  gateway/bare: {median_spread(ratios[f'{kind}:gateway'])}")
        print(
            f"  gateway/(floor + issue's checks): {median_spread(ratios[f'{kind}:gateway/checks'])}"
            "  (target >= 0.85)"
        )
        print(f"  gateway p99: median {statistics.median(p99[kind]):.1f} ms (closed loop)")
        figures[kind] = {
            "gateway_rps": statistics.median(gateway_rps[kind]),
            "gateway_p99_ms": statistics.median(p99[kind]),
            "gateway_to_bare": statistics.median(ratios[f"{kind}:gateway"]),
            "gateway_to_checks": statistics.median(ratios[f"{kind}:gateway/checks"]),
            "floor_checks_rps": statistics.median(checks_rps[kind]),
            **{
                f"floor{n}_to_bare": statistics.median(ratios[f"{kind}:{name}"])
                for n, (name, _) in enumerate(FLOORS, 1)
            },
        }
    if len(kinds) == 2:
        per_round = [
            pg / lite for pg, lite in zip(gateway_rps[POSTGRESQL], gateway_rps[SQLITE], strict=True)
        ]
        floors = [
            pg / lite for pg, lite in zip(checks_rps[POSTGRESQL], checks_rps[SQLITE], strict=True)
        ]
        figures["postgresql_to_sqlite"] = {
            "gateway": statistics.median(per_round),
            "floor_checks": statistics.median(floors),
        }
        print(f"PostgreSQL/SQLite gateway req/s: {median_spread(per_round)}  (target >= 0.8)")
        # The floor's own ratio is the most any gateway could reach on this machine.
        print(f"PostgreSQL/SQLite floor + issue's checks req/s: {median_spread(floors)}")
    write_json(args.json, figures)


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
    parser.add_argument(
        "--rate",
        type=float,
        help="instead: the gateway alone at this many req/s offered (open loop), its p50/p99",
    )
    parser.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of every server here (default uvloop, as `serve`)",
    )
    add_options(parser)
    args = parser.parse_args()
    print(f"event loop: {args.loop}")
    run_on_loop(at_rate(args) if args.rate else main(args), args.loop)


if __name__ == "__main__":
    cli()
