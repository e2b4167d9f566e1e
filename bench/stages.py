"""Where a WhatsApp webhook's microseconds go, stage by stage (issue 19's profile, repeatable).

The webhook's own work, each stage timed alone in this process on the same inputs the load
generator sends (a new incident, then a follow-up, per phone number), as CPU time of the thread
that runs it (`time.thread_time`): another process on the machine lengthens the wall clock far
more than these figures, so a before/after comparison mostly holds on a busy machine. Each
stage is run --rounds times over --contacts contacts and the fastest round is kept.

Event-loop stages: the Twilio signature, the form parse, `parse_inbound` (the phone's E.164 and
country), the surrogate scrub, the acknowledgement text (Jinja), the TwiML and the metrics.
Database-thread stage: `apply_inbound` per contact (dedupe, contact, routing by line and
schedule, SLA clocks, incident, message, events, receipt) on a fresh database with every
migration `serve` applies, 16 contacts per transaction as the group commit makes them under
load, COMMIT not counted; on PostgreSQL (--db postgresql) only the client's CPU, not the
server's. Also the routing alone. Not here: aiohttp's HTTP work and the thread hop, which
bench/webhook.py's bare handler and floors measure.

    .venv/bin/python bench/stages.py [--contacts 2000] [--rounds 5] [--db sqlite|postgresql]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from multidict import MultiDict, MultiDictProxy
from twilio.request_validator import RequestValidator

from adapters.whatsapp.webhook import parse_inbound, twiml, twiml_text
from bench.databases import POSTGRESQL, SQLITE, Databases, write_json
from config.loader import load_settings
from config.settings import Settings
from gateway.core.intake import IntakeContext, apply_inbound, without_surrogates
from gateway.core.metrics import Metrics
from gateway.core.model import Inbound, Receipt
from gateway.core.texts import Texts
from gateway.store.migration import Migration
from gateway.store.postgres import PostgresStore
from gateway.store.protocol import Store
from gateway.store.sqlite import SqliteStore, sqlite_path
from gateway.store.tx import Tx
from routing.assign import assign
from routing.resolve import resolve_line

URL = "https://gateway.example/webhooks/twilio/whatsapp"
TOKEN = "bench-auth-token-0123456789abcdef"
GROUP = 16  # contacts per transaction, as the store's group commit makes them under load


def bodies(n: int, tag: str) -> list[tuple[bytes, str]]:
    """n signed WhatsApp forms as Twilio posts them (two per phone: new incident, follow-up)."""
    validator = RequestValidator(TOKEN)
    out = []
    for i in range(n):
        sid = "SM" + uuid.uuid4().hex
        phone = f"+5068{tag}{i // 2:06d}"
        params = [
            ("SmsMessageSid", sid), ("NumMedia", "0"), ("ProfileName", f"Cliente {i}"),
            ("MessageType", "text"), ("SmsSid", sid), ("WaId", phone[1:]),
            ("SmsStatus", "received"),
            ("Body", "Hola, no tengo tono en mi línea desde esta mañana, ¿me pueden ayudar?"),
            ("To", "whatsapp:+50640004000"), ("NumSegments", "1"), ("ReferralNumMedia", "0"),
            ("MessageSid", sid), ("AccountSid", "AC" + "0" * 32), ("From", f"whatsapp:{phone}"),
            ("ApiVersion", "2010-04-01"),
        ]  # fmt: skip
        out.append((urlencode(params).encode(), validator.compute_signature(URL, dict(params))))
    return out


def forms_of(raw: list[tuple[bytes, str]]) -> list[MultiDictProxy[str]]:
    """The forms as aiohttp's `post()` builds them for a urlencoded body."""
    return [
        MultiDictProxy(MultiDict(parse_qsl(body.decode(), keep_blank_values=True)))
        for body, _ in raw
    ]


def cpu_us(fn: Callable[[], Any], count: int, rounds: int) -> float:
    """Fastest round's thread CPU per item, in µs (`fn` handles `count` items)."""
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        fn()
        best = min(best, time.thread_time() - started)
    return best / count * 1e6


def loop_stages(args: argparse.Namespace, store_receipts: list[Receipt]) -> dict[str, float]:
    """The event-loop side of the webhook, per request."""
    n, rounds = args.contacts, args.rounds
    raw = bodies(n, "7")
    forms = forms_of(raw)
    validator = RequestValidator(TOKEN)
    now = datetime.now(UTC)
    metrics = Metrics()

    def signatures() -> None:
        for form, (_, signature) in zip(forms, raw, strict=True):
            assert validator.compute_signature(URL, form) == signature

    def parse_forms() -> None:
        for body, _ in raw:
            MultiDict(parse_qsl(body.decode(), keep_blank_values=True))

    def inbound_all() -> list[Inbound]:
        pairs = zip(forms, raw, strict=True)
        return [parse_inbound(form, now, raw=body) for form, (body, _) in pairs]

    def inbound_fresh() -> None:
        # A new round's numbers: half of the phones are parsed for the first time, as in a run.
        fresh = bodies(n, str(time.monotonic_ns() % 10))
        fresh_forms = forms_of(fresh)
        started = time.thread_time()
        for form, (body, _) in zip(fresh_forms, fresh, strict=True):
            parse_inbound(form, now, raw=body)
        timings.append(time.thread_time() - started)

    items = inbound_all()
    timings: list[float] = []
    for _ in range(rounds):
        inbound_fresh()
    texts = [r.ack_text for r in store_receipts]  # rendered once here; timed below

    def scrub() -> None:
        for item in items:
            without_surrogates(item)

    def render() -> None:
        for r in store_receipts:
            r.render_ack()

    def answer() -> None:
        for r, text in zip(store_receipts, texts, strict=True):
            twiml_text(text) if r.created else twiml(r)

    def count() -> None:
        for _ in range(n):
            metrics.intake("whatsapp", "new", 0.001)

    return {
        "signature (Twilio RequestValidator)": cpu_us(signatures, n, rounds),
        "form parse (urlencoded)": cpu_us(parse_forms, n, rounds),
        "parse_inbound (phone E.164, country)": min(timings) / n * 1e6,
        "surrogate scrub": cpu_us(scrub, n, rounds),
        "acknowledgement text (Jinja)": cpu_us(render, len(store_receipts), rounds),
        "TwiML answer": cpu_us(answer, len(store_receipts), rounds),
        "metrics": cpu_us(count, n, rounds),
    }


def all_migrations(settings: Settings) -> list[tuple[str, list[Migration]]]:
    """The core's and every component's migrations, as `serve` applies them."""
    from gateway.app import create_app
    from gateway.core.services import GW

    return list(create_app(settings)[GW].migrations)


def open_store(url: str) -> Store:
    if url.startswith("sqlite:///"):
        return SqliteStore(sqlite_path(url))
    return PostgresStore(url, instance="bench-stages")


async def db_stages(url: str, args: argparse.Namespace) -> tuple[dict[str, float], list[Receipt]]:
    """The database thread's side, per contact, on a fresh database of the gateway's schema."""
    n, rounds = args.contacts, args.rounds
    settings = load_settings({"GATEWAY_DB": url})
    ctx = IntakeContext(settings=settings, texts=Texts())
    now = datetime.now(UTC)
    store = open_store(url)
    await store.open()
    await store.migrate(all_migrations(settings))
    applied: list[float] = []
    receipts: list[Receipt] = []
    try:
        for number in range(rounds):
            raw = bodies(n, str(number))
            pairs = zip(forms_of(raw), raw, strict=True)
            items = [parse_inbound(f, now, raw=b) for f, (b, _) in pairs]
            spent = [0.0]

            def group(tx: Tx, chunk: list[Inbound], spent: list[float] = spent) -> list[Receipt]:
                started = time.thread_time()
                out = [apply_inbound(tx, item, now, ctx) for item in chunk]
                spent[0] += time.thread_time() - started
                return out

            for start in range(0, n, GROUP):
                chunk = items[start : start + GROUP]
                receipts = await store.transact(lambda tx, c=chunk: group(tx, c))
            applied.append(spent[0])
    finally:
        await store.close()

    def routing() -> None:
        for _ in range(n):
            decision = resolve_line(settings.routing, phone="+50688887777")
            assign(settings.routing, decision, now)

    figures = {
        "apply_inbound (all SQL and logic of one contact)": min(applied) / n * 1e6,
        "  of which routing (line, schedule, queue)": cpu_us(routing, n, rounds),
    }
    return figures, receipts[: min(len(receipts), GROUP)] * (n // GROUP or 1)


async def main(args: argparse.Namespace) -> None:
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, Databases(args.db, tmp) as dbs:
        for kind in dbs.kinds:
            db, receipts = await db_stages(dbs.url(kind, "stages"), args)
            figures[kind] = {**loop_stages(args, receipts), **db}
    for kind, stages in figures.items():
        print(f"{kind}: µs of CPU per webhook request (fastest of {args.rounds} rounds)")
        for name, value in stages.items():
            print(f"  {name:55s} {value:7.1f}")
        loop = sum(v for k, v in stages.items() if not k.startswith(("apply", " ")))
        print(f"  {'event loop stages, total':55s} {loop:7.1f}")
    write_json(args.json, figures)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--db", choices=(SQLITE, POSTGRESQL), default=SQLITE)
    parser.add_argument("--json", metavar="PATH")
    asyncio.run(main(parser.parse_args()))


if __name__ == "__main__":
    cli()
