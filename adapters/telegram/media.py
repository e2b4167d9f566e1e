"""Telegram files: a photo, voice note or document → bytes in the attachments row, after commit.

The intake stores each file as a 'pending' attachment whose url is `tg-file:<file_id>`; this
fetcher asks the Bot API for it (`getFile`, then the download URL under TELEGRAM_API_BASE that
python-telegram-bot builds with the bot token) within `telegram.max_file_bytes`. It never blocks
intake: a transient failure leaves the row pending for the persisted `telegram_media` job to
retry; a file Telegram refuses (too big, expired) is marked 'failed' with an event agents see.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from telegram.error import BadRequest, Forbidden, TelegramError

from adapters.telegram.update import FILE_URL_PREFIX
from gateway.core.fetch import FetchLater, FileFetcher
from gateway.store.tx import Row

if TYPE_CHECKING:
    import telegram

    from gateway.core.services import Gateway

log = logging.getLogger(__name__)
JOB_KIND = "telegram_media"


class FileRefused(Exception):
    """Permanent: Telegram will never hand this file out (or it is over the size limit)."""


class FileUnavailable(FetchLater):
    """Transient: try again later."""


async def download(bot: telegram.Bot, file_id: str, limit: int) -> bytes:
    """The file's bytes through getFile and its download URL; FileRefused or FileUnavailable."""
    try:
        file = await bot.get_file(file_id)
    except (BadRequest, Forbidden) as exc:  # unknown or expired file_id, "file is too big"
        raise FileRefused(exc.message) from None
    except TelegramError as exc:  # network errors, timeouts, 429 and 5xx
        raise FileUnavailable(f"getFile: {type(exc).__name__}: {exc.message}") from None
    if file.file_size is not None and file.file_size > limit:
        raise FileRefused(f"{file.file_size} bytes is over {limit}")
    try:
        data = bytes(await file.download_as_bytearray())
    except (BadRequest, Forbidden) as exc:
        raise FileRefused(exc.message) from None
    except TelegramError as exc:
        raise FileUnavailable(f"download: {type(exc).__name__}: {exc.message}") from None
    if len(data) > limit:
        raise FileRefused(f"more than {limit} bytes")
    return data


class TelegramMedia(FileFetcher):
    """Downloads a message's pending files now, in the background, and through a persisted job."""

    job_kind = JOB_KIND
    payload_key = "provider_id"

    def __init__(self, gw: Gateway):
        super().__init__(gw)
        self.bot: telegram.Bot | None = None  # set by the channel once its Bot has started

    async def fetch_pending(self, provider_id: str) -> None:
        """Download the update's pending files; FileUnavailable if any has to wait."""
        if self.bot is None:
            raise FileUnavailable("the Telegram bot is not running")
        rows = await self.gw.store.read(lambda tx: tx.pending_attachments("telegram", provider_id))
        limit = self.gw.settings.telegram.max_file_bytes
        waiting = []
        for row in rows:
            file_id = str(row["url"]).removeprefix(FILE_URL_PREFIX)
            async with self.limit:
                try:
                    data = await download(self.bot, file_id, limit)
                except FileUnavailable as exc:
                    waiting.append(f"{row['filename']}: {exc}")
                    continue
                except FileRefused as exc:
                    await self._record(row, None, str(exc))
                    continue
            await self._record(row, data, None)
        if waiting:
            raise FileUnavailable("; ".join(waiting))

    async def _record(self, row: Row, data: bytes | None, reason: str | None) -> None:
        now = self.gw.clock()
        await self.gw.store.transact(
            lambda tx: tx.settle_attachment(row, now, channel="telegram", data=data, reason=reason)
        )
        if reason:
            log.warning("telegram file %s of %s refused: %s", row["id"], row["tracking"], reason)
        event = "attachment" if reason is None else "attachment_failed"
        self.gw.after_commit({"type": "incident", "event": event, "tracking": row["tracking"]})
