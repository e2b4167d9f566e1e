"""The HTTP listener: aiohttp's server behind a per-connection guard (issue #16 item 4).

aiohttp has neither a per-address connection cap nor a deadline for a request's headers: a
client dribbling one header byte a minute holds its socket for ever (slowloris), and one
address can open thousands. The guard wraps each connection's protocol: it refuses a client
address over `[limits] http_connections_per_ip` with a 429 before aiohttp sees a byte, and
closes a connection whose first request headers have not arrived within
`[limits] http_header_timeout`. Later requests on a kept-alive connection are bounded by
aiohttp's keepalive timeout (KEEPALIVE). Bodies are bounded by input_middleware.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from config.settings import Settings
from gateway.web.http import _parse_networks, _trusted

log = logging.getLogger(__name__)
_REFUSAL = (
    b'{"error": {"code": "rate_limited", "message": "too many connections from this address"}}'
)
REFUSED = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
    b"Retry-After: 5\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_REFUSAL), _REFUSAL)
)


class ConnectionGuard:
    """Open connections per client address, and the limits they are held to."""

    def __init__(self, per_ip: int, header_timeout: float, exempt: tuple[str, ...] = ()):
        self.per_ip = per_ip
        self.header_timeout = header_timeout
        self.exempt = _parse_networks(exempt)  # reverse proxies: their clients are many
        self.open: dict[str, int] = {}
        self.refused = 0
        self.timed_out = 0

    def admit(self, ip: str | None) -> bool:
        """Count a new connection from `ip`; False when that address is over its cap."""
        if ip is None or _trusted(ip, self.exempt):
            return True
        if self.open.get(ip, 0) >= self.per_ip:
            self.refused += 1
            return False
        self.open[ip] = self.open.get(ip, 0) + 1
        return True

    def release(self, ip: str | None) -> None:
        """Forget a closed connection."""
        if ip is None or ip not in self.open:
            return
        self.open[ip] -= 1
        if self.open[ip] <= 0:
            del self.open[ip]


class GuardedProtocol(asyncio.Protocol):
    """Forwards every protocol event to aiohttp's handler, under the guard's limits."""

    def __init__(self, inner: RequestHandler, guard: ConnectionGuard):
        self.inner = inner
        self.guard = guard
        self.ip: str | None = None
        self.counted = False
        self.timer: asyncio.TimerHandle | None = None
        self.tail = b""  # the last bytes seen, to find the end of the first header block
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transport has the Transport methods without being a subclass of it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if isinstance(peer, tuple) else None
        if not self.guard.admit(ip):
            transport.write(REFUSED)
            transport.close()
            return
        self.ip, self.counted = ip, ip is not None
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.guard.header_timeout, self._expire)
        self.inner.connection_made(transport)

    def _expire(self) -> None:
        self.timer = None
        self.guard.timed_out += 1
        log.info("HTTP connection closed: request headers not received in time")
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.timer is not None:
            seen = self.tail + data
            if b"\r\n\r\n" in seen:
                self.timer.cancel()
                self.timer = None
            self.tail = seen[-3:]
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.counted:
            self.guard.release(self.ip)
            self.counted = False
            self.inner.connection_lost(exc)


GUARD = web.AppKey("connection_guard", ConnectionGuard)


def make_guard(settings: Settings) -> ConnectionGuard:
    """The connection guard of `[limits]` (create_app keeps it in the app under GUARD)."""
    limits = settings.limits
    return ConnectionGuard(
        limits.http_connections_per_ip,
        limits.http_header_timeout.total_seconds(),
        settings.trusted_proxies,
    )


# aiohttp closes a kept-alive connection idle, or with a next request half-sent, this long.
# Longer than nginx's upstream keepalive (60 s) so the proxy never reuses a connection the
# gateway is closing; aiohttp's own default (3630 s) would let a slow client hold it an hour.
KEEPALIVE = 75.0


def handler_args(settings: Settings) -> dict[str, Any]:
    """aiohttp connection settings: the keepalive bound of later requests on a connection."""
    return {
        "keepalive_timeout": max(KEEPALIVE, settings.limits.http_header_timeout.total_seconds())
    }


class GuardedSite(web.TCPSite):
    """A TCP site whose connections pass through a ConnectionGuard."""

    __slots__ = ("_guard",)

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard):
        super().__init__(runner, host, port)
        self._guard = guard

    async def start(self) -> None:
        """Listen; every accepted connection is wrapped in the guard."""
        self._runner._reg_site(self)
        server = self._runner.server
        assert server is not None
        factory: Callable[[], asyncio.Protocol] = lambda: GuardedProtocol(server(), self._guard)  # noqa: E731
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(factory, self._host, self._port)
        self._bound_port = self._server.sockets[0].getsockname()[1]


async def start_http(app: web.Application, settings: Settings, port: int | None = None) -> Any:
    """Start the app's HTTP listener (guarded); returns (runner, site). Tests use it too."""
    runner = web.AppRunner(
        app,
        handle_signals=port is None,
        access_log=None,
        shutdown_timeout=settings.shutdown_timeout.total_seconds(),
    )
    await runner.setup()
    site = GuardedSite(
        runner,
        settings.http_host,
        settings.http_port if port is None else port,
        app.get(GUARD) or make_guard(settings),
    )
    await site.start()
    return runner, site
