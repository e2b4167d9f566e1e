"""The webhook benchmarks' load generator: Twilio-signed WhatsApp posts over keep-alive
connections, from a process of its own (pinned to CPU 1 when the machine has two).

`drive(urls, public_url, args, tag)` runs this file as a subprocess and returns its figures:
requests, statuses, seconds, req/s, p50/p99. Closed loop by default (each connection sends its
next request when the answer to the previous one arrives); with a rate, open loop (request k
is due at k/rate seconds and its latency counts from then). Several comma-separated URLs spread
the connections over several servers. Loopback only, bounded by a count and a time limit.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import asyncio
import json
import time
import uuid
from urllib.parse import urlencode

import aiohttp
from twilio.request_validator import RequestValidator

from bench.databases import LOAD_CPU, pin

PATH = "/webhooks/twilio/whatsapp"
SID = "AC" + "0" * 32
TOKEN = "bench-auth-token-0123456789abcdef"


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
        k, (body, signature) = queue.get_nowait()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Twilio-Signature": signature,
        }
        started = await stats.pace(k)
        async with session.post(url + PATH, data=body, headers=headers) as resp:
            await resp.read()
        stats.record(started, resp.status)


async def _raw_worker(url: str, queue: asyncio.Queue, stats: Stats) -> None:
    """HTTP/1.1 keep-alive by hand: a far cheaper client, so the server is what is measured."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        while not queue.empty() and time.perf_counter() < stats.deadline:
            k, (body, signature) = queue.get_nowait()
            head = (
                f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"X-Twilio-Signature: {signature}\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            started = await stats.pace(k)
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
    """Latencies and status counts of one phase; the pace of an open-loop load."""

    def __init__(self, limit: float, rate: float | None = None):
        self.start = time.perf_counter()
        self.deadline = self.start + limit
        self.rate = rate
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}

    async def pace(self, k: int) -> float:
        """When request k starts: now (closed loop), or at its slot at `rate` per second (open
        loop), the latency then counted from the slot even when the request goes out later, so
        a server that falls behind is not hidden by the client waiting for it."""
        if not self.rate:
            return time.perf_counter()
        slot = self.start + k / self.rate
        delay = slot - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        return slot

    def record(self, started: float, status: int) -> None:
        self.latencies.append(time.perf_counter() - started)
        self.statuses[status] = self.statuses.get(status, 0) + 1


async def load(args: argparse.Namespace) -> dict:
    """The second process: post signed forms over `conns` connections; latency stats."""
    pin(LOAD_CPU)
    urls = args.load.split(",")  # several instances: the connections are spread over them
    queue: asyncio.Queue[tuple[int, tuple[bytes, str]]] = asyncio.Queue()
    for item in enumerate(forms(args.requests, args.public_url, args.tag)):
        queue.put_nowait(item)
    stats = Stats(args.limit, args.rate)
    started = stats.start
    if args.client == "aiohttp":
        connector = aiohttp.TCPConnector(limit=args.conns)
        async with aiohttp.ClientSession(connector=connector) as session:
            workers = [
                _aiohttp_worker(session, urls[k % len(urls)], queue, stats)
                for k in range(args.conns)
            ]
            await asyncio.gather(*workers)
    else:
        await asyncio.gather(
            *(_raw_worker(urls[k % len(urls)], queue, stats) for k in range(args.conns))
        )
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
    """Run the load generator as a second process and read its JSON result (`url` may name
    several servers, comma-separated)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, url, "--public-url", public_url,
        "--requests", str(args.requests), "--conns", str(args.conns),
        "--limit", str(args.limit), "--tag", tag, "--client", args.client,
        *(["--rate", str(args.rate)] if getattr(args, "rate", None) else []),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    cpu = time.process_time()  # this process only serves while the load runs
    out, _ = await proc.communicate()
    result = json.loads(out)
    result["server_cpu_us"] = (time.process_time() - cpu) / max(result["requests"], 1) * 1e6
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("load", help="server URL(s), comma-separated")
    parser.add_argument("--public-url", required=True, help="the URL Twilio signs")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--limit", type=float, default=30.0)
    parser.add_argument("--tag", default="1", help="distinguishes the phones of phases")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    parser.add_argument("--rate", type=float, default=None, help="open loop: req/s offered")
    print(json.dumps(asyncio.run(load(parser.parse_args()))))


if __name__ == "__main__":
    cli()
