"""SMTP intake benchmark: the gateway vs a bare aiosmtpd sink, same clients, same run.

Each server runs in its own process (pinned to CPU 0 when the machine allows), the clients in
this one (CPU 1): 50 concurrent persistent connections sending ~8 KB multipart messages, then
one client sending one message at a time over one connection. Prints msgs/s, p99 latency, the
gateway/sink ratio, and checks that every message the gateway answered 250 is committed.

    .venv/bin/python bench/smtp.py --messages 2000 --sequential 500
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path
from typing import Any

# Run as a script, bench/ would be sys.path[0] and its modules (bench/queue.py) would shadow the
# standard library; the repository root is what we import from.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import aiosmtplib

RCPT = "soporte@callmyway.com"
LOREM = (
    "Desde esta mañana las llamadas salientes se cortan a los pocos segundos y la central "
    "marca error de registro en dos extensiones. Adjunto captura y detalle de la prueba. "
)


def message(n: int) -> bytes:
    """One ~8 KB multipart/mixed message (text + HTML alternative + a small attachment)."""
    msg = EmailMessage()
    msg["From"] = f"Cliente {n} <cliente{n}@empresa{n % 97}.example>"
    msg["To"] = RCPT
    msg["Subject"] = f"Falla en la troncal {n}"
    msg["Message-ID"] = f"<bench-{n}-{os.getpid()}@empresa.example>"
    msg["Date"] = "Mon, 30 Nov 2026 09:00:00 -0600"
    text = LOREM * 16
    msg.set_content(text)
    msg.add_alternative(f"<html><body><p>{text}</p></body></html>", subtype="html")
    msg.add_attachment(b"x" * 1500, maintype="application", subtype="octet-stream",
                       filename="registro.log")  # fmt: skip
    return msg.as_bytes(policy=SMTP_POLICY)


def _pin(cpu: int) -> None:
    if os.environ.get("BENCH_NO_PIN"):
        return
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {cpu})


async def _serve_sink(conn: Any) -> None:
    from aiosmtpd.smtp import SMTP

    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(Sink(), hostname="sink", loop=loop), "127.0.0.1", 0
    )
    conn.send(server.sockets[0].getsockname()[1])
    await loop.run_in_executor(None, conn.recv)
    server.close()
    conn.send({})


async def _serve_gateway(conn: Any, db: str) -> None:
    from aiohttp import web

    from adapters.email import smtp as email_smtp
    from config.loader import load_settings
    from gateway.app import create_app
    from gateway.core.services import GW

    settings = load_settings({"GATEWAY_DB": f"sqlite:///{db}", "GATEWAY_SMTP_PORT": "0"})
    app = create_app(settings, adapters={"email": email_smtp.setup})
    runner = web.AppRunner(app)
    await runner.setup()  # runs the cleanup contexts: store, workers, SMTP listener
    gw = app[GW]
    conn.send(gw.extras["smtp_port"])
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "stop":
            break
        started = time.perf_counter()
        await gw.extras["email_extractor"].idle()
        conn.send({"extract_lag_s": time.perf_counter() - started})
    await runner.cleanup()
    conn.send({})


def _server(kind: str, conn: Any, db: str) -> None:
    _pin(0)
    main = _serve_gateway(conn, db) if kind == "gateway" else _serve_sink(conn)
    profile = os.environ.get("BENCH_PROFILE")  # a path: cProfile of the server's main thread
    if not profile:
        asyncio.run(main)
        return
    import cProfile

    cProfile.runctx("asyncio.run(main)", globals(), {"main": main, "asyncio": asyncio},
                    f"{profile}.{kind}")  # fmt: skip


async def _client(port: int, bodies: list[bytes], latencies: list[float]) -> int:
    smtp = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, timeout=60, local_hostname="bench.local"
    )
    await smtp.connect()
    ok = 0
    for n, raw in enumerate(bodies):
        started = time.perf_counter()
        errors, _ = await smtp.sendmail(f"cliente{n}@empresa.example", [RCPT], raw)
        latencies.append(time.perf_counter() - started)
        ok += not errors
    await smtp.quit()
    return ok


async def _load(port: int, bodies: list[bytes], clients: int) -> dict[str, float]:
    latencies: list[float] = []
    shares = [bodies[i::clients] for i in range(clients)]
    started = time.perf_counter()
    ok = await asyncio.gather(*(_client(port, share, latencies) for share in shares if share))
    elapsed = time.perf_counter() - started
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0.0
    return {"ok": sum(ok), "rate": len(bodies) / elapsed, "p99_ms": p99 * 1000,
            "p50_ms": statistics.median(latencies) * 1000}  # fmt: skip


def run(kind: str, bodies: list[bytes], seq: list[bytes], clients: int, db: str) -> dict:
    """Start one server process, drive it, stop it; the figures measured against it."""
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_server, args=(kind, child, db))
    proc.start()
    port = parent.recv()
    _pin(1)
    result = {"concurrent": asyncio.run(_load(port, bodies, clients))}
    if kind == "gateway":
        parent.send("idle")
        result.update(parent.recv())
    result["sequential"] = asyncio.run(_load(port, seq, 1))
    if kind == "gateway":
        parent.send("idle")
        parent.recv()
    parent.send("stop")
    parent.recv()
    proc.join()
    return result


def _best(runs: list[dict], phase: str) -> dict[str, float]:
    return max((r[phase] for r in runs), key=lambda r: r["rate"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--sequential", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2, help="sink/gateway alternations; best kept")
    args = ap.parse_args()
    print(f"{args.messages} messages of ~{len(message(0)) // 1024} KB, {args.clients} clients,"
          f" {args.rounds} rounds (best of each kept: the machine is shared)")  # fmt: skip
    sinks: list[dict] = []
    gws: list[dict] = []
    total = 0
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "bench.db")  # one file-backed database across the gateway rounds
        for rnd in range(args.rounds):
            base = rnd * 10**7  # fresh Message-IDs each round: no duplicates
            bodies = [message(base + n) for n in range(args.messages)]
            seq = [message(base + 10**6 + n) for n in range(args.sequential)]
            sinks.append(run("sink", bodies, seq, args.clients, db))
            gws.append(run("gateway", bodies, seq, args.clients, db))
            total += args.messages + args.sequential
        with sqlite3.connect(db) as conn:
            stored = conn.execute("SELECT count(*) FROM receipts WHERE channel = 'email'")
            stored_n = stored.fetchone()[0]
            pending = conn.execute(
                "SELECT count(*) FROM messages WHERE flags LIKE '%\"body_pending\"%'"
            ).fetchone()[0]
    c_sink, c_gw = _best(sinks, "concurrent"), _best(gws, "concurrent")
    for name, r in (("sink", c_sink), ("gateway", c_gw)):
        print(f"{name:8} concurrent: {r['rate']:8.0f} msgs/s  p50 {r['p50_ms']:6.1f} ms"
              f"  p99 {r['p99_ms']:6.1f} ms  ({r['ok']:.0f} accepted)")  # fmt: skip
    print(f"ratio gateway/sink: {c_gw['rate'] / c_sink['rate']:.2f}  (target >= 0.60)")
    lags = ", ".join(f"{g['extract_lag_s']:.1f}" for g in gws)
    print(f"gateway bodies extracted after the last 250 of each round: {lags} s")
    s_sink, s_gw = _best(sinks, "sequential"), _best(gws, "sequential")
    for name, r in (("sink", s_sink), ("gateway", s_gw)):
        print(f"{name:8} one at a time: {r['rate']:6.0f} msgs/s  p99 {r['p99_ms']:5.1f} ms")
    print(f"one at a time gateway/sink: {s_gw['rate'] / s_sink['rate']:.2f}"
          "  (target >= 630 msgs/s)")  # fmt: skip
    print(f"committed: {stored_n}/{total} receipts, {pending} bodies still pending")
    if stored_n != total:
        sys.exit("not every accepted message was committed")


if __name__ == "__main__":
    main()
