"""Email bodies are never stuck until a restart: any pending body (a DATA handler cancelled
after its commit, a released or replayed item) is found and extracted by the running process,
a failed extraction is retried with backoff, and each body is claimed by one worker at a time
(several instances on PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

from adapters.email import extract as extract_module
from adapters.email.extract import KIND, PENDING
from gateway.core import quarantine
from gateway.core.model import Contact, Inbound
from tests.adapters.email.conftest import incident_json, mail
from tests.sqlplan import Recorder, query_plan


def pending_mail(raw: bytes, pid: str, clock: Any) -> Inbound:
    """A mail committed as the SMTP handler commits it (body to be extracted later)."""
    return Inbound(
        channel="email",
        provider_id=pid,
        contact=Contact(email="ana@cliente.com"),
        text="",
        received_at=clock(),
        subject="Sin tono",
        raw=raw,
        flags=(PENDING,),
    )


async def test_a_body_nobody_submitted_is_extracted_without_a_restart(start_email, clock):
    gw = await start_email(with_relay=False)
    # Committed, but its handler was cancelled before it could hand the body over.
    raw = mail(body="Cuerpo de un DATA cancelado tras el commit.")
    receipt = await gw.intake.accept(pending_mail(raw, "<cancelled@cliente.com>", clock))
    gw.extras["email_extractor"].wake()
    body = await incident_json(gw, receipt.tracking)  # waits for the extractor to be idle
    assert body["messages"][0]["body"] == "Cuerpo de un DATA cancelado tras el commit."
    assert PENDING not in body["flags"]


async def test_a_failed_extraction_is_retried_with_backoff(start_email, clock, monkeypatch):
    gw = await start_email(with_relay=False)
    real = extract_module.extract_body
    failures = {"left": 1}

    def flaky(raw: bytes, limit: int) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise MemoryError("parser ran out of memory")
        return real(raw, limit)

    monkeypatch.setattr(extract_module, "extract_body", flaky)
    raw = mail(body="Segundo intento.")
    receipt = await gw.intake.accept(pending_mail(raw, "<retry@cliente.com>", clock))
    extractor = gw.extras["email_extractor"]
    await extractor.idle()
    row = await gw.store.read(lambda tx: tx.one("SELECT body, flags FROM messages"))
    assert row["body"] == "" and PENDING in json.loads(row["flags"])  # waits for its retry
    claim = await gw.store.read(lambda tx: tx.one("SELECT * FROM work_claims"))
    assert claim["attempts"] == 1 and "MemoryError" in claim["last_error"]
    clock.advance(seconds=3)  # the backoff of a first failure: 2 s
    body = await incident_json(gw, receipt.tracking)
    assert body["messages"][0]["body"] == "Segundo intento."
    assert await gw.store.read(lambda tx: tx.one("SELECT * FROM work_claims")) is None


async def test_each_pending_body_is_claimed_by_one_worker_at_a_time(start_email, clock):
    gw = await start_email(with_relay=False)
    await gw.extras["email_extractor"].stop()  # only the claims themselves are looked at
    now = clock()
    lease = timedelta(seconds=25)
    first = await gw.store.transact(lambda tx: quarantine.claim_work(tx, KIND, [7, 8], now, lease))
    second = await gw.store.transact(lambda tx: quarantine.claim_work(tx, KIND, [7, 8], now, lease))
    assert first == {7: 1, 8: 1} and second == {}  # another instance finds them taken
    later = now + timedelta(seconds=26)  # the first worker died: its lease ran out
    again = await gw.store.transact(lambda tx: quarantine.claim_work(tx, KIND, [7], later, lease))
    assert again == {7: 2}
    retry_at = later + timedelta(seconds=8)
    await gw.store.transact(lambda tx: quarantine.fail_work(tx, KIND, 7, later, retry_at, "x"))
    soon = later + timedelta(seconds=1)
    assert (
        await gw.store.transact(lambda tx: quarantine.claim_work(tx, KIND, [7], soon, lease)) == {}
    )
    due = retry_at + timedelta(seconds=1)
    assert await gw.store.transact(lambda tx: quarantine.claim_work(tx, KIND, [7], due, lease)) == {
        7: 3
    }


async def committed_in_one_batch(gw: Any, clock: Any, texts: list[str], monkeypatch: Any) -> list:
    """Commit one pending mail per text (each its own customer) while the worker waits, so
    its next pass takes them all; the receipts."""
    monkeypatch.setattr(extract_module, "MAX_LAG", 60.0)
    extractor = gw.extras["email_extractor"]
    extractor.quiet = lambda: False  # the next pass waits (for MAX_LAG) before it reads
    receipts = []
    for n, text in enumerate(texts):
        inbound = pending_mail(mail(body=text), f"<batch{n}@cliente.com>", clock)
        inbound = replace(inbound, contact=Contact(email=f"cliente{n}@cliente.com"))
        receipts.append(await gw.intake.accept(inbound))
    assert len({r.tracking for r in receipts}) == len(texts)
    extractor.quiet = lambda: True
    extractor.wake()
    return receipts


async def test_a_failing_body_in_a_batch_does_not_hold_back_the_others(
    start_email, clock, monkeypatch
):
    """Bodies are extracted and written a batch at a time: one whose parse raises and one
    whose write fails are retried later, while the rest of the batch becomes visible."""
    gw = await start_email(with_relay=False)
    real_extract, real_apply = extract_module.extract_body, extract_module.apply_body
    faults = {"parse": True, "store": True}

    def extract(raw: bytes, limit: int) -> Any:
        if faults["parse"] and b"parser-killer" in raw:
            raise ValueError("parser-killer")
        return real_extract(raw, limit)

    def apply(tx: Any, mid: int, body: Any, now: Any) -> Any:
        if faults["store"] and "disco lleno" in body.text:
            raise RuntimeError("no space left on device")
        return real_apply(tx, mid, body, now)

    monkeypatch.setattr(extract_module, "extract_body", extract)
    monkeypatch.setattr(extract_module, "apply_body", apply)
    texts = ["Sin tono.", "parser-killer", "Se corta.", "disco lleno", "Eco en la línea."]
    receipts = await committed_in_one_batch(gw, clock, texts, monkeypatch)
    for n in (0, 2, 4):
        body = await incident_json(gw, receipts[n].tracking)
        assert body["messages"][0]["body"] == texts[n]
        assert PENDING not in body["flags"]
    claims = await gw.store.read(lambda tx: tx.all("SELECT * FROM work_claims ORDER BY ref"))
    assert [c["ref"] for c in claims] == [receipts[1].message_id, receipts[3].message_id]
    assert "parser-killer" in claims[0]["last_error"]
    assert "no space left" in claims[1]["last_error"]
    for n in (1, 3):  # still waiting for their retry, nothing lost
        body = await incident_json(gw, receipts[n].tracking)
        assert body["messages"][0]["body"] == "" and PENDING in body["flags"]
    faults.update(parse=False, store=False)
    clock.advance(seconds=3)  # the backoff of a first failure: 2 s
    for n in (1, 3):
        body = await incident_json(gw, receipts[n].tracking)
        assert body["messages"][0]["body"] == texts[n]
        assert PENDING not in body["flags"]


async def test_a_parse_over_its_budget_in_a_batch_is_stored_raw_and_the_rest_parsed(
    start_email, clock, monkeypatch
):
    """email.parse_timeout holds for each body of a batch: the stuck one is stored as its raw
    text, flagged degraded, and the bodies queued behind it are still parsed."""
    gw = await start_email({"email": {"parse_timeout": "1s"}}, with_relay=False)
    real_extract = extract_module.extract_body

    def extract(raw: bytes, limit: int) -> Any:
        if b"atasco" in raw:
            time.sleep(1.5)  # a parse the budget gives up on (its thread is left to finish)
        return real_extract(raw, limit)

    monkeypatch.setattr(extract_module, "extract_body", extract)
    texts = ["Sin tono.", "atasco", "Eco en la línea."]
    receipts = await committed_in_one_batch(gw, clock, texts, monkeypatch)
    for n in (0, 2):
        body = await incident_json(gw, receipts[n].tracking)
        assert body["messages"][0]["body"] == texts[n]
    body = await incident_json(gw, receipts[1].tracking)
    assert "atasco" in body["messages"][0]["body"]
    assert "No se pudo interpretar el mensaje a tiempo" in body["messages"][0]["body"]
    assert "parse_degraded" in body["flags"] and PENDING not in body["flags"]


async def test_a_parse_queued_behind_a_stuck_one_still_gets_its_body(start_email, monkeypatch):
    """Two DATA handlers parse at once (replies' previews): the first one's timeout replaces
    the parsing thread, and the second, queued on the old one, is parsed on the new one."""
    gw = await start_email({"email": {"parse_timeout": "1s"}}, with_relay=False)
    real_extract = extract_module.extract_body

    def extract(raw: bytes, limit: int) -> Any:
        if b"atasco" in raw:
            time.sleep(1.5)
        return real_extract(raw, limit)

    monkeypatch.setattr(extract_module, "extract_body", extract)
    extractor = gw.extras["email_extractor"]

    async def second() -> Any:
        await asyncio.sleep(0.5)  # queued while the first is stuck; its own budget runs later
        return await extractor.parse(mail(body="Sin tono."))

    stuck, fine = await asyncio.gather(extractor.parse(mail(body="atasco")), second())
    assert stuck.degraded and "a tiempo" in stuck.text
    assert fine.text == "Sin tono." and not fine.degraded


async def test_finding_pending_bodies_never_walks_all_the_mail(
    start_email, clock, db_backend: str
) -> None:
    """The extractor's look for pending bodies runs on every wake: it starts from the pending
    messages' own index. On SQLite (no statistics) the order is fixed, pending messages first
    and then their receipts: it used to go through every email receipt ever received (4 % of
    the gateway's CPU after 5,000 mails). PostgreSQL's planner orders the join by statistics."""
    gw = await start_email(with_relay=False)  # the schema, migrated

    def plan(tx):
        recorder = Recorder(tx)
        extract_module.pending_bodies(recorder, clock(), 128)  # type: ignore[arg-type]
        ((sql, params),) = recorder.sql
        return query_plan(tx, sql, params)

    plan_text = await gw.store.transact(plan)
    if db_backend == "sqlite":
        assert plan_text.startswith("SCAN m USING INDEX email_messages_pending_id"), plan_text
        assert "SEARCH r USING INDEX email_receipts_message" in plan_text, plan_text
    else:
        assert "email_messages_pending_id" in plan_text, plan_text
        assert "Seq Scan" not in plan_text, plan_text
