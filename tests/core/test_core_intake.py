"""The intake pipeline against a real SQLite file: tracking allocation, dedupe, threading rules,
commit failures (temporary error, no partial rows), group commit isolation."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.core.errors import TemporaryFailure
from gateway.core.model import AttachmentIn, Contact, Inbound
from gateway.core.services import GW
from gateway.core.tracking import damm_digit, find_tracking, format_tracking, parse_tracking
from gateway.store.migration import Migration
from gateway.store.schema import CORE
from gateway.store.sqlite import SqliteStore
from tests.conftest import CLOSED_TIME, OPEN_TIME, FakeClock
from tests.faults import store_with_short_lock_wait, write_lock_held


def email(pid: str, sender: str, text: str = "Mi línea no funciona", **kw) -> Inbound:
    return Inbound(
        channel="email",
        provider_id=pid,
        contact=Contact(name="Cliente", email=sender),
        text=text,
        received_at=OPEN_TIME,
        subject=kw.pop("subject", "Falla"),
        **kw,
    )


def whatsapp(pid: str, phone: str, text: str = "Hola, no tengo servicio") -> Inbound:
    return Inbound(
        channel="whatsapp",
        provider_id=pid,
        contact=Contact(phone=phone),
        text=text,
        received_at=OPEN_TIME,
        thread_by_contact=True,
        acknowledge=False,
    )


@pytest.fixture
async def gw(settings, clock):
    app = create_app(settings, clock=clock, adapters={})
    gateway = app[GW]
    from gateway.app import prepare_store

    await prepare_store(gateway)
    yield gateway
    await gateway.store.close()


async def count(gw, table: str) -> int:
    row = await gw.store.read(lambda tx: tx.one(f"SELECT count(*) AS n FROM {table}"))
    return int(row["n"])


def test_tracking_format_and_check_digit() -> None:
    assert format_tracking(42) == "CMW-0000042-7"
    assert parse_tracking("CMW-0000042-7") == "CMW-0000042-7"
    assert parse_tracking("CMW-0000042-8") is None  # wrong check digit
    assert parse_tracking("CMW-0000024-7") is None  # transposition caught by Damm
    assert format_tracking(12345678).startswith("CMW-12345678-")
    text = "Re: [CMW-0000042-7] seguimiento; ver también cmw-0000042-1 y XCMW-0000042-7"
    assert find_tracking(text) == ["CMW-0000042-7"]
    for serial in range(1, 2000):
        digits = f"{serial:07d}"
        number = format_tracking(serial)
        assert number == f"CMW-{digits}-{damm_digit(digits)}"


async def test_200_concurrent_intakes_get_unique_valid_numbers(gw, settings) -> None:
    receipts = await asyncio.gather(
        *(gw.intake.accept(email(f"<m{i}@x>", f"c{i}@example.com")) for i in range(200))
    )
    numbers = [r.tracking for r in receipts]
    assert len(set(numbers)) == 200
    assert all(parse_tracking(n) == n for n in numbers)
    assert all(r.created for r in receipts)
    assert gw.store.batches < 200  # group commit: many intakes per COMMIT


async def test_repeated_provider_id_is_stored_once_same_receipt(gw, settings) -> None:
    first = await gw.intake.accept(email("<dup@x>", "ana@example.com"))
    again = await asyncio.gather(
        *(gw.intake.accept(email("<dup@x>", "ana@example.com")) for _ in range(5))
    )
    assert {r.tracking for r in again} == {first.tracking}
    assert all(r.duplicate and r.created for r in again)
    assert all(r.ack_text == first.ack_text for r in again)
    assert await count(gw, "incidents") == 1 and await count(gw, "messages") == 1
    assert await count(gw, "outbox") == 1  # one acknowledgement only


async def test_threading_rules(gw) -> None:
    first = await gw.intake.accept(email("<a1@x>", "ana@example.com", message_ref="<a1@x>"))
    # A reply that references a message of the incident joins it.
    reply = await gw.intake.accept(
        email("<a2@x>", "ana@example.com", references=("<a1@x>",), subject="Re: Falla")
    )
    assert reply.tracking == first.tracking and not reply.created
    # The participant quoting the tracking number joins.
    quoted = await gw.intake.accept(
        email("<a3@x>", "ANA@example.com", tracking_hints=(first.tracking,))
    )
    assert quoted.tracking == first.tracking
    # A stranger quoting someone else's tracking number gets a new incident.
    stranger = await gw.intake.accept(
        email("<b1@x>", "eve@evil.example", tracking_hints=(first.tracking,))
    )
    assert stranger.created and stranger.tracking != first.tracking
    # Email without references from the same sender is a new incident (email does not thread
    # by contact), while messaging channels join the contact's open conversation.
    again = await gw.intake.accept(email("<a4@x>", "ana@example.com"))
    assert again.created
    w1 = await gw.intake.accept(whatsapp("SM1", "+50688881111"))
    w2 = await gw.intake.accept(whatsapp("SM2", "+50688881111", "sigo sin servicio"))
    w3 = await gw.intake.accept(whatsapp("SM3", "+50688882222"))
    assert w2.tracking == w1.tracking and not w2.created
    assert w3.tracking != w1.tracking


async def test_concurrent_first_messages_from_one_number_make_one_incident(gw) -> None:
    receipts = await asyncio.gather(
        *(gw.intake.accept(whatsapp(f"SMc{i}", "+50688883333", f"m{i}")) for i in range(10))
    )
    assert len({r.tracking for r in receipts}) == 1
    assert sum(r.created for r in receipts) == 1


async def test_message_on_closed_incident_opens_a_follow_up(gw) -> None:
    first = await gw.intake.accept(whatsapp("SMx1", "+50688884444"))
    await gw.store.transact(
        lambda tx: tx.execute(
            "UPDATE incidents SET status = 'closed' WHERE tracking = ?", (first.tracking,)
        )
    )
    later = await gw.intake.accept(whatsapp("SMx2", "+50688884444", "otra vez sin tono"))
    assert later.created and later.tracking != first.tracking


async def test_after_hours_receipt_says_when_the_line_opens(settings, tmp_path) -> None:
    clock = FakeClock(CLOSED_TIME)
    app = create_app(settings, clock=clock, adapters={})
    gw = app[GW]
    from gateway.app import prepare_store

    await prepare_store(gw)
    try:
        r = await gw.intake.accept(whatsapp("SMn", "+50688885555"))
    finally:
        await gw.store.close()
    assert r.after_hours
    assert r.opens_at is not None and r.opens_at.isoformat() == "2026-11-30T12:00:00+00:00"
    assert "Abrimos el lunes 30/11/2026 a las 06:00, hora de Costa Rica" in r.ack_text
    assert "lunes a viernes de 06:00 a 21:00; sábado y domingo de 07:00 a 17:00" in r.ack_text


async def test_attachments_are_stored_with_the_message(gw, settings) -> None:
    await gw.intake.accept(
        email(
            "<att@x>",
            "ana@example.com",
            attachments=(AttachmentIn("captura.png", "image/png", 4, data=b"\x89PNG"),),
        )
    )
    row = await gw.store.read(
        lambda tx: tx.one("SELECT filename, size, data, length(token) AS n FROM attachments")
    )
    assert (row["filename"], row["size"], bytes(row["data"])) == ("captura.png", 4, b"\x89PNG")
    assert row["n"] >= 22


async def test_locked_database_gives_temporary_failure_and_no_partial_rows(settings, clock):
    store = store_with_short_lock_wait(settings, 100)
    app = create_app(settings, clock=clock, store=store, adapters={})
    gw = app[GW]
    from gateway.app import prepare_store

    await prepare_store(gw)
    with write_lock_held(settings), pytest.raises(TemporaryFailure):
        # another writer holds the lock past the busy timeout
        await gw.intake.accept(email("<lock@x>", "ana@example.com"))
    for table in ("incidents", "messages", "receipts", "outbox", "events", "contacts"):
        assert await count(gw, table) == 0, table
    receipt = await gw.intake.accept(email("<lock@x>", "ana@example.com"))  # the retry works
    assert receipt.created and not receipt.duplicate
    await gw.store.close()


async def test_one_failing_job_does_not_roll_back_its_batch_neighbours(gw, settings) -> None:
    def bad(tx):
        tx.execute("INSERT INTO meta (key, value) VALUES ('bad', 'x')")
        raise ValueError("boom")

    def good(key):
        return lambda tx: tx.execute("INSERT INTO meta (key, value) VALUES (?, 'x')", (key,))

    results = await asyncio.gather(
        gw.store.transact(good("a")),
        gw.store.transact(bad),
        gw.store.transact(good("b")),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError)
    keys = await gw.store.read(lambda tx: [r["key"] for r in tx.all("SELECT key FROM meta")])
    assert "a" in keys and "b" in keys and "bad" not in keys


async def test_contacts_of_one_loop_turn_share_their_registration_instant(settings) -> None:
    """The intake reads the clock once per event-loop turn (a burst is routed once)."""
    from gateway.app import prepare_store

    ticks = iter(OPEN_TIME + timedelta(microseconds=i) for i in range(1000))
    gateway = create_app(settings, clock=lambda: next(ticks), adapters={})[GW]
    await prepare_store(gateway)
    burst = await asyncio.gather(
        *(gateway.intake.accept(email(f"<b{i}@x>", f"b{i}@example.com")) for i in range(5))
    )
    later = await gateway.intake.accept(email("<late@x>", "late@example.com"))
    rows = await gateway.store.read(
        lambda tx: tx.all("SELECT tracking, registered_at FROM incidents ORDER BY id")
    )
    await gateway.store.close()
    registered = {r["tracking"]: r["registered_at"] for r in rows}
    assert len({registered[r.tracking] for r in burst}) == 1
    assert registered[later.tracking] > registered[burst[0].tracking]


async def test_tracking_numbers_are_never_handed_out_twice(settings, clock) -> None:
    """Serials are reserved once per transaction; a failed job or a restart reuses none."""
    from gateway.app import prepare_store

    def take(fail: bool = False):
        def job(tx):
            number = tx.next_tracking(clock())
            if fail:
                raise ValueError(f"boom after {number}")
            return number

        return job

    seen: list[str] = []
    for _ in range(2):  # the second round runs on a restarted store over the same file
        gateway = create_app(settings, clock=clock, adapters={})[GW]
        await prepare_store(gateway)
        results = await asyncio.gather(
            *(gateway.store.transact(take(fail=i % 3 == 1)) for i in range(9)),
            return_exceptions=True,
        )
        seen += [r for r in results if isinstance(r, str)]
        failed = [r for r in results if isinstance(r, ValueError)]
        assert len(failed) == 3
        # Numbers seen by a failed job (its rows rolled back) are skipped, not handed out again.
        seen += [str(e).removeprefix("boom after ") for e in failed]
        after = await gateway.store.transact(take())
        seen.append(after)
        await gateway.store.close()
    assert len(seen) == len(set(seen)) == 20
    assert all(parse_tracking(n) == n for n in seen)
    assert seen[-1] == max(seen)  # later numbers are higher


@pytest.mark.sqlite_only
async def test_store_is_durable_wal_full(gw, settings) -> None:
    modes = await gw.store.read(
        lambda tx: (
            tx.one("PRAGMA journal_mode")["journal_mode"],
            tx.one("PRAGMA synchronous")["synchronous"],
        )
    )
    assert modes == ("wal", 2)  # 2 = FULL


EXTRA = "CREATE TABLE extra_t (id INTEGER);"


def test_schema_is_migrated_once(tmp_path: Path) -> None:
    async def run() -> list[tuple[str, int]]:
        store = SqliteStore(str(tmp_path / "m.db"))
        await store.open()
        await store.migrate()
        await store.migrate([("extra", [Migration(1, EXTRA, EXTRA)])])
        await store.migrate([("extra", [Migration(1, EXTRA, EXTRA)])])
        rows = await store.read(
            lambda tx: [
                (r["component"], r["version"])
                for r in tx.all("SELECT * FROM schema_migrations ORDER BY 1")
            ]
        )
        await store.close()
        return rows

    core = [("core", m.version) for m in CORE]
    assert asyncio.run(run()) == [*core, ("extra", 1)]


async def test_a_processing_bug_shunts_the_input_for_replay(settings, clock, monkeypatch):
    """Nothing is lost: the sender gets a temporary failure (it retries) and the input is kept
    in `receipts` for an operator; once fixed, replay registers it exactly once."""
    from gateway.app import prepare_store
    from gateway.core import intake as intake_module

    app = create_app(settings, clock=clock, adapters={})
    gw = app[GW]
    await prepare_store(gw)
    real_detect = intake_module.detect_language
    broken = {"on": True}

    def detect(text):
        if broken["on"]:
            raise KeyError("language table bug")
        return real_detect(text)

    monkeypatch.setattr(intake_module, "detect_language", detect)  # a bug in processing
    msg = email(
        "<bug@x>",
        "ana@example.com",
        attachments=(AttachmentIn("a.pdf", "application/pdf", 3, data=b"%PD"),),
    )
    with pytest.raises(TemporaryFailure):
        await gw.intake.accept(msg)
    assert await count(gw, "incidents") == 0
    row = await gw.store.read(lambda tx: tx.one("SELECT state, error FROM receipts"))
    assert row["state"] == "shunted" and "language table bug" in row["error"]
    broken["on"] = False
    assert await gw.intake.replay_shunted() == (1, 0)
    assert await gw.intake.replay_shunted() == (0, 0)
    again = await gw.intake.accept(msg)  # the provider's retry: the same receipt
    assert again.duplicate
    assert await count(gw, "incidents") == 1 and await count(gw, "attachments") == 1
    await gw.store.close()


@pytest.mark.sqlite_only
async def test_a_half_read_result_does_not_pin_a_readers_snapshot(gw) -> None:
    """Reads share one cursor per transaction; `one` on a many-row query leaves its statement
    unfinished. On a reader connection that would hold the WAL snapshot: later commits would
    stay invisible to that reader and checkpoints could not complete."""
    for i in range(3):
        await gw.intake.accept(email(f"<r{i}@x>", f"r{i}@example.com"))
    for _ in range(4):  # every reader connection gets a half-read statement
        first = await gw.store.read(lambda tx: tx.one("SELECT id FROM incidents ORDER BY id"))
        assert first is not None
    await gw.intake.accept(email("<r9@x>", "r9@example.com"))
    for _ in range(4):
        assert await gw.store.read(lambda tx: tx.one("SELECT count(*) AS n FROM incidents")) == {
            "n": 4
        }
    with sqlite3.connect(gw.store.path) as other:
        busy, frames, done = other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert busy == 0 and frames == done  # no reader held an old snapshot back


async def test_accept_with_commits_the_adapters_part_in_the_intakes_transaction(gw) -> None:
    """A chat `start` with an email queues the confirmation mail in the intake's own
    transaction: one COMMIT for both, so the visitor's ticket waits for one group commit."""

    def note(tx, receipt):
        tx.insert_event(receipt.incident_id, OPEN_TIME, "system", "adapter_note", {})
        return receipt.tracking

    before = gw.store.batches
    receipt, value = await gw.intake.accept_with(email("<with@x>", "ana@example.com"), note)
    assert value == receipt.tracking and receipt.created
    assert gw.store.batches == before + 1  # one COMMIT for the intake and the adapter's part
    events = await gw.store.read(lambda tx: tx.events(receipt.incident_id))
    assert [e["kind"] for e in events][-1] == "adapter_note"


async def test_a_failing_adapter_part_takes_back_only_its_own_writes(gw, caplog) -> None:
    def broken(tx, receipt):
        tx.insert_event(receipt.incident_id, OPEN_TIME, "system", "half_done", {})
        raise ValueError("a bug in the adapter's part")

    receipt, value = await gw.intake.accept_with(whatsapp("SMbroken", "+50688887777"), broken)
    assert value is None and receipt.created
    kinds = [e["kind"] for e in await gw.store.read(lambda tx: tx.events(receipt.incident_id))]
    assert "registered" in kinds and "half_done" not in kinds
    assert await count(gw, "incidents") == 1 and await count(gw, "receipts") == 1
    assert "the intake stands" in caplog.text
    again, _ = await gw.intake.accept_with(whatsapp("SMbroken", "+50688887777"), None)
    assert again.duplicate and again.tracking == receipt.tracking
