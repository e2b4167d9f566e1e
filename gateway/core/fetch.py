"""Files that arrive as references (WhatsApp media URLs, Telegram file ids) and are fetched after
the intake commits: now, in a background task, and again through a persisted scheduler job.

A channel's fetcher subclasses `FileFetcher` and implements `fetch_pending(key)`, raising
`FetchLater` while something has to wait. The webhook commits the job (`ensure_job`) before its
answer, then calls `start`; the job covers a failed fetch and a restart.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from aiohttp import web

from gateway.core.scheduler import schedule_job

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
# The persisted job runs if the immediate fetch did not finish (its instance died, the fetch
# failed): any instance takes it, within half a minute as every claimed work (gateway.core.lease).
RETRY_AFTER = timedelta(seconds=25)
PARALLEL_FETCHES = 4


class FetchLater(Exception):
    """Transient: the file could not be fetched now; the job tries again."""


class FileFetcher(ABC):
    """Background fetches of one inbound item's pending files, keyed by its provider id."""

    job_kind: ClassVar[str]  # the scheduler job kind
    payload_key: ClassVar[str]  # the job payload's field holding the key

    def __init__(self, gw: Gateway):
        self.gw = gw
        self.tasks: set[asyncio.Task[None]] = set()
        self.limit = asyncio.Semaphore(PARALLEL_FETCHES)

    @abstractmethod
    async def fetch_pending(self, key: str) -> None:
        """Fetch the item's pending files; raise FetchLater if any has to wait."""

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: cancel unfinished fetches at shutdown (their job retries them)."""
        yield
        await self.cancel_tasks()

    async def cancel_tasks(self) -> None:
        """Cancel the background fetches and wait for them to end."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def ensure_job(self, key: str) -> None:
        """Persist the retry job (idempotent per key); the webhook answers after it commits."""
        run_at = self.gw.clock() + RETRY_AFTER
        payload = {self.payload_key: key}
        await self.gw.store.transact(
            lambda tx: schedule_job(tx, self.job_kind, key, run_at, payload)
        )

    def start(self, key: str) -> None:
        """Fetch in the background now; the persisted job covers failures and restarts."""
        task = asyncio.create_task(self._quietly(key), name=f"{self.job_kind}-{key}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _quietly(self, key: str) -> None:
        try:
            await self.fetch_pending(key)
        except FetchLater as exc:
            log.info("%s of %s not fetched yet (%s); the job retries", self.job_kind, key, exc)
        except Exception:
            log.exception("%s of %s failed; the job retries", self.job_kind, key)

    async def run_job(self, payload: dict[str, Any]) -> None:
        """Scheduler handler: raising leaves the job for the scheduler's backoff."""
        await self.fetch_pending(str(payload[self.payload_key]))
