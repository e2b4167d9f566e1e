"""Search and forensics through the API, on both databases: incidents by name, email, phone and
text; the event history by tracking number, contact, channel, time range and kind (keyset pages);
one incident's complete record with its delivery attempts."""

from __future__ import annotations

import pytest

from gateway.core.model import Contact, Inbound
from tests.conftest import OPEN_TIME
from tests.workspace.conftest import login, make_desk


def _msg(pid: str, channel: str = "whatsapp", **contact: str) -> Inbound:
    text = contact.pop("text", "No tengo tono desde esta mañana")
    return Inbound(
        channel=channel,
        provider_id=pid,
        contact=Contact(**contact),
        text=text,
        received_at=OPEN_TIME,
        thread_by_contact=True,
    )


async def _people(gw) -> dict[str, str]:
    made = {
        "ana": await gw.intake.accept(_msg("A1", name="Ana Quesada", phone="+50688880001")),
        "luis": await gw.intake.accept(
            _msg("L1", "email", name="Luis Mora", email="luis.mora@example.com", text="Factura")
        ),
        "eco": await gw.intake.accept(
            _msg("E1", name="Eva", phone="+50688880003", text="Se escucha eco en la línea 50%_x")
        ),
    }
    return {k: v.tracking for k, v in made.items()}


async def test_search_by_name_email_phone_text_and_tracking(start_app, settings, agent_token):
    client, gw = await start_app(settings, adapters={})
    auth = {"Authorization": f"Bearer {await agent_token(gw)}"}
    t = await _people(gw)

    async def found(q: str) -> list[str]:
        resp = await client.get("/api/v1/incidents", params={"q": q}, headers=auth)
        assert resp.status == 200, await resp.text()
        return [i["tracking"] for i in (await resp.json())["incidents"]]

    assert await found("quesada") == [t["ana"]]  # any case, part of the name
    assert await found("LUIS.MORA@") == [t["luis"]]
    assert await found("8888-0003") == [t["eco"]]  # a phone as people type it
    assert await found("eco en la") == [t["eco"]]  # message text
    assert await found("50%_x") == [t["eco"]]  # % and _ are literal, not wildcards
    assert await found("50%") == [t["eco"]]
    assert await found(t["luis"].lower()) == [t["luis"]]
    assert await found("nadie se llama así") == []
    assert await found("luis factura") == [t["luis"]]  # every word, anywhere
    assert await found("luis eco") == []
    resp = await client.get("/api/v1/incidents", params={"q": "a"}, headers=auth)
    assert resp.status == 400 and (await resp.json())["error"]["field"] == "q"


async def test_search_pages_with_a_cursor_and_respects_levels(start_app, settings, agent_token):
    client, gw = await start_app(settings, adapters={})
    for n in range(5):
        await gw.intake.accept(_msg(f"P{n}", name=f"Pedro {n}", phone=f"+5068888010{n}"))
    auth = {"Authorization": f"Bearer {await agent_token(gw)}"}
    seen: list[str] = []
    cursor = ""
    for _ in range(4):
        params = {"q": "pedro", "limit": "2", **({"cursor": cursor} if cursor else {})}
        body = await (await client.get("/api/v1/incidents", params=params, headers=auth)).json()
        seen += [i["tracking"] for i in body["incidents"]]
        cursor = body["next"]
        if not cursor:
            break
    assert len(seen) == 5 and len(set(seen)) == 5 and seen == sorted(seen, reverse=True)
    # An L2 agent does not find L1 incidents.
    l2 = {"Authorization": f"Bearer {await agent_token(gw, 'beto', 'l2', 'redes')}"}
    body = await (await client.get("/api/v1/incidents?q=pedro", headers=l2)).json()
    assert body["incidents"] == []
    bad = await client.get("/api/v1/incidents?q=pedro&cursor=x", headers=auth)
    assert bad.status == 400 and (await bad.json())["error"]["field"] == "cursor"


async def test_event_history_filters_and_pages(start_app, settings, agent_token, clock):
    client, gw = await start_app(settings, adapters={})
    auth = {"Authorization": f"Bearer {await agent_token(gw, 'sara', 'supervisor')}"}
    t = await _people(gw)

    async def events(**params: str) -> dict:
        resp = await client.get("/api/v1/events", params=params, headers=auth)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    mine = (await events(tracking=t["ana"]))["events"]
    assert {e["tracking"] for e in mine} == {t["ana"]}
    assert "registered" in {e["kind"] for e in mine}
    by_contact = (await events(contact="luis.mora"))["events"]
    assert by_contact and {e["tracking"] for e in by_contact} == {t["luis"]}
    assert by_contact[0]["contact"]["email"] == "luis.mora@example.com"
    by_channel = (await events(channel="email", kind="registered"))["events"]
    assert [e["tracking"] for e in by_channel] == [t["luis"]]
    assert (await events(**{"from": "2026-12-01"}))["events"] == []
    day = await events(**{"from": "2026-11-30", "to": "2026-11-30", "kind": "registered"})
    assert len(day["events"]) == 3
    # Keyset pages: every registered event once, newest first.
    first = await events(kind="registered", limit="2")
    second = await events(kind="registered", limit="2", cursor=first["next"])
    ids = [e["id"] for e in first["events"] + second["events"]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True) and second["next"] is None
    for params, field in (
        ({"channel": "fax"}, "channel"),
        ({"from": "ayer"}, "from"),
        ({"tracking": "CMW-1"}, "tracking"),
        ({"from": "2026-12-02", "to": "2026-12-01"}, "from"),
    ):
        resp = await client.get("/api/v1/events", params=params, headers=auth)
        assert resp.status == 400 and (await resp.json())["error"]["field"] == field


async def test_complete_record_has_messages_events_and_delivery_attempts(
    start_app, settings, agent_token
):
    client, gw = await start_app(settings, adapters={})
    auth = {"Authorization": f"Bearer {await agent_token(gw)}"}
    t = await _people(gw)
    resp = await client.get(f"/api/v1/incidents/{t['luis']}/record", headers=auth)
    assert resp.status == 200
    assert t["luis"] in resp.headers["Content-Disposition"]
    record = await resp.json()
    assert record["tracking"] == t["luis"]
    assert record["messages"][0]["body"] == "Factura"
    assert record["messages"][0]["attachments"] == []
    assert "registered" in [e["kind"] for e in record["events"]]
    # The acknowledgement waits in the outbox (no relay in tests): one delivery, no try yet.
    ack = [d for d in record["deliveries"] if d["kind"] == "ack"]
    assert ack and ack[0]["channel"] == "email" and ack[0]["recipient"] == "luis.mora@example.com"
    assert ack[0]["status"] == "pending" and ack[0]["tries"] == []
    missing = await client.get("/api/v1/incidents/CMW-0000000-0/record", headers=auth)
    assert missing.status == 404


@pytest.mark.postgresql_only
async def test_postgresql_text_search_can_use_trigram_indexes(start_app, settings) -> None:
    _, gw = await start_app(settings, adapters={})

    def plan(tx) -> str:
        tx.execute("SET LOCAL enable_seqscan = off")  # a tiny table: make the choice visible
        rows = tx.all(
            "EXPLAIN SELECT incident_id FROM messages WHERE body ILIKE ?", ("%tono desde%",)
        )
        return "\n".join(str(next(iter(r.values()))) for r in rows)

    assert "messages_body_trgm" in await gw.store.transact(plan)
    names = await gw.store.read(
        lambda tx: {r["indexname"] for r in tx.all("SELECT indexname FROM pg_indexes")}
    )
    assert {"contacts_name_trgm", "contacts_phone_trgm", "events_kind", "events_at"} <= names


@pytest.mark.postgresql_only
async def test_postgresql_search_uses_the_partial_trigram_indexes(start_app, settings) -> None:
    """The contact and subject trigram indexes leave NULLs out (issue 19); the search's own
    SQL by name, and a subject match, still use them."""
    from gateway.web.forensics import contact_ids_sql

    _, gw = await start_app(settings, adapters={})

    def plan(tx, sql: str, params: list[str]) -> str:
        tx.execute("SET LOCAL enable_seqscan = off")
        rows = tx.all("EXPLAIN " + sql, params)
        return "\n".join(str(next(iter(r.values()))) for r in rows)

    def contacts(q: str):
        return lambda tx: plan(tx, *contact_ids_sql(tx, q))

    # (on a near-empty table the email and phone arms take the partial btrees on those
    # columns instead, with or without the trigram indexes: the planner's choice)
    assert "contacts_name_trgm" in await gw.store.transact(contacts("gonzalez"))
    subject = "SELECT id FROM incidents WHERE subject ILIKE ?"
    assert "incidents_subject_trgm" in await gw.store.transact(
        lambda tx: plan(tx, subject, ["%sin tono%"])
    )
    partial = await gw.store.read(
        lambda tx: tx.all(
            "SELECT indexname FROM pg_indexes WHERE indexname LIKE '%_trgm'"
            " AND indexdef LIKE '%IS NOT NULL%' ORDER BY 1"
        )
    )
    assert [r["indexname"] for r in partial] == [
        "contacts_email_trgm",
        "contacts_name_trgm",
        "contacts_phone_trgm",
        "incidents_subject_trgm",
    ]


async def test_the_printable_record_page_shows_the_same_record_in_spanish(
    start_app, settings
) -> None:
    client, gw = await start_app(settings, adapters={})
    await make_desk(gw, client)
    t = await _people(gw)
    assert await login(client, "ana") == 303
    resp = await client.get(f"/agent/incidents/{t['luis']}/expediente")
    assert resp.status == 200
    page = await resp.text()
    assert f"Expediente {t['luis']}" in page
    assert "Mensajes (1)" in page and "Factura" in page
    assert "Envíos e intentos (1)" in page and "luis.mora@example.com" in page
    events = page.split("<h2>Eventos")[1].split("<h2>")[0]
    assert "Registrado" in events  # the event kinds in Spanish
    missing = await client.get("/agent/incidents/CMW-0000000-0/expediente")
    assert missing.status == 404 and "no existe en sus colas" in await missing.text()
