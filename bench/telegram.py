"""The CPU of one Telegram acknowledgement: PTB's `sendMessage` over httpx and over aiohttp.

The outbox sends every Telegram acknowledgement and reply through python-telegram-bot's Bot.
Under the mixed load of issue 19 its HTTP client (httpx, PTB's default transport) was the
largest single cost of the gateway's event loop after the email builder (py-spy). This script
times the same calls with both transports: a loopback Bot API runs in another process (pinned
to the load generator's CPU) and answers `sendMessage` as Telegram does; this process (on the
server side's CPU) sends --sends messages, --concurrency at a time, through PTB's Bot with
`HTTPXRequest` (the baseline) and with `adapters.telegram.request.AiohttpRequest` (the
gateway's), in alternating rounds, and prints the CPU time (user + system) per send and
sends/s of each, the median of --rounds rounds, and their ratio.

    .venv/bin/python bench/telegram.py [--sends 2000] [--concurrency 8] [--rounds 3]
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
import resource
import statistics
import subprocess
import time
from typing import Any

import telegram
from aiohttp import web
from telegram.request import BaseRequest, HTTPXRequest

from adapters.telegram.request import AiohttpRequest
from bench.databases import LOAD_CPU, SERVER_CPU, free_port, pin, write_json

TOKEN = "7212345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
TEXT = "Hola Ana, recibimos tu mensaje. Tu número de seguimiento es CMW-0000042-7."


def serve(port: int) -> None:
    """The loopback Bot API (run with --serve PORT): getMe and sendMessage, as Telegram answers."""
    pin(LOAD_CPU)

    async def handle(request: web.Request) -> web.Response:
        form = await request.post()
        if request.match_info["method"] == "getMe":
            me = {"id": 7212345678, "is_bot": True, "first_name": "CallMyWay", "username": "cmw"}
            return web.json_response({"ok": True, "result": me})
        chat = {"id": int(str(form["chat_id"])), "type": "private"}
        result = {"message_id": 1, "date": int(time.time()), "chat": chat, "text": form["text"]}
        return web.json_response({"ok": True, "result": result})

    app = web.Application()
    app.router.add_post("/bot{token}/{method}", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(request: BaseRequest, base: str, sends: int, concurrency: int) -> dict:
    """CPU µs per send and sends/s through one Bot (after a warm-up of the connections)."""
    bot = telegram.Bot(TOKEN, base_url=f"{base}/bot", request=request)
    await bot.initialize()

    async def worker(first: int, count: int) -> None:
        for i in range(first, count, concurrency):
            await bot.send_message(chat_id=100000 + i, text=TEXT)

    try:
        await asyncio.gather(*(worker(k, concurrency * 10) for k in range(concurrency)))
        used, started = cpu(), time.perf_counter()
        await asyncio.gather(*(worker(k, sends) for k in range(concurrency)))
        used, elapsed = cpu() - used, time.perf_counter() - started
    finally:
        await bot.shutdown()
    return {"cpu_us": used / sends * 1e6, "rate": sends / elapsed}


async def wait_ready(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise SystemExit("the loopback Bot API did not start")


async def main(args: argparse.Namespace, port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    ways = {"httpx (PTB's default)": HTTPXRequest, "aiohttp (the gateway's)": AiohttpRequest}
    runs: dict[str, list[dict]] = {name: [] for name in ways}
    await wait_ready(port)
    print(f"{args.sends} sendMessage calls per round, {args.concurrency} at a time")
    for number in range(1, args.rounds + 1):
        for name, kind in ways.items():
            request = kind() if kind is HTTPXRequest else kind(5.0)
            r = await measure(request, base, args.sends, args.concurrency)
            runs[name].append(r)
            print(
                f"  round {number}  {name:24s} {r['cpu_us']:6.0f} µs CPU/send"
                f"  {r['rate']:6.0f} sends/s",
                flush=True,
            )
    figures: dict[str, Any] = {}
    for name, key in zip(ways, ("httpx", "aiohttp"), strict=True):
        figures[key] = {
            "cpu_us": statistics.median(r["cpu_us"] for r in runs[name]),
            "rate": statistics.median(r["rate"] for r in runs[name]),
        }
        print(f"{name:24s} median {figures[key]['cpu_us']:6.0f} µs CPU/send")
    figures["aiohttp_to_httpx_cpu"] = figures["aiohttp"]["cpu_us"] / figures["httpx"]["cpu_us"]
    print(f"aiohttp / httpx, CPU per send: {figures['aiohttp_to_httpx_cpu']:.2f}")
    write_json(args.json, figures)


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    pin(SERVER_CPU)
    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)])
    try:
        asyncio.run(main(args, port))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    cli()
