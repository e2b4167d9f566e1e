"""Benchmark: two gateway instances on one PostgreSQL database vs one, same cores (issue 19).

Each phase starts real `python -m gateway serve` processes (tests/instances.py: one public URL,
one secret key, each its own HTTP and SMTP ports) on a fresh database of a durable throwaway
PostgreSQL cluster (fsync on), warms them up, then drives them with the webhook's load generator
(bench/loadgen.py): 50 keep-alive connections posting Twilio-signed WhatsApp forms, spread over the
instances (connection k goes to instance k mod N), bounded by a request count and a time limit,
loopback only. Two consecutive forms come from the same phone, so with two instances the two
messages of one contact usually arrive on different instances at the same moment: the
cross-instance rules (advisory locks on the sender and provider id, retries) are exercised.

Phases alternate "one instance" and "two instances" for --rounds rounds; the figure is the median
of the per-round ratio of aggregate req/s, two over one (issue 19: two instances lose no more than
10 % of one instance's req/s to coordination, i.e. >= 0.90). Each round first runs the same pair
with the webhook's floor in place of the gateway (bench/webhook.py's floor with the issue's
checks, served by its own process with the gateway's store; the message's and the sender's lock
keys declared, the least several processes need to make one incident per sender): its two/one
ratio is what splitting the same durable work over two processes costs on these cores without
any gateway, the most the gateway's ratio can be here. Placement on a 2-core machine: every
instance and the PostgreSQL server on CPU 0, the load generator on CPU 1 — two instances share
the one core one instance had, so the ratio shows what coordination costs, not scaling. After
each phase every request answered 200 must be a receipt in the database, and there must be one
incident per phone.

    .venv/bin/python bench/instances.py [--requests 3000] [--conns 50] [--rounds 3]
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import tempfile
import urllib.request

from bench.databases import POSTGRESQL, SERVER_CPU, Databases, count, pin, write_json
from bench.loadgen import PATH, SID, TOKEN, drive
from tests.instances import PUBLIC_URL, Instance

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of processes (all their threads) so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def postgres_pids(postmaster: int | None) -> list[int]:
    """The PostgreSQL server's processes (the postmaster and its children)."""
    if postmaster is None:
        return []
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == postmaster:
                pids.append(int(entry.name))
    return pids


class FloorProcess(Instance):
    """The webhook's floor with the issue's checks, served by its own process (`--serve-floor`)
    on the database in GATEWAY_DB; started, checked and stopped as a gateway instance is."""

    def start(self) -> FloorProcess:
        command = [sys.executable, __file__, "--serve-floor", self.env["GATEWAY_DB"]]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [*command, str(self.http_port), self.name],
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self


def serve_floor(url: str, port: int, name: str) -> None:
    """Serve the floor on `port` until SIGTERM: aiohttp and the gateway's store (group commit
    on `url`, whose schema the driver migrated), uvloop, a frozen startup heap and the GIL's
    quick hand-off as `serve`."""
    from aiohttp import web

    from bench.webhook import checked
    from gateway.cli import run_on_loop
    from gateway.core.gil import quick_gil_handoff
    from gateway.core.heap import freeze_startup_heap
    from gateway.store.postgres import PostgresStore

    async def main() -> None:
        store = PostgresStore(url, instance=name)
        store.notify_changes = False  # live pages elsewhere are the gateway's, not the floor's
        await store.open()

        async def healthz(request: web.Request) -> web.Response:
            counts = {"batches": store.batches, "deadlocks": store.deadlocks}
            return web.json_response({"ok": await store.ping(), **counts})

        app = web.Application()
        app.router.add_post(PATH, checked(store, public_url=PUBLIC_URL, keyed=True))
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        freeze_startup_heap()
        quick_gil_handoff()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()
        await store.close()

    run_on_loop(main(), "uvloop")


async def migrated(url: str) -> None:
    """The gateway's schema on the floor's fresh database, before its processes start."""
    from gateway.store.postgres import PostgresStore

    store = PostgresStore(url, instance="bench-migrate")
    await store.open()
    try:
        await store.migrate()
    finally:
        await store.close()


async def phase(
    dbs: Databases, n: int, args: argparse.Namespace, workdir: Path, *, floor: bool = False
) -> dict:
    """Start n instances (or floor processes) on a fresh database, warm them up, drive them;
    figures and checks."""
    url = dbs.url(POSTGRESQL, f"{'floor' if floor else 'instances'}{n}")
    env = {
        "GATEWAY_DB": url,
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "TWILIO_API_BASE": "http://127.0.0.1:9",  # nothing listens: no traffic leaves
    }
    kind = FloorProcess if floor else Instance
    if floor:
        await migrated(url)
    instances = [kind(f"core-{chr(97 + k)}", workdir / f"{n}", env) for k in range(n)]
    try:
        for instance in instances:
            instance.start()
            assert instance.proc is not None
            pin(SERVER_CPU, instance.proc.pid)
        await asyncio.gather(*(instance.healthy(60) for instance in instances))
        urls = ",".join(instance.url for instance in instances)
        warm = argparse.Namespace(**{**vars(args), "requests": max(50, args.requests // 10)})
        warmup = await drive(urls, PUBLIC_URL, warm, "9")
        if not floor:
            await asyncio.gather(*(settled(i.url, alone=n == 1) for i in instances))
        gateway_pids = [i.proc.pid for i in instances if i.proc is not None]
        pg_pids = postgres_pids(dbs.postmaster())
        before = cpu_seconds(gateway_pids), cpu_seconds(pg_pids)
        counts_before = store_counts(instances)
        result = await drive(urls, PUBLIC_URL, args, "2")
        after = cpu_seconds(gateway_pids), cpu_seconds(postgres_pids(dbs.postmaster()))
        counts_after = store_counts(instances)
    finally:
        for instance in instances:
            instance.stop()
    served = max(result["requests"], 1)
    # Write batches per request (smaller group-commit batches cost CPU on both sides) and the
    # deadlocks PostgreSQL broke during the load (each one stalls its batch deadlock_timeout).
    result["batches_per_request"] = (counts_after[0] - counts_before[0]) / served
    result["deadlocks"] = counts_after[1] - counts_before[1]
    result["gateway_cpu_us"] = (after[0] - before[0]) / served * 1e6
    result["postgres_cpu_us"] = (after[1] - before[1]) / served * 1e6
    ok = result["statuses"].get("200", 0) + warmup["statuses"].get("200", 0)
    stored = count(url, "SELECT count(*) FROM receipts WHERE channel = 'whatsapp'")
    incidents = count(url, "SELECT count(*) FROM incidents")
    phones = count(url, "SELECT count(DISTINCT phone) FROM contacts")
    result["checks"] = {"answered_200": ok, "stored": stored, "incidents": incidents}
    if stored != ok:
        raise SystemExit(f"{n} instances: {ok} answered 200 but {stored} receipts stored")
    if incidents != phones:
        raise SystemExit(f"{n} instances: {incidents} incidents for {phones} phones")
    return result


async def settled(url: str, *, alone: bool, seconds: float = 30.0) -> None:
    """Wait until the instance at `url` knows whether another one listens (its change feed
    needs a few polls to rule others out): `gateway_change_notifications` 0 when alone, 1
    when not, as an instance that has been running a while has it."""
    want = f"gateway_change_notifications {0 if alone else 1}.0"
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        if want in (await asyncio.to_thread(metrics_text, url)).splitlines():
            return
        if asyncio.get_running_loop().time() > deadline:
            raise SystemExit(f"{url}: never reached {want}")
        await asyncio.sleep(0.2)


def metrics_text(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
        return resp.read().decode()  # type: ignore[no-any-return]


def store_counts(processes: list[Instance]) -> tuple[int, int]:
    """(write batches committed, deadlocks met) so far, summed over the processes, as their
    stores count them: a gateway's /metrics (gateway_store_batches_total and
    gateway_store_deadlocks_total), a floor's /healthz. pg_stat_database is no use here: a
    backend reports its counters at most once a second, and an idle one up to ten seconds
    late, so a phase's transactions and deadlocks would land partly in the next."""
    batches = deadlocks = 0
    for process in processes:
        if isinstance(process, FloorProcess):
            health = process._health()
            batches, deadlocks = batches + health["batches"], deadlocks + health["deadlocks"]
            continue
        for line in metrics_text(process.url).splitlines():
            name, _, value = line.partition(" ")
            if name == "gateway_store_batches_total":
                batches += int(float(value))
            elif name == "gateway_store_deadlocks_total":
                deadlocks += int(float(value))
    return batches, deadlocks


def line(label: str, r: dict) -> str:
    return (
        f"  {label:15s} {r['requests']:6d} req in {r['seconds']:.2f}s  {r['rps']:7.0f} req/s"
        f"  p50 {r['p50_ms']:5.1f} ms  p99 {r['p99_ms']:6.1f} ms"
        f"  CPU/req server {r['gateway_cpu_us']:4.0f} µs,"
        f" PostgreSQL {r['postgres_cpu_us']:4.0f} µs"
        f"  {r['batches_per_request']:.2f} write batches/req, {r['deadlocks']} deadlocks"
        f"  statuses {r['statuses']}  ({r['checks']['incidents']} incidents)"
    )


async def main(args: argparse.Namespace) -> None:
    ratios: list[float] = []
    floor_ratios: list[float] = []
    rates: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp, Databases(POSTGRESQL, tmp) as dbs:
        print(f"{args.requests} signed WhatsApp posts per phase, {args.conns} connections")
        print(f"  {dbs.describe(POSTGRESQL)}")
        print(f"  {dbs.placement().replace('gateway', 'every gateway instance')}", flush=True)
        for number in range(1, args.rounds + 1):
            print(f"round {number} of {args.rounds}")
            for floor in (True, False):
                results = {}
                for n in (1, 2):
                    workdir = Path(tmp) / f"round{number}{'floor' if floor else ''}"
                    results[n] = await phase(dbs, n, args, workdir, floor=floor)
                    label = ("one" if n == 1 else "two") + (" floor" if floor else " instance")
                    print(line(label + ("" if n == 1 else "s"), results[n]), flush=True)
                    if not floor:
                        rates[n].append(results[n]["rps"])
                (floor_ratios if floor else ratios).append(results[2]["rps"] / results[1]["rps"])
    print(
        f"floor: two floor processes / one, aggregate req/s: {median_spread(floor_ratios)}"
        "  (the same durable work split over two processes: the most the gateway's can be here)"
    )
    print(
        f"two instances / one, aggregate req/s: {median_spread(ratios)}"
        "  (target >= 0.90: at most 10 % lost to coordination on the same cores)"
    )
    write_json(
        args.json,
        {
            POSTGRESQL: {
                "one_rps": statistics.median(rates[1]),
                "two_rps": statistics.median(rates[2]),
                "two_to_one": statistics.median(ratios),
                "floor_two_to_one": statistics.median(floor_ratios),
            }
        },
    )


def median_spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} [{', '.join(f'{v:.2f}' for v in values)}]"


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--limit", type=float, default=30.0, help="seconds per phase at most")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of one/two (median)")
    parser.add_argument("--client", choices=("raw", "aiohttp"), default="raw")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument(
        "--serve-floor", nargs=3, metavar=("URL", "PORT", "NAME"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_floor:
        url, port, name = args.serve_floor
        serve_floor(url, int(port), name)
        return
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
