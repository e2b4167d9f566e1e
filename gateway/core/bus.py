"""In-process publish/subscribe of committed changes, for live agent pages and chat sockets.

Publishers call `publish` only after the store committed; subscribers get an asyncio queue.
A slow subscriber loses its oldest notices rather than growing memory without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

Notice = dict[str, Any]


class Bus:
    """Fan-out of notices to every current subscriber."""

    def __init__(self, maxsize: int = 1000):
        self._subscribers: set[asyncio.Queue[Notice]] = set()
        self._maxsize = maxsize

    def publish(self, notice: Notice) -> None:
        """Deliver to every subscriber without waiting."""
        for queue in list(self._subscribers):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(notice)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[Notice]]:
        """A queue receiving every notice published while the context is open."""
        queue: asyncio.Queue[Notice] = asyncio.Queue(self._maxsize)
        self._subscribers.add(queue)
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        """How many subscribers are listening."""
        return len(self._subscribers)
