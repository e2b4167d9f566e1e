"""WhatsApp media: Twilio `MediaUrlN` → bytes in the attachments row, after the intake commits.

Fetched only from Twilio's media hosts over https or the configured `TWILIO_API_BASE` origin,
with the account credentials only on the first request toward the REST API (never on a
redirect hop), never from a private or link-local address, within a size cap and a type
allow-list. It never blocks intake: a transient failure leaves the row 'pending' for the persisted
`whatsapp_media` job to retry; refused media is marked 'failed' with an event agents see.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from config.settings import Settings
from gateway.core.fetch import FetchLater, FileFetcher
from gateway.store.tx import Row

if TYPE_CHECKING:
    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
JOB_KIND = "whatsapp_media"
MAX_REDIRECTS = 3
# Twilio serves media from api.twilio.com and redirects to its CDN (Twilio docs, "Retrieve media").
TWILIO_HOSTS = frozenset({"api.twilio.com", "media.twiliocdn.com", "mms.twiliocdn.com"})
TWILIO_SUFFIXES = (".twilio.com", ".twiliocdn.com")
CREDENTIAL_HOSTS = frozenset({"api.twilio.com"})
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class MediaRefused(Exception):
    """Permanent: this media must not (or cannot ever) be fetched."""


class MediaUnavailable(FetchLater):
    """Transient: try again later."""


class PrivateAddress(OSError):
    """A media host resolved to an address that is not publicly routable."""


def _origin(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme, (url.host or "").lower(), url.port)


def refusal(url: str, api_base: str) -> str | None:
    """Why `url` may not be fetched (None when it may): Twilio's https hosts or the API base."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return "not a URL"
    if not parsed.is_absolute() or not parsed.host:
        return "not an absolute URL"
    if _origin(parsed) == _origin(URL(api_base)):
        return None  # the operator's configured API base (a loopback fake in tests)
    if parsed.scheme != "https":
        return f"{parsed.scheme}:// is not allowed; only https"
    host = parsed.host.lower()
    if host in TWILIO_HOSTS or host.endswith(TWILIO_SUFFIXES):
        return None
    return f"host {host} is not a Twilio media host"


def sends_credentials(url: str, api_base: str) -> bool:
    """Only Twilio's REST API (or the configured API base) ever receives the account's token."""
    parsed = URL(url)
    return _origin(parsed) == _origin(URL(api_base)) or (
        parsed.scheme == "https" and (parsed.host or "").lower() in CREDENTIAL_HOSTS
    )


class PublicResolver(AbstractResolver):
    """DNS that refuses non-global addresses (169.254.169.254, 10/8, ::1...) except trusted hosts.

    Checking the addresses the connection will use (not a separate lookup) defeats DNS
    rebinding; IP literals never reach a resolver, so `refusal` rejects them by host name.
    """

    def __init__(self, trusted: frozenset[str]):
        self._inner = aiohttp.ThreadedResolver()
        self._trusted = trusted

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """Resolve, then drop the answer if any address is private, loopback or link-local."""
        results = await self._inner.resolve(host, port, family)
        if host.lower() in self._trusted:
            return results
        for result in results:
            if not ipaddress.ip_address(result["host"]).is_global:
                raise PrivateAddress(f"{host} resolves to a non-public address")
        return results

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self._inner.close()


async def fetch_media(
    session: aiohttp.ClientSession, url: str, settings: Settings
) -> tuple[bytes, str]:
    """The media's bytes and content type; MediaRefused or MediaUnavailable otherwise."""
    api_base = settings.twilio.api_base
    limit = settings.whatsapp.max_media_bytes
    headers: dict[str, str] = {}
    if sends_credentials(url, api_base):
        twilio = settings.twilio
        basic = aiohttp.encode_basic_auth(twilio.account_sid or "", twilio.auth_token or "")
        headers["Authorization"] = basic
    for _ in range(MAX_REDIRECTS + 1):
        reason = refusal(url, api_base)
        if reason:
            raise MediaRefused(reason)
        try:
            async with session.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status in REDIRECTS and resp.headers.get("Location"):
                    url = str(resp.url.join(URL(resp.headers["Location"])))
                    # The CDN URL is pre-signed: Twilio's credentials never follow the redirect.
                    headers = {}
                    continue
                if resp.status in (408, 429) or resp.status >= 500:
                    raise MediaUnavailable(f"HTTP {resp.status} from {resp.url.host}")
                if resp.status != 200:
                    raise MediaRefused(f"HTTP {resp.status} from {resp.url.host}")
                ctype = resp.content_type.lower()
                if ctype not in settings.whatsapp.media_types:
                    raise MediaRefused(f"content type {ctype} is not accepted")
                if resp.content_length is not None and resp.content_length > limit:
                    raise MediaRefused(f"{resp.content_length} bytes is over {limit}")
                data = bytearray()
                async for chunk in resp.content.iter_chunked(65536):
                    data += chunk
                    if len(data) > limit:
                        raise MediaRefused(f"more than {limit} bytes")
                return bytes(data), ctype
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, PrivateAddress):
                raise MediaRefused(str(exc.os_error)) from None
            raise MediaUnavailable(f"cannot connect: {exc.os_error}") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MediaUnavailable(f"{type(exc).__name__}: {exc}") from None
    raise MediaRefused(f"more than {MAX_REDIRECTS} redirects")


class MediaFetcher(FileFetcher):
    """Fetches a message's pending media now, in the background, and through a persisted job."""

    job_kind = JOB_KIND
    payload_key = "message_sid"

    def __init__(self, gw: Gateway):
        super().__init__(gw)
        self.session: aiohttp.ClientSession | None = None

    async def context(self, app: web.Application) -> AsyncIterator[None]:
        """cleanup_ctx: one client session for media, closed (and tasks cancelled) at shutdown."""
        trusted = frozenset({(URL(self.gw.settings.twilio.api_base).host or "").lower()})
        connector = aiohttp.TCPConnector(resolver=PublicResolver(trusted), limit=20)
        timeout = aiohttp.ClientTimeout(total=30, connect=10)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False)
        yield
        await self.cancel_tasks()
        await self.session.close()

    async def fetch_pending(self, message_sid: str) -> None:
        """Fetch the message's pending attachments; MediaUnavailable if any has to wait."""
        if self.session is None:
            raise MediaUnavailable("the media client is not running")
        rows = await self.gw.store.read(lambda tx: tx.pending_attachments("whatsapp", message_sid))
        waiting = []
        for row in rows:
            async with self.limit:
                try:
                    data, ctype = await fetch_media(self.session, row["url"], self.gw.settings)
                except MediaUnavailable as exc:
                    waiting.append(f"{row['filename']}: {exc}")
                    continue
                except MediaRefused as exc:
                    await self._record(row, None, None, str(exc))
                    continue
            await self._record(row, data, ctype, None)
        if waiting:
            raise MediaUnavailable("; ".join(waiting))

    async def _record(
        self, row: Row, data: bytes | None, ctype: str | None, reason: str | None
    ) -> None:
        now = self.gw.clock()
        await self.gw.store.transact(
            lambda tx: tx.settle_attachment(
                row, now, channel="whatsapp", data=data, content_type=ctype, reason=reason
            )
        )
        if reason:
            log.warning("media %s of %s refused: %s", row["id"], row["tracking"], reason)
        event = "attachment" if reason is None else "attachment_failed"
        self.gw.after_commit({"type": "incident", "event": event, "tracking": row["tracking"]})
