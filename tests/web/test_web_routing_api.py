"""Routing and SLA clocks seen through the running gateway: the API's country, line,
after_hours and sla fields equal what routing's pure functions give; breach watch; SLA report."""

from __future__ import annotations

from datetime import timedelta

from gateway.core.model import Contact, Inbound
from gateway.core.timeutil import iso
from routing.resolve import resolve_line
from routing.schedule import next_opening
from routing.sla import sla_due
from tests.conftest import CLOSED_TIME, OPEN_TIME
from tests.sqlplan import query_plan


def wa(pid: str, phone: str, **kw) -> Inbound:
    return Inbound(
        channel="whatsapp",
        provider_id=pid,
        contact=Contact(phone=phone),
        text="La central no registra llamadas",
        received_at=OPEN_TIME,
        thread_by_contact=True,
        acknowledge=False,
        **kw,
    )


async def get(client, path: str, token: str):
    resp = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    return resp.status, await resp.json()


async def test_api_fields_equal_routing_functions(start_app, settings, agent_token, clock):
    client, gw = await start_app(settings, adapters={})
    token = await agent_token(gw)
    cfg = settings.routing
    cases = [
        ("+13055550123", "US"),  # Miami area code: the US line
        ("+16135550123", "CA"),  # Ottawa: the Canadian line
        ("+18095550123", "DO"),  # NANP, Dominican Republic
        ("+5491155550000", "CR"),  # Argentina has no line: default line, flagged
    ]
    bodies = []
    for i, (phone, country) in enumerate(cases):
        r = await gw.intake.accept(wa(f"SM{i}", phone))
        status, body = await get(client, f"/api/v1/incidents/{r.tracking}", token)
        assert status == 200
        decision = resolve_line(cfg, phone=phone)
        due = sla_due(cfg, decision.line, "S3", clock.now)
        assert body["country"] == country == decision.line.code
        assert body["line"] == decision.line.number
        assert body["after_hours"] is False
        assert body["sla"]["attention_due"] == iso(due.attention_due)
        assert body["sla"]["solution_due"] == iso(due.solution_due)
        bodies.append(body)
    argentina = bodies[-1]
    assert "country_without_line" in argentina["flags"]
    assert argentina["routing"]["resolved_country"] == "AR"
    assert any("AR" in reason for reason in argentina["routing"]["reasons"])


async def test_after_hours_business_clock_starts_at_opening(
    start_app, settings, agent_token, clock
):
    clock.set(CLOSED_TIME)  # Sunday 23:00 in Costa Rica
    client, gw = await start_app(settings, adapters={})
    token = await agent_token(gw)
    line = settings.routing.lines["CR"]
    normal = await gw.intake.accept(wa("SMa", "+50688880000"))
    critical = await gw.intake.accept(wa("SMb", "+50688880001", severity="S1"))
    opening = next_opening(line, CLOSED_TIME)
    _, body = await get(client, f"/api/v1/incidents/{normal.tracking}", token)
    assert body["after_hours"] is True
    assert body["opens_at"] == iso(opening)
    assert body["sla"]["attention_due"] == iso(opening + timedelta(hours=2))  # business clock
    _, body = await get(client, f"/api/v1/incidents/{critical.tracking}", token)
    assert body["sla"]["attention_due"] == iso(CLOSED_TIME + timedelta(hours=1))  # 24x7
    _, queue = await get(client, "/api/v1/queue?level=L1", token)
    assert [i["tracking"] for i in queue["incidents"]] == [critical.tracking, normal.tracking]
    events = [e["kind"] for e in body["events"]]
    assert "after_hours" in events


async def test_breach_watch_marks_counts_and_shows(start_app, settings, agent_token, clock):
    client, gw = await start_app(settings, adapters={})
    token = await agent_token(gw)
    r = await gw.intake.accept(wa("SMz", "+50688889999", severity="S1"))
    _, body = await get(client, "/api/v1/queue?level=L1", token)
    assert body["incidents"][0]["sla"]["attention_at_risk"] is False
    clock.advance(minutes=50)
    _, body = await get(client, "/api/v1/queue?level=L1", token)
    assert body["incidents"][0]["sla"]["attention_at_risk"] is True
    clock.advance(minutes=15)
    found = await gw.scheduler.check_breaches()
    assert [(f["tracking"], f["kind"]) for f in found] == [(r.tracking, "attention")]
    assert await gw.scheduler.check_breaches() == []  # marked once
    _, body = await get(client, f"/api/v1/incidents/{r.tracking}", token)
    assert body["sla"]["attention_breached"] is True
    assert body["sla"]["solution_breached"] is False
    assert "attention_breached" in [e["kind"] for e in body["events"]]
    metrics = await (await client.get("/metrics")).text()
    assert 'gateway_sla_breaches_total{kind="attention",severity="S1"} 1.0' in metrics
    assert 'gateway_queue_depth{level="L1",line="CR"} 1.0' in metrics
    assert 'gateway_intakes_total{channel="whatsapp",outcome="new"} 1.0' in metrics


async def test_monthly_sla_report(start_app, settings, agent_token, clock) -> None:
    client, gw = await start_app(settings, adapters={})
    boss = await agent_token(gw, "jefa", "supervisor")
    l1 = await agent_token(gw, "ana", "l1")
    met = await gw.intake.accept(wa("SM1", "+50688881111", severity="S1"))
    late = await gw.intake.accept(
        wa("SM2", "+525512345678", severity="S1", subject="=HYPERLINK(1)")
    )
    open_ = await gw.intake.accept(wa("SM3", "+50688883333"))
    in_time = iso(clock.now + timedelta(minutes=30))
    too_late = iso(clock.now + timedelta(hours=5))

    def finish(tx):
        tx.execute(
            "UPDATE incidents SET attended_at = ?, resolved_at = ?, status = 'resolved'"
            " WHERE tracking = ?",
            (in_time, in_time, met.tracking),
        )
        tx.execute(
            "UPDATE incidents SET attended_at = ?, resolved_at = ?, status = 'resolved'"
            " WHERE tracking = ?",
            (in_time, too_late, late.tracking),
        )

    await gw.store.transact(finish)
    status, report = await get(client, "/api/v1/reports/sla?month=2026-11", boss)
    assert status == 200
    assert report["target"] == 0.98
    kept = ("incidents", "met", "pending", "compliance")  # the fields the contract names
    assert {k: report["overall"][k] for k in kept} == {
        "incidents": 2,
        "met": 1,
        "pending": 1,
        "compliance": 0.5,
    }
    assert report["by_line"]["MX"]["compliance"] == 0.0
    assert report["by_severity"]["S1"]["incidents"] == 2
    assert [b["tracking"] for b in report["breaches"]] == [late.tracking]
    assert report["breaches"][0]["solution_breached"] is True
    assert open_.tracking not in [b["tracking"] for b in report["breaches"]]
    resp = await client.get(
        "/api/v1/reports/sla?month=2026-11&format=csv", headers={"Authorization": f"Bearer {boss}"}
    )
    text = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/csv"
    assert '"\'=HYPERLINK(1)"' in text  # formula neutralised (CSV injection)
    assert (await get(client, "/api/v1/reports/sla?month=2026-11", l1))[0] == 403
    status, body = await get(client, "/api/v1/reports/sla?month=2026-13", boss)
    assert status == 400 and body["error"]["field"] == "month"
    _, empty = await get(client, "/api/v1/reports/sla?month=2026-10", boss)
    assert {k: empty["overall"][k] for k in kept} == {
        "incidents": 0,
        "met": 0,
        "pending": 0,
        "compliance": None,
    }


async def test_breach_watch_walks_the_open_incident_index(start_app, settings, clock) -> None:
    """Every 30 s on a database of a million incidents: never a full table scan."""
    from gateway.core.scheduler import mark_breaches

    _, gw = await start_app(settings, adapters={})
    executed: list[tuple[str, tuple]] = []

    def spy(tx):
        real = tx.all

        def all_(sql, params=()):
            executed.append((sql, tuple(params)))
            return real(sql, params)

        tx.all = all_
        try:
            return mark_breaches(tx, clock.now)
        finally:
            del tx.all

    await gw.store.transact(spy)
    updates = [(sql, p) for sql, p in executed if sql.startswith("UPDATE")]
    assert len(updates) == 2
    for sql, params in updates:
        plan = await gw.store.transact(lambda tx, q=sql, p=params: query_plan(tx, q, p))
        assert "incidents_queue" in plan, plan


async def test_a_late_first_reply_is_flagged_by_the_reply_itself(
    start_app, settings, agent_token, clock
) -> None:
    client, gw = await start_app(settings, adapters={})
    token = await agent_token(gw)
    r = await gw.intake.accept(wa("SMlate", "+50688887777", severity="S1"))
    clock.advance(minutes=61)  # attention was due after 1 h; the watch has not run yet
    resp = await client.post(
        f"/api/v1/incidents/{r.tracking}/reply",
        json={"text": "Hola, ya revisamos su central."},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status == 200, await resp.text()
    _, body = await get(client, f"/api/v1/incidents/{r.tracking}", token)
    assert body["sla"]["attention_breached"] is True
    assert body["sla"]["attended_at"] is not None
    assert [e["kind"] for e in body["events"]].count("attention_breached") == 1
    assert await gw.scheduler.check_breaches() == []  # nothing left for the watch
