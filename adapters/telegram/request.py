"""python-telegram-bot's HTTP transport on aiohttp, the gateway's own HTTP stack, not httpx.

PTB documents `BaseRequest` as the place to plug another HTTP library in
(telegram.request.BaseRequest: `initialize`, `shutdown`, `do_request`, `read_timeout`); the
Bot, its methods, its error classes and its JSON parsing stay PTB's. The gain is CPU: under the
mixed load of issue 19, httpx's client was 15 % of the gateway's event loop with one Telegram
acknowledgement in four contacts (py-spy); bench/telegram.py, the same sendMessage calls to a
loopback Bot API: 1,276 µs of CPU per send over httpx, 460 over aiohttp (0.36).

The wire is the one PTB's HTTPXRequest sends: a form-encoded POST of `json_parameters`
(multipart when the call carries files), its User-Agent, and a GET for file downloads.
Timeouts keep PTB's meaning: a timeout left to its default takes the one given here; an
expired one raises `TimedOut`, any other transport failure `NetworkError`, whose text never
holds the bot token (Bot API URLs carry it; aiohttp names the URL in some errors).
"""

from __future__ import annotations

import aiohttp
from telegram._utils.defaultvalue import DefaultValue
from telegram._utils.types import ODVInput
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData

# Concurrent connections to the Bot API; the outbox sends at most its per-channel limit at once.
POOL_SIZE = 64


class AiohttpRequest(BaseRequest):
    """A `BaseRequest` over one `aiohttp.ClientSession` (created by `initialize`)."""

    def __init__(self, timeout: float, *, secret: str = "", pool_size: int = POOL_SIZE):
        self._timeout = timeout
        self._secret = secret  # masked in error texts
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._shut = False  # after `shutdown`, calls fail until `initialize` again

    @property
    def read_timeout(self) -> float | None:
        """The read timeout used when a call leaves it to the default."""
        return self._timeout

    async def initialize(self) -> None:
        """Open the session (idempotent)."""
        self._shut = False
        self._open()

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
            )
        return self._session

    async def shutdown(self) -> None:
        """Close the session and its connections (idempotent)."""
        self._shut = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _seconds(self, value: ODVInput[float]) -> float | None:
        return self._timeout if isinstance(value, DefaultValue) else value

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        write_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        connect_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
        pool_timeout: ODVInput[float] = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        """One HTTP call to the Bot API: (status, body)."""
        if self._shut:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        # Opened on first use too, as PTB's HTTPXRequest is usable before `initialize`.
        session = self._open()
        pool, connect = self._seconds(pool_timeout), self._seconds(connect_timeout)
        read, write = self._seconds(read_timeout), self._seconds(write_timeout)
        parts = (pool, connect, write, read)
        timeout = aiohttp.ClientTimeout(
            # The whole call is bounded by the sum of its phases; aiohttp has no write timeout
            # of its own, and `connect` includes the wait for a free pooled connection.
            total=None if None in parts else sum(parts),  # type: ignore[arg-type]
            connect=None if pool is None or connect is None else pool + connect,
            sock_connect=connect,
            sock_read=read,
        )
        data: aiohttp.FormData | dict[str, str] | None = None
        if request_data is not None:
            data = request_data.json_parameters
            if request_data.contains_files:
                form = aiohttp.FormData(data)
                for name, (filename, content, mimetype) in _files(request_data):
                    form.add_field(name, content, filename=filename, content_type=mimetype)
                data = form
        try:
            async with session.request(method, url, data=data, timeout=timeout) as resp:
                return resp.status, await resp.read()
        except TimeoutError:  # also aiohttp's ServerTimeoutError
            raise TimedOut from None
        except aiohttp.ClientError as exc:
            text = f"aiohttp.{type(exc).__name__}: {exc}"
            if self._secret:
                text = text.replace(self._secret, "<bot-token>")
            raise NetworkError(text) from None


def _files(request_data: RequestData) -> list[tuple[str, tuple[str | None, object, str | None]]]:
    """The call's files as (part name, (file name, content, MIME type))."""
    out = []
    for name, value in request_data.multipart_data.items():
        if isinstance(value, tuple):
            filename, content, *rest = value
            out.append((name, (filename, content, rest[0] if rest else None)))
        else:
            out.append((name, (None, value, None)))
    return out
