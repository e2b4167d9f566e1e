"""Mixed load: the customer's time to a tracking number at --rate new contacts/s (issue 19).

One real gateway process (`python -m gateway serve`, tests/instances.py) per database, on a
fresh database, takes an open-loop stream of new contacts: contact k is due at k/--rate seconds
and the channels take turns (chat, WhatsApp, Telegram, email: --rate/4 contacts/s each) for
--seconds. The clients and loopback fakes are bench/soak.py's: a chat WebSocket conversation, a
Twilio-signed WhatsApp webhook, a Telegram webhook update, an email over SMTP; a Telegram Bot
API and an SMTP relay receive the acknowledgements the outbox sends. Sender authentication
believes the relay (127.0.0.1 is a trusted relay), so the gateway never asks DNS. The load
generator is one address standing for many customers, so the per-address caps (chat sockets,
HTTP and SMTP connections) are lifted.

Every latency counts from the contact's scheduled time, not from when the client got round to
it (open loop: a gateway that falls behind is not hidden by a client waiting for it):

    chat       due -> the `ticket` frame (WebSocket connect, hello, start, ticket)
    WhatsApp   due -> the TwiML answer carrying the tracking number
    Telegram   due (the POST) -> the fake Bot API receives the sendMessage acknowledgement
               carrying the tracking number (also shown: from the webhook's 200)
    email      the gateway's 250 -> the fake relay receives the acknowledgement mail carrying
               the tracking number: the time the ack takes to leave the outbox (also shown:
               from the message's start)

A client retries a failed attempt like its provider would (counted as a failure); a contact
still without its tracking number after the stream and --drain seconds, or two contacts given
the same number, makes the script exit non-zero. Targets (issue 19, at 200 contacts/s): chat
`ticket` and WhatsApp TwiML p99 <= 100 ms; Telegram and email acknowledgements leave the outbox
p99 <= 1 s.

    .venv/bin/python bench/mixed.py [--db sqlite|postgresql|both] [--rate 200] [--seconds 10]
                                    [--json PATH]
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
import os
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from email import message_from_bytes, policy
from typing import Any

import aiohttp
from aiohttp import web

from bench.databases import (
    LABELS,
    LOAD_CPU,
    POSTGRESQL,
    SERVER_CPU,
    Databases,
    add_options,
    pin,
    write_json,
)
from bench.instances import cpu_seconds, postgres_pids, settled
from bench.soak import Fakes, Gateway, Stream
from gateway.core.tracking import find_tracking

# The stream's channels (soak's client names) and the names the figures use.
CHANNELS = {"webchat": "chat", "whatsapp": "whatsapp", "telegram": "telegram", "email": "email"}
TARGET_MS = {"chat": 100.0, "whatsapp": 100.0, "telegram": 1000.0, "email": 1000.0}
WHAT = {
    "chat": "chat: due -> `ticket` frame",
    "whatsapp": "WhatsApp: due -> TwiML with the number",
    "telegram": "Telegram: due -> ack at the Bot API",
    "email": "email: 250 -> ack at the relay",
}
# One load generator stands for many customers: lift the caps on one client address.
LIMITS = """
[webchat]
max_sockets_per_ip = 100000
messages_per_minute = 1000

[limits]
http_connections_per_ip = 100000
smtp_max_connections = 2000
smtp_connections_per_ip = 2000
"""


class Recorder(Fakes):
    """soak's fakes, also noting when each recipient's first acknowledgement with a tracking
    number arrives (time.monotonic) and the numbers it carries."""

    def __init__(self) -> None:
        super().__init__()
        self.acks: dict[str, dict[str, tuple[float, list[str]]]] = {"telegram": {}, "email": {}}

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.monotonic()
        numbers = find_tracking(_mail_text(envelope.content))
        if numbers:
            for rcpt in envelope.rcpt_tos:
                self.acks["email"].setdefault(rcpt.lower(), (now, numbers))
        return await super().handle_DATA(server, session, envelope)

    async def bot(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        response = await super().bot(request)
        if request.match_info["method"] == "sendMessage" and response.status == 200:
            params = await request.post()  # the form the fake has read (aiohttp keeps it)
            numbers = find_tracking(str(params.get("text", "")))
            if numbers:
                self.acks["telegram"].setdefault(str(params.get("chat_id", "")), (now, numbers))
        return response


def _mail_text(raw: bytes) -> str:
    """The subject and text of a mail, decoded (quoted-printable, base64, encoded words)."""
    msg = message_from_bytes(raw, policy=policy.default)
    parts = [str(msg.get("Subject", ""))]
    with contextlib.suppress(Exception):
        body = msg.get_body(preferencelist=("plain", "html"))
        if body is not None:
            parts.append(str(body.get_content()))  # type: ignore[attr-defined]
    return "\n".join(parts)


class Timed(Stream):
    """soak's clients, noting when each contact got its answer; a contact the gateway never
    answers within `give_up` seconds is lost (recorded, not raised)."""

    give_up = 30.0

    def __init__(self, gw: Gateway, run: str, http: aiohttp.ClientSession):
        super().__init__(gw, run, http)
        self.due: dict[tuple[str, int], float] = {}
        self.lag: list[float] = []  # how late the client started each contact
        self.lost: list[str] = []
        self.ended = 0.0  # when the last contact was due

    async def until_acked(
        self, channel: str, i: int, attempt: Callable[[], Awaitable[dict[str, Any] | None]]
    ) -> None:
        async def timed() -> dict[str, Any] | None:
            result = await attempt()
            if result is not None:
                result["at"] = time.monotonic()
            return result

        try:
            await super().until_acked(channel, i, timed)
        except SystemExit as exc:  # soak's way of giving up on a contact
            self.lost.append(f"{CHANNELS[channel]} {i}: {exc}")

    async def contact(self, channel: str, i: int, due: float) -> None:
        """Start contact i of `channel` at its scheduled time."""
        self.due[channel, i] = due
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self.lag.append(time.monotonic() - due)
        await getattr(self, channel)(i)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max in milliseconds (nearest rank); zeros for no values."""
    if not values:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    ordered = sorted(values)
    n = len(ordered)
    return {
        "p50_ms": ordered[n // 2] * 1000,
        "p99_ms": ordered[min(n - 1, int(n * 0.99))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


async def wait_for_acks(stream: Timed, fakes: Recorder, seconds: float) -> None:
    """Until every answered Telegram and email contact's acknowledgement has arrived."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        waiting = [
            c
            for channel in ("telegram", "email")
            for c in stream.acked[channel]
            if c["recipient"].lower() not in fakes.acks[channel]
        ]
        if not waiting:
            return
        await asyncio.sleep(0.1)


def figures_of(stream: Timed, fakes: Recorder) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per channel: count, percentiles, failures; and every contact without its number."""
    missing: list[str] = list(stream.lost)
    numbers: dict[str, str] = {}
    out: dict[str, dict[str, Any]] = {}
    for channel, name in CHANNELS.items():
        if not any(key[0] == channel for key in stream.due):
            continue  # not in --channels
        latencies: list[float] = []
        also: list[float] = []  # Telegram: from the 200; email: from the message's start
        for c in stream.acked[channel]:
            due = stream.due[channel, c["i"]]
            if channel == "webchat":
                found, arrived = find_tracking(c["tracking"]), c["at"]
            elif channel == "whatsapp":
                found, arrived = find_tracking(c["twiml"]), c["at"]
            else:
                arrived, found = fakes.acks[channel].get(c["recipient"].lower(), (0.0, []))
            if not found:
                missing.append(f"{name} {c['i']}: no tracking number")
                continue
            other = numbers.setdefault(found[0], f"{name} {c['i']}")
            if other != f"{name} {c['i']}":
                missing.append(f"{name} {c['i']}: {found[0]} was already {other}'s")
            if channel == "email":
                latencies.append(arrived - c["at"])
                also.append(arrived - due)
            else:
                latencies.append(arrived - due)
                if channel == "telegram":
                    also.append(arrived - c["at"])
        count = sum(1 for key in stream.due if key[0] == channel)
        figure: dict[str, Any] = {
            "contacts": count,
            "count": len(latencies),
            "failures": stream.tries[channel] - len(stream.acked[channel]),
            **percentiles(latencies),
        }
        if channel in ("telegram", "email"):
            # How the outbox kept pace: acks out while contacts still arrived, and its rate.
            times = sorted(fakes.acks[channel][c["recipient"].lower()][0]
                           for c in stream.acked[channel]
                           if c["recipient"].lower() in fakes.acks[channel])  # fmt: skip
            figure["acks_during_load"] = sum(1 for t in times if t <= stream.ended)
            span = times[-1] - times[0] if len(times) > 1 else 0.0
            figure["acks_per_s"] = (len(times) - 1) / span if span else 0.0
        if also:
            prefix = "from_start_" if channel == "email" else "from_200_"
            figure.update({prefix + k: v for k, v in percentiles(also).items()})
        out[name] = figure
    return out, missing


def lifted(gw: Gateway) -> Gateway:
    """The gateway with the per-address caps lifted in its configuration."""
    config = Path(gw.instance.env["GATEWAY_CONFIG"])
    config.write_text(config.read_text() + LIMITS)
    return gw


async def one_database(kind: str, dbs: Databases, args: argparse.Namespace, tmp: Path) -> dict:
    url = dbs.url(kind, "mixed")
    fakes = Recorder()
    await fakes.start()
    gw = lifted(Gateway(url, tmp / kind, fakes, name="mixed"))
    load_before = os.getloadavg()
    try:
        await gw.start()
        assert gw.instance.proc is not None
        pin(SERVER_CPU, gw.instance.proc.pid)
        if kind == POSTGRESQL:  # alone on its database: writes that notify nobody
            await settled(gw.instance.url, alone=True)
        connector = aiohttp.TCPConnector(limit=0, force_close=True)
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            stream = Timed(gw, secrets.token_hex(3), http)
            names = [soak for soak, name in CHANNELS.items() if name in args.channels]
            total = round(args.rate * args.seconds)
            start = time.monotonic() + 0.2
            pids = [gw.instance.proc.pid], postgres_pids(dbs.postmaster())
            cpu_before = cpu_seconds(pids[0]), cpu_seconds(pids[1]), time.process_time()
            tasks = [
                stream.contact(names[k % len(names)], k // len(names), start + k / args.rate)
                for k in range(total)
            ]
            await asyncio.gather(*tasks)
            stream_s = time.monotonic() - start
            stream.ended = start + (total - 1) / args.rate
            cpu_load = cpu_seconds(pids[0])
            await wait_for_acks(stream, fakes, args.drain)
            cpu = cpu_seconds(pids[0]), cpu_seconds(pids[1]), time.process_time()
            wall = time.monotonic() - start
    finally:
        gw.stop()
        await fakes.stop()
    channels, missing = figures_of(stream, fakes)
    return {
        **channels,
        "rate": args.rate,
        "seconds": args.seconds,
        "contacts": total,
        "stream_s": stream_s,
        "client_lag_max_ms": max(stream.lag, default=0.0) * 1000,
        # CPU per contact, stream and drain together: the gateway process, the PostgreSQL
        # server's processes, this load generator (clients and fakes)
        "gateway_cpu_ms": (cpu[0] - cpu_before[0]) / max(total, 1) * 1000,
        "postgres_cpu_ms": (cpu[1] - cpu_before[1]) / max(total, 1) * 1000,
        "loadgen_cpu_ms": (cpu[2] - cpu_before[2]) / max(total, 1) * 1000,
        "gateway_cpu_share": (cpu[0] - cpu_before[0]) / wall,
        # the share of a core the gateway used while contacts arrived, then while acks drained
        "gateway_busy_load": (cpu_load - cpu_before[0]) / stream_s,
        "gateway_busy_drain": (cpu[0] - cpu_load) / max(wall - stream_s, 1e-9),
        "loadavg_before": load_before[0],
        "loadavg_after": os.getloadavg()[0],
        "missing": missing,
    }


def report(kind: str, f: dict[str, Any]) -> None:
    """One line per channel, the target last."""
    print(
        f"{LABELS[kind]}: {f['contacts']} contacts in {f['stream_s']:.1f}s (client start lag max"
        f" {f['client_lag_max_ms']:.0f} ms; load average {f['loadavg_before']:.2f} before,"
        f" {f['loadavg_after']:.2f} after)"
    )
    print(
        f"  CPU per contact: gateway {f['gateway_cpu_ms']:.1f} ms (busy"
        f" {f['gateway_busy_load']:.0%} of a core during the load,"
        f" {f['gateway_busy_drain']:.0%} while acks drained), PostgreSQL"
        f" {f['postgres_cpu_ms']:.1f} ms,"
        f" load generator {f['loadgen_cpu_ms']:.1f} ms"
    )
    width = max(len(w) for w in WHAT.values())
    for name, what in WHAT.items():
        if name not in f:
            continue
        c = f[name]
        target = TARGET_MS[name]
        mark = "✓" if c["count"] and c["p99_ms"] <= target else "✗"
        line = (
            f"  {what:<{width}}  n {c['count']:4d}/{c['contacts']:<4d}  p50 {c['p50_ms']:7.1f}"
            f"  p99 {c['p99_ms']:7.1f}  max {c['max_ms']:7.1f} ms  failures {c['failures']:3d}"
            f"  p99 <= {target:.0f} ms {mark}"
        )
        if "acks_per_s" in c:
            line += f"  [{c['acks_during_load']} out during the load; {c['acks_per_s']:.0f}/s]"
        if "from_start_p99_ms" in c:
            line += f"  (from the start: p50 {c['from_start_p50_ms']:.1f}, p99 "
            line += f"{c['from_start_p99_ms']:.1f} ms)"
        if "from_200_p99_ms" in c:
            line += f"  (from the 200: p50 {c['from_200_p50_ms']:.1f}, p99 "
            line += f"{c['from_200_p99_ms']:.1f} ms)"
        print(line, flush=True)
    for problem in f["missing"][:20]:
        print(f"  MISSING {problem}")


async def main(args: argparse.Namespace) -> None:
    pin(LOAD_CPU)
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp, Databases(args.db, tmp) as dbs:
        print(
            f"mixed load: {args.rate:g} new contacts/s for {args.seconds:g}s, open loop, over"
            f" {', '.join(args.channels)} in turn"
        )
        for kind in dbs.kinds:
            print(f"  {dbs.describe(kind)}")
        print(f"  {dbs.placement()}", flush=True)
        for kind in dbs.kinds:
            figures[kind] = await one_database(kind, dbs, args, Path(tmp))
            report(kind, figures[kind])
    write_json(args.json, figures)
    lost = {kind: len(f["missing"]) for kind, f in figures.items() if f["missing"]}
    if lost:
        raise SystemExit(f"contacts without their tracking number: {lost}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_options(parser)
    parser.add_argument("--rate", type=float, default=200.0, help="new contacts per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the load lasts")
    parser.add_argument(
        "--channels",
        type=lambda text: [c for c in text.split(",") if c],
        default=list(CHANNELS.values()),
        help="comma-separated subset of chat,whatsapp,telegram,email (default all four)",
    )
    parser.add_argument(
        "--drain", type=float, default=60.0, help="seconds to wait for outstanding acks at most"
    )
    args = parser.parse_args()
    unknown = set(args.channels) - set(CHANNELS.values()) or not args.channels
    if unknown:
        parser.error(f"--channels: one or more of {', '.join(CHANNELS.values())}, not {unknown}")
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
