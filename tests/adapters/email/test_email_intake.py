"""Email intake through real SMTP: dedupe, threading, no-answer rules, bounces, the corpus.

What an agent would see is checked through the agent API (GET /api/v1/incidents/{tracking}).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.adapters.email.conftest import (
    fixture,
    incident_json,
    mail,
    outbox_rows,
    send,
    tracking_of,
)


async def accepted(gw: Any, raw: bytes, **kw: Any) -> str:
    code, text = await send(gw, raw, **kw)
    assert code == 250, text
    return tracking_of(text)


async def test_same_message_id_and_sender_twice_is_stored_once(start_email) -> None:
    gw = await start_email(with_relay=False)
    raw = mail(msgid="<dup-1@cliente.com>")
    first = await send(gw, raw)
    assert await send(gw, raw) == first
    other = await accepted(gw, mail(msgid="<dup-1@cliente.com>", sender="eva@otra.example"))
    assert other != tracking_of(first[1])  # the same Message-ID from someone else is new mail
    body = await incident_json(gw, tracking_of(first[1]))
    assert len(body["messages"]) == 1
    assert [r["kind"] for r in await outbox_rows(gw)] == ["ack", "ack"]


async def test_reply_threads_by_in_reply_to_and_by_tracking_for_participants(start_email) -> None:
    gw = await start_email(with_relay=False)
    tracking = await accepted(gw, mail(msgid="<first@cliente.com>"))
    reply = mail(
        subject="Re: Sin tono", body="Sigue igual.", headers={"In-Reply-To": "<first@cliente.com>"}
    )
    assert await accepted(gw, reply) == tracking
    by_subject = mail(subject=f"Re: [{tracking}] novedades", body="Ahora funciona a medias.")
    assert await accepted(gw, by_subject) == tracking
    body = await incident_json(gw, tracking)
    assert [m["body"] for m in body["messages"]][1:] == ["Sigue igual.", "Ahora funciona a medias."]
    assert [r["kind"] for r in await outbox_rows(gw)] == ["ack"]  # joined mail is not acked


async def test_stranger_or_wrong_check_digit_gets_a_new_incident(start_email) -> None:
    gw = await start_email(with_relay=False)
    tracking = await accepted(gw, mail())
    stranger = await accepted(gw, mail(subject=f"[{tracking}]", sender="intruso@mal.example"))
    assert stranger != tracking
    wrong = tracking[:-1] + str((int(tracking[-1]) + 1) % 10)
    assert await accepted(gw, mail(subject=f"Re: [{wrong}]")) not in (tracking, stranger)


@pytest.mark.parametrize(
    ("headers", "mail_from", "flag"),
    [
        ({"Auto-Submitted": "auto-replied"}, "ana@cliente.com", "auto_submitted"),
        ({"Precedence": "bulk"}, "ana@cliente.com", "bulk"),
        ({"List-Id": "<clientes.lists.example>"}, "ana@cliente.com", "mailing_list"),
        ({"X-Auto-Response-Suppress": "All"}, "ana@cliente.com", "auto_response_suppressed"),
        ({}, "", "null_sender"),
    ],
)
async def test_stored_but_never_acknowledged(start_email, headers, mail_from, flag) -> None:
    gw = await start_email(with_relay=False)
    tracking = await accepted(gw, mail(headers=headers), mail_from=mail_from)
    body = await incident_json(gw, tracking)
    assert flag in body["flags"]
    assert body["messages"][0]["body"].startswith("Hola, no tengo tono")
    assert await outbox_rows(gw) == []


async def test_our_own_address_is_never_acknowledged(start_email) -> None:
    gw = await start_email(with_relay=False)
    tracking = await accepted(gw, mail(sender="soporte@callmyway.com"))
    assert "own_address" in (await incident_json(gw, tracking))["flags"]
    assert await outbox_rows(gw) == []


async def test_one_acknowledgement_per_sender_per_window(start_email, clock) -> None:
    gw = await start_email({"email": {"ack_window": "1h"}}, with_relay=False)
    first = await accepted(gw, mail(subject="uno"))
    second = await accepted(gw, mail(subject="dos"))
    assert first != second
    clock.advance(hours=2)
    await accepted(gw, mail(subject="tres"))
    assert len(await outbox_rows(gw)) == 2
    events = [e["kind"] for e in (await incident_json(gw, second))["events"]]
    assert "ack_suppressed" in events


@pytest.mark.parametrize(
    ("name", "flags", "text", "acked"),
    [
        ("html_only.eml", [], "Desde ayer las llamadas se caen a los 30 segundos.", True),
        ("latin1_qp.eml", [], "¿Pueden revisar la línea?", True),
        ("windows1252.eml", [], "It’s costing us €100", True),
        ("unknown_charset.eml", [], "se\ufffdal", True),
        ("mailing_list.eml", ["bulk", "mailing_list"], "hoy tengo cortes", False),
        ("broken_boundary.eml", ["parse_degraded"], "configurar mi extension 204", True),
        ("no_from.eml", ["no_from"], "La troncal SIP 2 no responde", True),
        ("forwarded.eml", [], "Desde el viernes las llamadas entrantes dan ocupado.", True),
    ],
)
async def test_corpus(start_email, name, flags, text, acked) -> None:
    gw = await start_email(with_relay=False)
    raw = fixture(name)
    tracking = await accepted(gw, raw, mail_from="alertas@pbx.cliente.example")
    body = await incident_json(gw, tracking)
    assert set(flags) <= set(body["flags"]) and "body_pending" not in body["flags"]
    assert text in body["messages"][0]["body"] and text in body["description"]
    assert "<script" not in body["messages"][0]["body"]
    assert bool(await outbox_rows(gw)) is acked
    stored = await gw.store.read(lambda tx: tx.one("SELECT raw FROM receipts"))
    assert bytes(stored["raw"]) == raw  # the original, for forensics


async def test_html_only_mail_keeps_only_sanitised_html(start_email) -> None:
    gw = await start_email(with_relay=False)
    await accepted(gw, fixture("html_only.eml"))
    await gw.extras["email_extractor"].idle()
    row = await gw.store.read(lambda tx: tx.one("SELECT html FROM messages"))
    assert "<b>caen</b>" in row["html"]
    for bad in ("<script", "javascript:", "tracker.example", "onclick", "@import"):
        assert bad not in row["html"]


async def test_attachments_are_listed_with_name_type_and_size(start_email) -> None:
    gw = await start_email({"email": {"max_attachment_bytes": 80}}, with_relay=False)
    tracking = await accepted(gw, fixture("base64_attachments.eml"))
    message = (await incident_json(gw, tracking))["messages"][0]
    assert [(a["filename"], a["content_type"], a["size"]) for a in message["attachments"]] == [
        ("captura.png", "image/png", 70)
    ]
    assert "Adjunto omitido: factura-noviembre.pdf" in message["body"]


async def test_english_writer_gets_an_english_incident(start_email) -> None:
    gw = await start_email(with_relay=False)
    tracking = await accepted(gw, fixture("windows1252.eml"))
    assert (await incident_json(gw, tracking))["language"] == "en"


async def test_body_left_pending_by_a_crash_is_extracted_at_next_start(
    start_email, start_app, settings
) -> None:
    gw = await start_email(with_relay=False)
    await gw.extras["email_extractor"].stop()  # as if the process died right after the 250
    tracking = await accepted(gw, mail(body="Cuerpo que nadie extrajo todavía."))
    row = await gw.store.read(lambda tx: tx.one("SELECT body, flags FROM messages"))
    assert row["body"] == "" and "body_pending" in json.loads(row["flags"])
    gw2 = await start_email(with_relay=False)  # a new process on the same database
    gw2.extras["http"] = gw2.extras["http"]
    body = await incident_json(gw2, tracking)
    assert body["messages"][0]["body"] == "Cuerpo que nadie extrajo todavía."
    assert "body_pending" not in body["flags"]


async def test_a_reply_is_parsed_once_for_its_preview_and_its_body(
    start_email, monkeypatch
) -> None:
    """The preview read before a reply's commit is the body the extractor writes afterwards:
    the message is not parsed a second time."""
    from adapters.email import body as body_module
    from adapters.email import extract as extract_module

    gw = await start_email(with_relay=False)
    tracking = await accepted(gw, mail(msgid="<uno@cliente.com>"))
    await incident_json(gw, tracking)
    parsed: list[bytes] = []
    real = body_module.extract_body

    def counted(raw: bytes, limit: int) -> Any:
        parsed.append(raw)
        return real(raw, limit)

    monkeypatch.setattr(extract_module, "extract_body", counted)
    reply = mail(
        subject="Re: Sin tono", body="Sigue igual.", headers={"In-Reply-To": "<uno@cliente.com>"}
    )
    assert await accepted(gw, reply) == tracking
    body = await incident_json(gw, tracking)
    assert [m["body"] for m in body["messages"]][1:] == ["Sigue igual."]
    assert len(parsed) == 1
