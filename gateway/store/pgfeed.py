"""Changes made by other instances, followed through PostgreSQL's LISTEN/NOTIFY.

Triggers on `events` (every change of an incident) and on `messages` send a notification on
the `gateway_changes` channel when their transaction commits; an instance's own broadcasts (a
chat frame for a visitor whose socket is elsewhere) use the same channel. Each instance
listens on a dedicated connection, reconnects with backoff, and hands what other instances did
to its in-process bus as ordinary notices, so an agent connected to any instance sees what
arrived on another.

NOTIFY is only a wake-up (checklist D7): a notification lost while the connection was down,
or never sent, is made up for by a poll of the newest event id every `poll` seconds. When the
database holds an event newer than any this instance was told about, it publishes a `resync`
notice and every live page re-reads what it shows.

Each feed also sends a beacon on the channel every `poll` seconds (and once on connecting), so
every instance knows whether another one is listening. An instance that has listened for
`ALONE_AFTER` polls without hearing anyone else tells its store to write without the
triggers' notifications (`on_peers(False)`: nobody would read them, and they cost it about a
tenth of its throughput); the first word from another instance, or the loss of its own
listening connection, turns them back on. What was written between another instance's start
and this one hearing its beacon is caught by that instance's poll, as any lost notification.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

from gateway.core.errors import TemporaryFailure

log = logging.getLogger(__name__)
CHANNEL = "gateway_changes"
POLL = 2.0  # seconds between checks of the newest event id
MAX_BACKOFF = 10.0
ALONE_AFTER = 3  # polls without a word from another instance before this one counts as alone
Publish = Callable[[dict[str, Any]], None]
# What an incident event means on an agent's live page.
EVENT_OF_KIND = {"registered": "created", "message_received": "message", "escalated": "escalated"}
RESYNC: dict[str, Any] = {"type": "resync"}


def notice_of(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The in-process notice for a notification, or None when it is not for the bus."""
    kind = payload.get("type")
    if kind == "chat":
        return {k: payload[k] for k in ("type", "visitor", "data") if k in payload}
    if kind != "incident" or not payload.get("tracking"):
        return None
    notice: dict[str, Any] = {
        "type": "incident",
        "event": EVENT_OF_KIND.get(payload.get("kind") or "", "changed"),
        "tracking": payload["tracking"],
        "remote": True,
    }
    if notice["event"] == "escalated":
        notice.update(
            level=payload.get("level"),
            from_level=payload.get("from_level"),
            team=payload.get("team"),
        )
    return notice


class ChangeFeed:
    """LISTEN on a dedicated connection; publish other instances' changes on the local bus."""

    def __init__(
        self,
        url: str,
        instance: str,
        publish: Publish,
        newest_event: Callable[[], Any],
        *,
        poll: float = POLL,
        connect_kwargs: dict[str, Any] | None = None,
        on_peers: Callable[[bool], None] | None = None,
    ):
        self.url = url
        self.instance = instance
        self.publish = publish
        self.newest_event = newest_event  # async () -> int: max(events.id), 0 when none
        self.poll = poll
        self.connect_kwargs = connect_kwargs or {}
        self.on_peers = on_peers  # told whether another instance may be listening
        self.told = 0  # the newest event id a notification told this instance about
        self.connected = asyncio.Event()
        self.reconnects = 0
        self.others = True  # until this feed has listened long enough to know it is alone
        self._heard: dict[str, float] = {}  # another instance's name -> when last heard
        self._listening_since: float | None = None
        self._quiet = False  # this instance may have written unnotified since the last poll
        self._suspect: int | None = None  # an event id seen by the poll but not yet told

    async def run(self) -> None:
        """Follow until cancelled; a lost connection is re-opened, and a resync published."""
        backoff = 0.5
        first = True
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True, **self.connect_kwargs
                )
            except (psycopg.Error, OSError) as exc:
                log.warning("change feed cannot connect: %s; retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            try:
                await conn.execute(f"LISTEN {CHANNEL}")
                self.told = max(self.told, await self.newest_event())
                self.connected.set()
                if not first:
                    self.reconnects += 1
                    log.warning("change feed reconnected: live pages re-read what they show")
                    self.publish(dict(RESYNC))
                first, backoff = False, 0.5
                await self._listen(conn)
            except (psycopg.Error, OSError, TemporaryFailure) as exc:
                # TemporaryFailure: the store could not read the newest event id (its pool
                # closed or the server busy); the feed waits and connects again, never dies.
                log.warning("change feed lost its connection: %s", exc)
            finally:
                self.connected.clear()
                self._listening_since = None
                self._heard.clear()
                self._others(True)  # deaf now: whoever else there is must still be told
                with contextlib.suppress(Exception):
                    await conn.close()
            await asyncio.sleep(backoff)

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._listening_since = time.monotonic()
        beacon = json.dumps({"type": "beacon", "origin": self.instance})
        while True:
            await conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, beacon))
            async for note in conn.notifies(timeout=self.poll):
                self._received(note.payload)
            await self._check()
            self._judge_alone()

    def _others(self, others: bool) -> None:
        if not others:
            self._quiet = True
        if others != self.others:
            self.others = others
            if self.on_peers is not None:
                self.on_peers(others)

    def _judge_alone(self) -> None:
        """Alone: listening for ALONE_AFTER polls and nobody else heard for as long."""
        now, window = time.monotonic(), ALONE_AFTER * self.poll
        for name, at in list(self._heard.items()):
            if now - at >= window:
                del self._heard[name]
        if self._heard:
            self._others(True)
        elif self._listening_since is not None and now - self._listening_since >= window:
            self._others(False)

    def _received(self, text: str) -> None:
        try:
            payload = json.loads(text)
        except ValueError:
            log.warning("change feed: a notification that is not JSON was ignored")
            return
        event_id = payload.get("id")
        if isinstance(event_id, int) and event_id > self.told:
            self.told = event_id
        if payload.get("origin") == self.instance:
            return  # this instance published it on its own bus already
        if payload.get("type") == "beacon":  # another instance's feed listens
            self._heard[str(payload.get("origin"))] = time.monotonic()
            self._others(True)
            return
        notice = notice_of(payload)
        if notice is not None:
            self.publish(notice)

    async def _check(self) -> None:
        """A newer event than any told about, twice in a row: a notification was lost."""
        try:
            newest = await self.newest_event()
        except Exception as exc:  # the store says why; the next poll tries again
            log.debug("change feed poll failed: %s", exc)
            return
        quiet, self._quiet = self._quiet, not self.others
        if newest <= self.told or quiet:
            # Quiet: this instance's own events since the last poll were never notified, to
            # itself either; the only other writers then are sessions of no instance (an
            # operator's, the CLI's), heard on this connection, whose loss resyncs anyway.
            self.told = max(self.told, newest)
            self._suspect = None
            return
        if self._suspect is not None and newest >= self._suspect:
            log.warning("change feed: event %d was never notified; resync", self._suspect)
            self.told = newest
            self._suspect = None
            self.publish(dict(RESYNC))
            return
        self._suspect = newest  # in flight, perhaps: look again at the next poll
