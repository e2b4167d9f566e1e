"""SMTP intake benchmark: the gateway vs a bare aiosmtpd sink, same clients, same run, on SQLite
and on PostgreSQL (`--db`, default both).

Each server runs in its own process (pinned to CPU 0 when the machine allows, with the
PostgreSQL server) as `serve` runs (uvloop, heap frozen once started, the GIL handed over after
0.5 ms), the clients in this one (CPU 1): 50 concurrent persistent connections sending
~8 KB multipart messages, then one client sending one message at a time over one connection.
Each round runs the sink, then on each database two floors and the gateway (one database per
server and kind across the rounds), then the sink again; the best run of each is kept. The
floors are the sink plus the durable work alone, in the gateway's own store (group commit;
SQLite WAL, synchronous=FULL):
"raw row", the raw message committed before the 250 (what any durable SMTP intake pays); "body
parsed", the message also parsed with the standard library's cheapest parser and its text
committed with it (a body visible to agents at the 250: what any implementation pays to show
one). Prints msgs/s, p50/p99 latency, the gateway/sink and floor/sink ratios, how long after the
last 250 the deferred bodies were all extracted, the rate of messages whose body is visible to
agents (messages over the burst plus that lag), and checks that every message the gateway
answered 250 is committed. Issue 19's targets: bodies visible >= 0.5 of the sink's msgs/s; one
at a time >= 0.8 of the sink; PostgreSQL >= 0.8 of SQLite. A floor's own ratio to the sink is
the most any gateway reaches on this machine.

    .venv/bin/python bench/smtp.py --messages 2000 --sequential 500 [--db both]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import SMTP as SMTP_POLICY
from email.policy import compat32
from pathlib import Path
from typing import Any

# Run as a script, bench/ would be sys.path[0] and its modules (bench/queue.py) would shadow the
# standard library; the repository root is what we import from.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import aiosmtplib

from bench.databases import (
    LABELS,
    LOAD_CPU,
    POSTGRESQL,
    SERVER_CPU,
    SQLITE,
    Databases,
    add_options,
    count,
    pin,
    postmaster_pid,
    settled,
    table,
    write_json,
)
from bench.instances import cpu_seconds, postgres_pids
from gateway.cli import run_on_loop
from gateway.core.gil import quick_gil_handoff
from gateway.core.heap import freeze_startup_heap

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


async def _listen(conn: Any, handler: Any, name: str) -> None:
    """aiosmtpd with `handler` on a free loopback port (sent to the parent) until it says stop."""
    from aiosmtpd.smtp import SMTP

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=name, loop=loop), "127.0.0.1", 0
    )
    freeze_startup_heap()  # as `serve` does once started; every server here alike
    conn.send(server.sockets[0].getsockname()[1])
    await loop.run_in_executor(None, conn.recv)
    server.close()


async def _serve_sink(conn: Any) -> None:
    class Sink:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            return "250 OK"

    await _listen(conn, Sink(), "sink")
    conn.send({})


async def _serve_gateway(conn: Any, url: str) -> None:
    from aiohttp import web

    from adapters.email import smtp as email_smtp
    from config.loader import load_settings
    from gateway.app import create_app
    from gateway.core.services import GW

    class CachedNoRecords:
        """A local caching resolver that knows the bench's domains publish nothing: sender
        authentication runs (SPF, DKIM, DMARC all `none`) without the network's latency."""

        async def query(self, name: str, rdtype: str) -> list[Any]:
            return []

    settings = load_settings({"GATEWAY_DB": url, "GATEWAY_SMTP_PORT": "0"})
    app = create_app(settings, adapters={"email": email_smtp.setup}, resolver=CachedNoRecords())
    runner = web.AppRunner(app)
    await runner.setup()  # runs the cleanup contexts: store, workers, SMTP listener
    gw = app[GW]
    visible: dict[str, float] = {}  # tracking -> when its body's commit was published

    async def watch() -> None:
        async with gw.bus.subscribe() as queue:
            while True:
                notice = await queue.get()
                if notice.get("event") == "message":  # the extractor's, after the body commit
                    visible.setdefault(notice["tracking"], time.monotonic())

    watcher = asyncio.create_task(watch())
    await asyncio.sleep(0)  # subscribed before the first message
    await settled(gw)  # on PostgreSQL: alone, its writes notify nobody
    freeze_startup_heap()  # as `serve` does once started
    conn.send(gw.extras["smtp_port"])
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command == "stop":
            break
        started = time.perf_counter()
        await gw.extras["email_extractor"].idle()
        conn.send({"extract_lag_s": time.perf_counter() - started, "visible_at": dict(visible)})
        visible.clear()
    watcher.cancel()
    await runner.cleanup()
    conn.send({})


FLOOR_TABLE = {
    SQLITE: "CREATE TABLE IF NOT EXISTS inbound_mail (id INTEGER PRIMARY KEY, raw BLOB, body TEXT)",
    POSTGRESQL: "CREATE TABLE IF NOT EXISTS inbound_mail"
    " (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, raw bytea, body text)",
}
FLOORS = {"raw": "floor: raw row", "body": "floor: body parsed"}


def first_text(raw: bytes) -> str:
    """The body an agent reads, the cheapest way the standard library gives it: compat32's
    parse (with Python 3.13's boundary matcher, which the floor process installs as the gateway
    does on older Pythons), the first text part decoded (no HTML, attachments or header
    checks)."""
    msg = BytesParser(policy=compat32).parsebytes(raw)
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return ""


async def _serve_floor(conn: Any, url: str, body: bool) -> None:
    """The sink plus the raw message (and with `body`, its parsed text) group-committed in the
    gateway's store before the 250."""
    from adapters.email import boundary
    from gateway.store.postgres import PostgresStore
    from gateway.store.sqlite import SqliteStore, sqlite_path

    boundary.install()  # Python 3.13's boundary matcher, as the gateway parses (3.11, 3.12)
    sqlite = url.startswith("sqlite:///")
    store = SqliteStore(sqlite_path(url)) if sqlite else PostgresStore(url, instance="bench")
    await store.open()
    await store.transact(lambda tx: tx.execute(FLOOR_TABLE[SQLITE if sqlite else POSTGRESQL]))
    sql = "INSERT INTO inbound_mail (raw, body) VALUES (?, ?)"

    class Floor:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            raw = envelope.original_content
            text = first_text(raw) if body else None
            await store.transact(lambda tx: tx.execute(sql, (raw, text)))
            return "250 OK"

    await _listen(conn, Floor(), "floor")
    await store.close()
    conn.send({})


def _server(kind: str, conn: Any, url: str, loop: str) -> None:
    pin(SERVER_CPU)
    quick_gil_handoff()  # as `serve`; every server here alike
    if kind == "gateway":
        main = _serve_gateway(conn, url)
    elif kind in FLOORS:
        main = _serve_floor(conn, url, body=kind == "body")
    else:
        main = _serve_sink(conn)
    profile = os.environ.get("BENCH_PROFILE")  # a path: cProfile of the server's main thread
    if not profile:
        run_on_loop(main, loop)
        return
    import cProfile

    cProfile.runctx("run_on_loop(main, loop)", globals(), {"main": main, "loop": loop},
                    f"{profile}.{kind}")  # fmt: skip


async def _client(
    port: int, bodies: list[bytes], latencies: list[float], answered: dict[str, float]
) -> int:
    smtp = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, timeout=60, local_hostname="bench.local"
    )
    await smtp.connect()
    ok = 0
    for n, raw in enumerate(bodies):
        started = time.perf_counter()
        errors, reply = await smtp.sendmail(f"cliente{n}@empresa.example", [RCPT], raw)
        latencies.append(time.perf_counter() - started)
        answered[reply.rsplit(" ", 1)[-1]] = time.monotonic()  # "... Accepted as CMW-..."
        ok += not errors
    await smtp.quit()
    return ok


def _p99(values: list[float]) -> float:
    values = sorted(values)
    return values[max(0, int(len(values) * 0.99) - 1)] if values else 0.0


async def _load(port: int, bodies: list[bytes], clients: int) -> dict[str, Any]:
    latencies: list[float] = []
    answered: dict[str, float] = {}  # tracking -> when its 250 arrived (CLOCK_MONOTONIC)
    shares = [bodies[i::clients] for i in range(clients)]
    started = time.perf_counter()
    ok = await asyncio.gather(
        *(_client(port, share, latencies, answered) for share in shares if share)
    )
    elapsed = time.perf_counter() - started
    return {"ok": sum(ok), "rate": len(bodies) / elapsed, "p99_ms": _p99(latencies) * 1000,
            "p50_ms": statistics.median(latencies) * 1000, "answered": answered}  # fmt: skip


def _visible_delays(answered: dict[str, float], visible_at: dict[str, float]) -> list[float]:
    """Seconds from each message's 250 to its body's commit (never seen: infinite)."""
    return sorted(visible_at.get(t, float("inf")) - at for t, at in answered.items())


@contextlib.contextmanager
def _profiled(pid: int, label: str) -> Any:
    """py-spy on the server process when BENCH_PYSPY names an output prefix: only the thread
    holding the GIL is sampled (where Python CPU goes; a thread waiting for the database or the
    GIL is not), without pausing the process."""
    prefix = os.environ.get("BENCH_PYSPY")
    if not prefix:
        yield
        return
    spy = Path(sys.executable).parent / "py-spy"
    cmd = [str(spy), "record", "-r", "500", "--threads", "--gil", "--nonblocking", "-f", "raw",
           "-o", f"{prefix}-{label}.txt", "--pid", str(pid)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)  # attached before the load starts
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def run(
    kind: str,
    bodies: list[bytes],
    seq: list[bytes],
    clients: int,
    url: str,
    label: str = "",
    loop: str = "uvloop",
) -> dict:
    """Start one server process, drive it, stop it; the figures measured against it."""
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_server, args=(kind, child, url, loop))
    proc.start()
    port = parent.recv()
    pin(LOAD_CPU)
    pid = proc.pid or 0
    postmaster = postmaster_pid(url) if url.startswith("postgres") else None

    def cpu() -> tuple[float, float]:  # the gateway's and the PostgreSQL server's CPU so far
        return cpu_seconds([pid]), cpu_seconds(postgres_pids(postmaster))

    def phase(name: str, messages: list[bytes], n_clients: int) -> None:
        before = cpu()
        spy = _profiled(pid, f"{label}-{name}") if kind == "gateway" else contextlib.nullcontext()
        with spy:
            figures = result[name] = asyncio.run(_load(port, messages, n_clients))
            if kind == "gateway":
                parent.send("idle")  # until every body of the phase is extracted
                done = parent.recv()
        after = cpu()
        figures["cpu_us"] = (after[0] - before[0]) / len(messages) * 1e6
        figures["db_cpu_us"] = (after[1] - before[1]) / len(messages) * 1e6
        if kind == "gateway":
            figures["extract_lag_s"] = done["extract_lag_s"]
            delays = _visible_delays(figures["answered"], done["visible_at"])
            figures["visible_p50_s"] = statistics.median(delays)
            figures["visible_p99_s"] = _p99(delays)
        del figures["answered"]

    result: dict[str, Any] = {}
    phase("concurrent", bodies, clients)
    if kind == "gateway":
        result["extract_lag_s"] = result["concurrent"]["extract_lag_s"]
        # Messages whose body agents can read, per second: the burst plus the extraction lag.
        burst = len(bodies) / result["concurrent"]["rate"]
        result["visible"] = {"rate": len(bodies) / (burst + result["extract_lag_s"])}
    phase("sequential", seq, 1)
    parent.send("stop")
    parent.recv()
    proc.join()
    return result


def _best(runs: list[dict], phase: str) -> dict[str, float]:
    return max((r[phase] for r in runs), key=lambda r: r["rate"])


PENDING = {
    SQLITE: "SELECT count(*) FROM messages WHERE flags LIKE '%\"body_pending\"%'",
    POSTGRESQL: "SELECT count(*) FROM messages WHERE flags @> '[\"body_pending\"]'",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--sequential", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2, help="sink/gateway alternations; best kept")
    ap.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="event loop of every server here (default uvloop, as `serve`)",
    )
    add_options(ap)
    args = ap.parse_args()
    sinks: list[dict] = []
    gws: dict[str, list[dict]] = {}
    figures: dict[str, dict] = {}
    total = 0
    with tempfile.TemporaryDirectory() as tmp, Databases(args.db, tmp) as dbs:
        print(f"{args.messages} messages of ~{len(message(0)) // 1024} KB, {args.clients} clients,"
              f" {args.rounds} rounds (best of each kept: the machine is shared)")  # fmt: skip
        for kind in dbs.kinds:
            print(f"  {dbs.describe(kind)}")
        print(f"  {dbs.placement()}")
        print(f"  every server as `serve` runs: {args.loop}, its heap frozen once started, the"
              " GIL handed over after 0.5 ms", flush=True)  # fmt: skip
        urls = {kind: dbs.url(kind, "smtp") for kind in dbs.kinds}  # one per kind, every round
        floor_urls = {(f, k): dbs.url(k, f"smtp-floor-{f}") for f in FLOORS for k in dbs.kinds}
        floors: dict[tuple[str, str], list[dict]] = {}
        for rnd in range(args.rounds):
            base = rnd * 10**7  # fresh Message-IDs each round: no duplicates
            bodies = [message(base + n) for n in range(args.messages)]
            seq = [message(base + 10**6 + n) for n in range(args.sequential)]
            sinks.append(run("sink", bodies, seq, args.clients, "", loop=args.loop))
            for (floor, kind), url in floor_urls.items():
                floors.setdefault((floor, kind), []).append(
                    run(floor, bodies, seq, args.clients, url, loop=args.loop)
                )
            for kind, url in urls.items():
                gws.setdefault(kind, []).append(
                    run("gateway", bodies, seq, args.clients, url, f"{kind}-{rnd}", args.loop)
                )
            # The sink again at the end of the round, its faster run kept: it serves the burst
            # in half a second, so a slow moment of the machine then halved it and doubled every
            # ratio to it (floors included) in two runs of four.
            sinks.append(run("sink", bodies, seq, args.clients, "", loop=args.loop))
            total += args.messages + args.sequential
        for kind, url in urls.items():
            stored = count(url, "SELECT count(*) FROM receipts WHERE channel = 'email'")
            figures[kind] = {"stored": stored, "pending": count(url, PENDING[kind])}
        kinds = dbs.kinds
    c_sink, s_sink = _best(sinks, "concurrent"), _best(sinks, "sequential")
    print(f"sink  concurrent {c_sink['rate']:6.0f} msgs/s  p50 {c_sink['p50_ms']:5.1f} ms"
          f"  p99 {c_sink['p99_ms']:5.1f} ms;  one at a time {s_sink['rate']:5.0f} msgs/s"
          f"  p99 {s_sink['p99_ms']:5.1f} ms")  # fmt: skip
    for kind in kinds:
        c, s, v = (_best(gws[kind], phase) for phase in ("concurrent", "sequential", "visible"))
        figures[kind].update(
            concurrent_rate=c["rate"], concurrent_p50_ms=c["p50_ms"], concurrent_p99_ms=c["p99_ms"],
            concurrent_to_sink=c["rate"] / c_sink["rate"], visible_rate=v["rate"],
            visible_to_sink=v["rate"] / c_sink["rate"], sequential_rate=s["rate"],
            sequential_p99_ms=s["p99_ms"], sequential_to_sink=s["rate"] / s_sink["rate"],
            extract_lags_s=[g["extract_lag_s"] for g in gws[kind]],
            visible_p50_s=min(g["concurrent"]["visible_p50_s"] for g in gws[kind]),
            visible_p99_s=min(g["concurrent"]["visible_p99_s"] for g in gws[kind]),
            sequential_visible_p50_s=min(g["sequential"]["visible_p50_s"] for g in gws[kind]),
            sequential_visible_p99_s=min(g["sequential"]["visible_p99_s"] for g in gws[kind]),
            cpu_us=min(g["concurrent"]["cpu_us"] for g in gws[kind]),
            db_cpu_us=min(g["concurrent"]["db_cpu_us"] for g in gws[kind]),
            sequential_cpu_us=min(g["sequential"]["cpu_us"] for g in gws[kind]),
            sequential_db_cpu_us=min(g["sequential"]["db_cpu_us"] for g in gws[kind]),
        )  # fmt: skip
        for floor in FLOORS:
            fc, fs = (_best(floors[floor, kind], p) for p in ("concurrent", "sequential"))
            figures[kind].update({
                f"floor_{floor}_rate": fc["rate"],
                f"floor_{floor}_to_sink": fc["rate"] / c_sink["rate"],
                f"floor_{floor}_sequential_rate": fs["rate"],
                f"floor_{floor}_sequential_to_sink": fs["rate"] / s_sink["rate"],
            })  # fmt: skip
        # The 250 one at a time against the raw row's floor; bodies visible against the parsed.
        figures[kind]["sequential_to_floor"] = (
            s["rate"] / figures[kind]["floor_raw_sequential_rate"]
        )
        figures[kind]["visible_to_floor"] = v["rate"] / figures[kind]["floor_body_rate"]
    per = [figures[k] for k in kinds]
    table(
        kinds,
        [
            (
                "gateway concurrent",
                [
                    f"{f['concurrent_rate']:5.0f} msgs/s  p50 {f['concurrent_p50_ms']:5.1f}"
                    f"  p99 {f['concurrent_p99_ms']:5.1f} ms"
                    for f in per
                ],
            ),
            ("  answered 250 / sink", [f"{f['concurrent_to_sink']:.2f}" for f in per]),
            *[
                (
                    f"  {label} / sink",
                    [
                        f"{f[f'floor_{floor}_to_sink']:.2f} ({f[f'floor_{floor}_rate']:.0f} msgs/s)"
                        for f in per
                    ],
                )
                for floor, label in FLOORS.items()
            ],
            (
                "  bodies extracted after the last 250",
                [", ".join(f"{lag:.1f}" for lag in f["extract_lags_s"]) + " s" for f in per],
            ),
            (
                "  bodies visible / sink (target >= 0.5)",
                [f"{f['visible_to_sink']:.2f} ({f['visible_rate']:.0f} msgs/s)" for f in per],
            ),
            (
                "  body visible after the 250: p50, p99 (<= 1 s)",
                [f"{f['visible_p50_s']:.2f} s, {f['visible_p99_s']:.2f} s" for f in per],
            ),
            (
                "  server CPU per message (gateway, db)",
                [f"{f['cpu_us']:5.0f} µs, {f['db_cpu_us']:4.0f} µs" for f in per],
            ),
            (
                "gateway one at a time",
                [
                    f"{f['sequential_rate']:5.0f} msgs/s  p99 {f['sequential_p99_ms']:5.1f} ms"
                    for f in per
                ],
            ),
            ("  / sink (target >= 0.8)", [f"{f['sequential_to_sink']:.2f}" for f in per]),
            *[
                (
                    f"  {label}, one at a time / sink",
                    [
                        f"{f[f'floor_{floor}_sequential_to_sink']:.2f}"
                        f" ({f[f'floor_{floor}_sequential_rate']:.0f} msgs/s)"
                        for f in per
                    ],
                )
                for floor, label in FLOORS.items()
            ],
            (
                "  body visible after the 250: p50, p99",
                [
                    f"{f['sequential_visible_p50_s']:.2f} s, {f['sequential_visible_p99_s']:.2f} s"
                    for f in per
                ],
            ),
            (
                "  server CPU per message (gateway, db)",
                [
                    f"{f['sequential_cpu_us']:5.0f} µs, {f['sequential_db_cpu_us']:4.0f} µs"
                    for f in per
                ],
            ),
            (
                "committed receipts",
                [f"{f['stored']}/{total}, {f['pending']} bodies pending" for f in per],
            ),
        ],
    )
    if len(kinds) == 2:
        ratio = figures[POSTGRESQL]["concurrent_rate"] / figures[SQLITE]["concurrent_rate"]
        figures["postgresql_to_sqlite"] = {"concurrent": ratio}
        print(f"PostgreSQL / SQLite, concurrent msgs/s: {ratio:.2f}  (target >= 0.8)")
    write_json(args.json, figures)
    missing = [LABELS[k] for k in kinds if figures[k]["stored"] != total]
    if missing:
        sys.exit(f"not every accepted message was committed ({', '.join(missing)})")


if __name__ == "__main__":
    main()
