"""Benchmark: N idle chat sockets held by one gateway process; RSS per socket; one agent message
to all of them, on SQLite and on PostgreSQL (`--db`, default both). Loopback only.

    .venv/bin/python bench/chat.py 1000 5000 10000 [--db both]

The gateway runs in a subprocess (this file with `--serve`: the real `create_app` with the
webchat adapter on a fresh database of each kind, plus one bench-only route that queues an agent
reply exactly as the agent API does), pinned to CPU 0 with the PostgreSQL server when the
machine has two cores; this process (CPU 1) holds the sockets. All N sockets resume the SAME
visitor token, so one reply fans out to all N; the figure is the time from the request to the
last socket's arrival.
"""

from __future__ import annotations

import sys
from pathlib import Path

# `python bench/chat.py` puts bench/ first on sys.path, where other benchmarks (queue.py...)
# would shadow standard modules of the same name: drop it before importing anything else.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

import argparse
import asyncio
import gc
import json
import resource
import socket
import tempfile
import time
from typing import Any

import aiohttp

from bench.databases import (
    LABELS,
    LOAD_CPU,
    SERVER_CPU,
    Databases,
    add_options,
    pin,
    write_json,
)

ORIGIN = "https://www.callmyway.com"


def raise_nofile() -> None:
    """Lift the soft open-files limit to the hard one (each socket is a descriptor)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(port: int, url: str, cap: int) -> None:
    """The gateway process: webchat adapter + POST /bench/reply {tracking, text}."""
    raise_nofile()
    pin(SERVER_CPU)
    from aiohttp import web

    from adapters.webchat import ws as webchat_ws
    from config.loader import load_settings
    from gateway.app import create_app
    from gateway.core.replies import queue_reply
    from gateway.core.services import GW

    env = {"GATEWAY_DB": url, "GATEWAY_HTTP_PORT": str(port)}
    # Every socket is one visitor's, from one address: lift both caps above N.
    limits = {"max_sockets_per_ip": cap, "max_sockets_per_visitor": cap}
    settings = load_settings(env, {"webchat": limits})
    app = create_app(settings, adapters={"webchat": webchat_ws.setup})

    async def reply(request: web.Request) -> web.Response:
        gw = app[GW]
        body = await request.json()

        def queue(tx: Any) -> int:
            incident = tx.incident_by_tracking(body["tracking"])
            return queue_reply(tx, incident, text=body["text"], author="bench", now=gw.clock())

        await gw.store.transact(queue)
        gw.outbox.wake()
        return web.json_response({"ok": True})

    app.router.add_post("/bench/reply", reply)
    sender = app[GW].outbox.senders["webchat"]

    async def timed(item: Any) -> str | None:
        # Server-side fan-out time, reported on stderr for the client to read.
        started = time.perf_counter()
        result = await sender(item)
        print(f"FANOUT {result} {(time.perf_counter() - started) * 1000:.1f}", file=sys.stderr)
        return result

    app[GW].outbox.senders["webchat"] = timed
    print("READY", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def until(ws: aiohttp.ClientWebSocketResponse, kind: str) -> dict[str, Any]:
    """Read frames until one of type `kind`."""
    while True:
        frame = json.loads((await ws.receive(timeout=60)).data)
        if frame["type"] == kind:
            return frame  # type: ignore[no-any-return]


async def run(n: int, db_url: str) -> dict[str, float]:
    """One measurement with `n` sockets, the gateway on the database `db_url`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        str(port),
        db_url,
        str(n + 100),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None and (await proc.stdout.readline()).strip() == b"READY"
        url = f"http://127.0.0.1:{port}"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:
            for _ in range(200):  # wait for the listener
                try:
                    async with http.get(f"{url}/healthz") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
            first = await http.ws_connect(f"{url}/chat/ws", headers={"Origin": ORIGIN})
            await first.send_json({"type": "hello"})
            token = (await until(first, "welcome"))["token"]
            await first.send_json(
                {
                    "type": "start",
                    "client_id": "b1",
                    "name": "Bench",
                    "email": "b@example.com",
                    "country": "CR",
                    "text": "bench",
                    "users": "one",
                    "can_work": True,
                }
            )
            tracking = (await until(first, "ticket"))["tracking"]
            await first.close()
            await asyncio.sleep(0.5)
            before = rss_kib(proc.pid)
            sockets: list[aiohttp.ClientWebSocketResponse] = []
            gate = asyncio.Semaphore(200)

            arrivals: list[float] = []
            readers: list[asyncio.Task[None]] = []

            async def read(ws: aiohttp.ClientWebSocketResponse) -> None:
                # Like a browser, keep reading: that is also what answers the server's pings.
                while True:
                    msg = await ws.receive()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        return
                    if json.loads(msg.data)["type"] == "message":
                        arrivals.append(time.perf_counter())
                        return

            async def open_one() -> None:
                async with gate:
                    ws = await http.ws_connect(f"{url}/chat/ws", headers={"Origin": ORIGIN})
                    await ws.send_json({"type": "hello", "token": token})
                    await until(ws, "synced")
                    sockets.append(ws)
                    readers.append(asyncio.create_task(read(ws)))

            started = time.perf_counter()
            await asyncio.gather(*(open_one() for _ in range(n)))
            connect_s = time.perf_counter() - started
            await asyncio.sleep(1.0)  # idle: let the server settle
            after = rss_kib(proc.pid)
            # The measuring client holds N sockets and N reader tasks: a garbage-collector pass
            # over that heap in the middle of the burst would be timed as delivery delay.
            gc.collect()
            gc.freeze()
            gc.disable()
            t0 = time.perf_counter()
            async with http.post(f"{url}/bench/reply", json={"tracking": tracking, "text": "hi"}):
                pass
            await asyncio.wait_for(asyncio.gather(*readers), timeout=120)
            assert len(arrivals) == n, f"only {len(arrivals)} of {n} sockets got the message"
            gc.enable()
            gc.unfreeze()
            last = max(arrivals) - t0
            spread = max(arrivals) - min(arrivals)
            assert proc.stderr is not None
            line = (await asyncio.wait_for(proc.stderr.readline(), timeout=10)).decode().split()
            fanout_ms = float(line[2]) if line[:1] == ["FANOUT"] else float("nan")
            await asyncio.gather(*(ws.close() for ws in sockets))
        return {
            "sockets": n,
            "connect_s": connect_s,
            "rss_before_kib": before,
            "rss_after_kib": after,
            "kib_per_socket": (after - before) / n,
            "last_arrival_ms": last * 1000,
            "first_to_last_ms": spread * 1000,
            "server_fanout_ms": fanout_ms,
        }
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), timeout=30)


def main() -> None:
    """Run each N on each database and print one line per run."""
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sockets", type=int, nargs="*", default=[1000], help="N (default 1000)")
    add_options(parser)
    args = parser.parse_args()
    raise_nofile()
    pin(LOAD_CPU)
    figures: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="chatbench-") as tmp, Databases(args.db, tmp) as dbs:
        for kind in dbs.kinds:
            print(f"  {dbs.describe(kind)}")
        print(f"  {dbs.placement()}", flush=True)
        for n in args.sockets:
            for kind in dbs.kinds:
                r = asyncio.run(run(n, dbs.url(kind, "chat")))
                figures.setdefault(kind, {})[n] = r
                print(
                    f"{LABELS[kind]:10s} {r['sockets']:>6} sockets"
                    f"  {r['kib_per_socket']:5.1f} KiB/socket"
                    f" (RSS {r['rss_before_kib'] / 1024:.1f}"
                    f" -> {r['rss_after_kib'] / 1024:.1f} MiB)"
                    f"  one message to all: last arrival {r['last_arrival_ms']:6.1f} ms"
                    f" (server fan-out {r['server_fanout_ms']:6.1f} ms,"
                    f" first->last arrival {r['first_to_last_ms']:6.1f} ms)"
                    f"  connect {r['connect_s']:.1f} s",
                    flush=True,
                )
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
