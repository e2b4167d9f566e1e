"""Two instances on one PostgreSQL database, in one test process: what one commits reaches the
other's live bus within a second (LISTEN/NOTIFY), a dropped listening connection is re-opened
and followed by a resync, and a change whose notification never came is caught by the poll."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import psycopg
import pytest

from gateway.core.errors import TemporaryFailure
from gateway.core.model import Contact, Inbound
from gateway.store.pgfeed import ChangeFeed
from gateway.store.postgres import PostgresStore
from tests.conftest import OPEN_TIME

pytestmark = pytest.mark.postgresql_only


def whatsapp(pid: str, phone: str, text: str = "No tengo tono") -> Inbound:
    return Inbound(
        channel="whatsapp",
        provider_id=pid,
        contact=Contact(phone=phone),
        text=text,
        received_at=OPEN_TIME,
        thread_by_contact=True,
        acknowledge=False,
    )


async def two_instances(start_app: Any, make_settings: Any) -> tuple[Any, Any, Any]:
    """Gateways A and B on one database; returns (A, B, B's HTTP client)."""
    _, a = await start_app(make_settings(GATEWAY_INSTANCE="core-a"), adapters={})
    client_b, b = await start_app(make_settings(GATEWAY_INSTANCE="core-b"), adapters={})
    for gw in (a, b):
        await asyncio.wait_for(gw.store.feed.connected.wait(), timeout=5)
    return a, b, client_b


async def next_notice(queue: asyncio.Queue, want: Any, seconds: float = 5.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        notice = await asyncio.wait_for(queue.get(), timeout=deadline - time.monotonic())
        if want(notice):
            return notice


async def test_a_contact_on_b_reaches_the_live_bus_of_a_within_a_second(
    start_app, make_settings
) -> None:
    a, b, _ = await two_instances(start_app, make_settings)
    async with a.bus.subscribe() as seen_by_a, b.bus.subscribe() as seen_by_b:
        started = time.monotonic()
        receipt = await b.intake.accept(whatsapp("SMfeed1", "+50688880101"))
        notice = await next_notice(seen_by_a, lambda n: n.get("tracking") == receipt.tracking)
        assert time.monotonic() - started < 1.0
        assert notice["event"] == "created" and notice["remote"] is True
        # B published its own change once, directly; the feed does not echo it back to B.
        own = [await seen_by_b.get()]
        await asyncio.sleep(0.5)
        while not seen_by_b.empty():
            own.append(seen_by_b.get_nowait())
        assert [n.get("remote") for n in own if n.get("tracking") == receipt.tracking] == [None]


async def test_an_escalation_on_one_instance_tells_the_other_which_queues_changed(
    start_app, make_settings, agent_token
) -> None:
    a, b, client_b = await two_instances(start_app, make_settings)
    receipt = await b.intake.accept(whatsapp("SMfeed2", "+50688880102"))
    token = await agent_token(b)
    async with a.bus.subscribe() as seen_by_a:
        resp = await client_b.post(
            f"/api/v1/incidents/{receipt.tracking}/escalate",
            json={"level": "L2", "team": "redes", "reason": "falla en troncal SIP"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert resp.status == 200, await resp.text()
        notice = await next_notice(seen_by_a, lambda n: n.get("event") == "escalated")
    assert notice["tracking"] == receipt.tracking
    assert (notice["from_level"], notice["level"], notice["team"]) == ("L1", "L2", "redes")


async def test_a_dropped_listener_reconnects_and_resyncs(start_app, make_settings) -> None:
    a, b, _ = await two_instances(start_app, make_settings)
    async with a.bus.subscribe() as seen_by_a:
        with psycopg.connect(a.settings.db_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'core-a:feed'"
            )
        await next_notice(seen_by_a, lambda n: n.get("type") == "resync", seconds=10)
        await asyncio.wait_for(a.store.feed.connected.wait(), timeout=10)
        assert a.store.feed.reconnects == 1
        receipt = await b.intake.accept(whatsapp("SMfeed3", "+50688880103"))
        await next_notice(seen_by_a, lambda n: n.get("tracking") == receipt.tracking)


async def test_a_change_never_notified_is_caught_by_the_poll(start_app, make_settings) -> None:
    a, b, _ = await two_instances(start_app, make_settings)
    receipt = await b.intake.accept(whatsapp("SMfeed4", "+50688880104"))
    async with a.bus.subscribe() as seen_by_a:
        # A session whose triggers do not fire: its event is committed with no notification,
        # as if the notification had been lost on the way.
        with psycopg.connect(a.settings.db_url, autocommit=True) as quiet:
            quiet.execute("SET session_replication_role = replica")
            quiet.execute(
                "INSERT INTO events (incident_id, at, actor, kind, detail)"
                " SELECT id, now(), 'system', 'note', '{}' FROM incidents WHERE tracking = %s",
                (receipt.tracking,),
            )
        notice = await next_notice(seen_by_a, lambda n: n.get("type") == "resync", seconds=10)
    assert notice == {"type": "resync"}


async def test_a_feed_whose_store_cannot_read_keeps_trying(db_url: str) -> None:
    """At (re)connect the feed reads the newest event id through the store; a store that cannot
    read then (its pool closed while an operator reopens it, the server busy) delays the feed,
    never ends it: the change feed is the only way this instance hears of the others."""
    answers: list[Exception | int] = [TemporaryFailure("the database cannot be read"), 7]

    async def newest_event() -> int:
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    feed = ChangeFeed(db_url, "core-x", lambda notice: None, newest_event)
    task = asyncio.create_task(feed.run())
    try:
        await asyncio.wait_for(feed.connected.wait(), timeout=5)
        assert not task.done() and feed.told == 7 and feed.reconnects == 0
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        await asyncio.sleep(0.02)


def incident_notes(listener: psycopg.Connection, seconds: float) -> list[str]:
    """The change notifications about incidents a plain LISTEN connection gets (no beacons)."""
    return [
        note.payload
        for note in listener.notifies(timeout=seconds)
        if '"type" : "incident"' in note.payload
    ]


async def test_an_instance_alone_writes_without_notifications_until_another_listens(
    start_app, make_settings, monkeypatch
) -> None:
    monkeypatch.setattr(PostgresStore, "feed_poll", 0.1)  # alone after three quiet polls
    client_a, a = await start_app(make_settings(GATEWAY_INSTANCE="core-a"), adapters={})
    await asyncio.wait_for(a.store.feed.connected.wait(), timeout=5)
    assert a.store.notify_changes is True  # nobody heard yet, but nobody ruled out either
    await wait_for(lambda: a.store.notify_changes is False)
    assert "gateway_change_notifications 0.0" in await (await client_a.get("/metrics")).text()

    with psycopg.connect(a.settings.db_url, autocommit=True) as listener:
        listener.execute("LISTEN gateway_changes")
        # Alone: the contact is committed and published on A's own bus, but nothing is sent
        # (a plain listener is no instance: it sends no beacon).
        async with a.bus.subscribe() as seen_by_a:
            quiet = await a.intake.accept(whatsapp("SMalone1", "+50688880105"))
            await next_notice(seen_by_a, lambda n: n.get("tracking") == quiet.tracking)
        assert await asyncio.to_thread(incident_notes, listener, 0.5) == []

        # Another instance starts: its first beacon turns A's notifications back on, and what
        # A commits next reaches B as that change, not as a resync.
        client_b, b = await start_app(make_settings(GATEWAY_INSTANCE="core-b"), adapters={})
        await asyncio.wait_for(b.store.feed.connected.wait(), timeout=5)
        await wait_for(lambda: a.store.notify_changes is True, seconds=2)
        async with b.bus.subscribe() as seen_by_b:
            loud = await a.intake.accept(whatsapp("SMalone2", "+50688880106"))
            notice = await next_notice(seen_by_b, lambda n: n.get("tracking") == loud.tracking)
        assert notice["event"] == "created" and notice["remote"] is True
        notes = await asyncio.to_thread(incident_notes, listener, 0.5)
        assert any(loud.tracking in note for note in notes)
        metrics = await (await client_a.get("/metrics")).text()
        assert "gateway_change_notifications 1.0" in metrics

        # B stops: three polls later A is alone again.
        await client_b.close()
        await wait_for(lambda: a.store.notify_changes is False)


async def test_an_instance_whose_feed_is_cut_off_notifies_again(
    start_app, make_settings, monkeypatch
) -> None:
    """Without its listening connection an instance cannot know it is alone: it notifies."""
    monkeypatch.setattr(PostgresStore, "feed_poll", 0.1)
    _, a = await start_app(make_settings(GATEWAY_INSTANCE="core-a"), adapters={})
    await wait_for(lambda: a.store.notify_changes is False)
    with psycopg.connect(a.settings.db_url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'core-a:feed'"
        )
    await wait_for(lambda: a.store.notify_changes is True)


async def test_an_instance_alone_tells_its_own_pages_no_resync(
    start_app, make_settings, monkeypatch
) -> None:
    """Alone, its own events reach no listener, not even its own feed: the poll must not take
    them for lost notifications and have every live page re-read what it shows."""
    monkeypatch.setattr(PostgresStore, "feed_poll", 0.1)
    _, a = await start_app(make_settings(GATEWAY_INSTANCE="core-a"), adapters={})
    await wait_for(lambda: a.store.notify_changes is False)
    async with a.bus.subscribe() as seen_by_a:
        for n in range(3):
            await a.intake.accept(whatsapp(f"SMquiet{n}", f"+5068888011{n}"))
        await asyncio.sleep(1.0)  # ten polls
        seen = []
        while not seen_by_a.empty():
            seen.append(seen_by_a.get_nowait())
    assert [n["type"] for n in seen] == ["incident"] * 3
