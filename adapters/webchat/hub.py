"""In-process registry of open chat sockets: by visitor (for fan-out) and by client IP (cap).

Holds only what one gateway process has open; it never reads or writes the store. A token
bucket per connection and per visitor limits how fast frames may arrive (checklist W3).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger(__name__)


class Bucket:
    """Token bucket: `rate` frames per minute, bursts up to `rate` (monotonic time)."""

    __slots__ = ("capacity", "stamp", "tokens")

    def __init__(self, per_minute: int, now: float):
        self.capacity = float(per_minute)
        self.tokens = float(per_minute)
        self.stamp = now

    def take(self, now: float) -> bool:
        """Spend one token if there is one."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.capacity / 60)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Hub:
    """Open sockets per visitor id and per client address of this process."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self.visitors: dict[str, set[web.WebSocketResponse]] = {}
        self.buckets: dict[str, Bucket] = {}  # per visitor, while it has a socket open
        self.by_ip: dict[str, int] = {}

    def sockets(self, visitor: str) -> int:
        """How many sockets of `visitor` are open here."""
        return len(self.visitors.get(visitor, ()))

    def admit_ip(self, ip: str, cap: int) -> bool:
        """Count a new socket from `ip`, unless it already holds `cap` of them."""
        count = self.by_ip.get(ip, 0)
        if count >= cap:
            return False
        self.by_ip[ip] = count + 1
        return True

    def release_ip(self, ip: str) -> None:
        """Forget one socket of `ip`."""
        count = self.by_ip.get(ip, 0) - 1
        if count > 0:
            self.by_ip[ip] = count
        else:
            self.by_ip.pop(ip, None)

    def join(self, visitor: str, ws: web.WebSocketResponse) -> None:
        """Register `ws` as one of the visitor's open sockets."""
        self.visitors.setdefault(visitor, set()).add(ws)
        if visitor not in self.buckets:
            self.buckets[visitor] = Bucket(self.per_minute, self.clock())

    def leave(self, visitor: str, ws: web.WebSocketResponse) -> None:
        """Drop `ws`; forget the visitor when it was its last socket."""
        sockets = self.visitors.get(visitor)
        if sockets is None:
            return
        sockets.discard(ws)
        if not sockets:
            del self.visitors[visitor]
            self.buckets.pop(visitor, None)

    def visitor_allows(self, visitor: str) -> bool:
        """The visitor's shared bucket (all its sockets together) has a token."""
        bucket = self.buckets.get(visitor)
        return bucket is None or bucket.take(self.clock())

    def count(self, visitor: str) -> int:
        """How many sockets of the visitor are open here."""
        return len(self.visitors.get(visitor, ()))

    async def send(
        self, visitor: str, data: str, *, skip: web.WebSocketResponse | None = None
    ) -> int:
        """Send one text frame to every open socket of `visitor`; returns how many got it."""
        sent = 0
        # Copy: a socket may close (and leave) while we await its write.
        for ws in list(self.visitors.get(visitor, ())):
            if ws is skip or ws.closed:
                continue
            try:
                await ws.send_str(data)
            except (ConnectionError, RuntimeError) as exc:
                log.info("chat socket gone during send: %s", exc)
                with contextlib.suppress(Exception):
                    await ws.close()
                continue
            sent += 1
        return sent
