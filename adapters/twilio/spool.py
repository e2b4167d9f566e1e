"""Twilio's Fallback URL: when the database cannot commit, keep the webhook on local disk.

Twilio calls a webhook's *Fallback URL* when the primary answered an error or timed out
(checklist T8). The fallback handler verifies the signature like any webhook; if the intake
still cannot commit, it writes the signed form to this spool (a file per request, written to a
temporary name, fsynced, renamed, directory fsynced), answers 200, and a replay loop feeds the
spooled forms through the normal intake once the database is back, deleting each file only
after its commit. The MessageSid dedupe makes a form that also reached the primary harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from gateway.core.errors import GatewayError, Shunted, TemporaryFailure

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
SPOOL_KEY = "twilio_spool"  # in gw.extras
REJECTED = "rejected"  # subfolder for forms the intake refused for good (kept for an operator)


@dataclass(frozen=True)
class Spooled:
    """One spooled webhook: which handler, its form pairs, when and what Twilio signed."""

    path: Path
    kind: str
    pairs: list[tuple[str, str]]
    url: str
    signature: str
    received_at: str


Processor = Callable[[list[tuple[str, str]]], Awaitable[None]]


class TwilioSpool:
    """A directory of spooled webhook forms, replayed in arrival order."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.processors: dict[str, Processor] = {}
        self.task: asyncio.Task[None] | None = None

    def register(self, kind: str, processor: Processor) -> None:
        """Replay spooled forms of `kind` with `processor(pairs)` (raises TemporaryFailure to
        wait, GatewayError to set the form aside)."""
        self.processors[kind] = processor

    def put(
        self, kind: str, pairs: list[tuple[str, str]], url: str, signature: str, at: str
    ) -> Path:
        """Write one form durably (returns only after fsync of the file and its directory).

        Blocking file I/O: call it through `asyncio.to_thread` from a handler.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        # Names sort in arrival order: nanosecond time, then a random part against collisions.
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        record = {"kind": kind, "pairs": pairs, "url": url, "signature": signature, "at": at}
        tmp = self.directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, orjson.dumps(record))
            os.fsync(fd)
        finally:
            os.close(fd)
        final = self.directory / name
        os.replace(tmp, final)
        _fsync_dir(self.directory)
        return final

    def items(self) -> list[Spooled]:
        """Spooled forms, oldest first (half-written temporary files are not listed)."""
        if not self.directory.is_dir():
            return []
        out = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                record = orjson.loads(path.read_bytes())
                pairs = [(str(k), str(v)) for k, v in record["pairs"]]
                out.append(
                    Spooled(path, record["kind"], pairs, record["url"], record["signature"],
                            record["at"])
                )  # fmt: skip
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.error("unreadable spool file %s (%s): set aside", path.name, exc)
                self._set_aside(path)
        return out

    def done(self, item: Spooled) -> None:
        """The form is committed: remove its file."""
        item.path.unlink(missing_ok=True)
        _fsync_dir(self.directory)

    def _set_aside(self, path: Path) -> None:
        target = self.directory / REJECTED
        target.mkdir(exist_ok=True)
        with contextlib.suppress(OSError):
            os.replace(path, target / path.name)

    async def replay(self) -> tuple[int, int]:
        """Process every spooled form now; returns (committed, still waiting)."""
        committed = 0
        items = await asyncio.to_thread(self.items)  # file reads and fsyncs off the event loop
        for index, item in enumerate(items):
            processor = self.processors.get(item.kind)
            if processor is None:
                log.error("spooled %s form %s has no handler: set aside", item.kind, item.path.name)
                self._set_aside(item.path)
                continue
            try:
                await processor(item.pairs)
            except Shunted:
                # Kept in the database for `python -m gateway replay`: a bug in one message
                # must not hold every later one back in the spool.
                log.error("spooled form %s hit a processing bug: shunted", item.path.name)
            except TemporaryFailure:
                return committed, len(items) - index  # the database is still away: later
            except GatewayError as exc:
                log.error("spooled form %s refused (%s): set aside", item.path.name, exc)
                await asyncio.to_thread(self._set_aside, item.path)
                continue
            except Exception:  # a bug before the intake: keep the file for an operator
                log.exception("spooled form %s could not be replayed: set aside", item.path.name)
                await asyncio.to_thread(self._set_aside, item.path)
                continue
            await asyncio.to_thread(self.done, item)
            committed += 1
        if committed:
            log.info("replayed %d spooled Twilio webhooks", committed)
        return committed, 0

    async def context(self, app: web.Application, interval: float) -> AsyncIterator[None]:
        """Replay at start and every `interval` seconds."""
        self.task = asyncio.create_task(self._loop(interval), name="twilio-spool")
        yield
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def _loop(self, interval: float) -> None:
        while True:
            try:
                await self.replay()
            except Exception:  # the loop must survive anything; files stay for the next round
                log.exception("spool replay failed")
            await asyncio.sleep(interval)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def spool_of(gw: Gateway) -> TwilioSpool:
    """The gateway's Twilio spool, created on first use."""
    spool = gw.extras.get(SPOOL_KEY)
    if spool is None:
        spool = gw.extras[SPOOL_KEY] = TwilioSpool(Path(gw.settings.twilio.spool_dir))
        interval = gw.settings.twilio.spool_replay_interval.total_seconds()

        async def ctx(app: web.Application) -> AsyncIterator[None]:
            async for _ in spool.context(app, interval):
                yield

        gw.app.cleanup_ctx.append(ctx)
    return spool
