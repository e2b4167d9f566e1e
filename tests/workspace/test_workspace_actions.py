"""Life-cycle actions through the real HTTP API: every action, its events, SLA and errors."""

from __future__ import annotations

from datetime import timedelta

from gateway.core.timeutil import iso, parse_iso
from tests.workspace.conftest import whatsapp


async def _new(desk, pid="SM1", phone="+50688880001", **kw) -> str:
    return (await desk.gw.intake.accept(whatsapp(pid, phone, **kw))).tracking


async def test_claim_starts_initial_diagnosis(desk) -> None:
    t = await _new(desk)
    status, body = await desk.act("ana", t, "claim")
    assert status == 200
    assert body["status"] == "in_progress" and body["claimed_by"] == "ana"
    claimed = next(e for e in body["events"] if e["kind"] == "claimed")
    assert claimed["actor"] == "ana" and claimed["detail"]["phase"] == "diagnostico-inicial"
    assert claimed["at"] == iso(desk.gw.clock())


async def test_first_reply_meets_attention_and_goes_out_through_the_origin_channel(
    desk, clock
) -> None:
    t = await _new(desk)
    clock.advance(minutes=20)
    status, body = await desk.act("ana", t, "reply", {"text": "Hola, ya revisamos su línea."})
    assert status == 200
    assert body["sla"]["attended_at"] == iso(clock.now)
    assert body["status"] == "in_progress"
    out = [m for m in body["messages"] if m["direction"] == "out"]
    assert out[0]["body"] == "Hola, ya revisamos su línea." and out[0]["channel"] == "whatsapp"
    rows = await desk.gw.store.read(
        lambda tx: tx.all("SELECT * FROM outbox WHERE kind = 'reply' AND channel = 'whatsapp'")
    )
    assert [r["recipient"] for r in rows] == ["+50688880001"]
    assert "attended" in [e["kind"] for e in body["events"]]


async def test_wait_for_customer_pauses_the_solution_clock(desk, clock) -> None:
    t = await _new(desk, severity="S1")  # 24x7 clock: the pause moves solution_due 1:1
    _, before = await desk.get("ana", t)
    due = parse_iso(before["sla"]["solution_due"])
    status, body = await desk.act(
        "ana", t, "reply", {"text": "¿Puede reiniciar el equipo?", "wait_for_customer": True}
    )
    assert status == 200 and body["status"] == "waiting_customer" and body["sla"]["paused"]
    clock.advance(minutes=45)
    # The customer answers: back to in_progress, and the 45 paused minutes are not counted.
    await desk.gw.intake.accept(whatsapp("SM2", "+50688880001", text="Ya lo reinicié"))
    _, after = await desk.get("ana", t)
    assert after["status"] == "in_progress"
    assert parse_iso(after["sla"]["solution_due"]) == due + timedelta(minutes=45)
    status, body = await desk.act("ana", t, "reply", {"text": "x", "wait_for_customer": "yes"})
    assert status == 400 and body["error"]["field"] == "wait_for_customer"


async def test_note_is_internal_and_never_sent(desk) -> None:
    t = await _new(desk)
    status, body = await desk.act("ana", t, "note", {"text": "Cliente VIP, revisar contrato"})
    assert status == 200
    notes = [m for m in body["messages"] if m["direction"] == "note"]
    assert notes[0]["body"] == "Cliente VIP, revisar contrato" and notes[0]["author"] == "ana"
    outbox = await desk.gw.store.read(lambda tx: tx.all("SELECT kind FROM outbox"))
    assert [r["kind"] for r in outbox] == ["ack"]  # the intake's acknowledgement only
    assert body["sla"]["attended_at"] is None  # a note is not an answer to the customer
    status, body = await desk.act("ana", t, "note", {"text": "   "})
    assert status == 400 and body["error"]["field"] == "text"


async def test_severity_change_recomputes_both_due_times_by_the_severity_in_force(
    desk, clock
) -> None:
    t = await _new(desk)  # S3 by default
    _, before = await desk.get("ana", t)
    registered = parse_iso(before["registered_at"])
    clock.advance(minutes=10)
    status, body = await desk.act(
        "ana", t, "severity", {"severity": "S1", "reason": "sin servicio"}
    )
    assert status == 200 and body["severity"] == "S1"
    # 10 open minutes of S3 spent 1/12 of its 2 h attention and 1/24 of its 4 h solution; S1's
    # 24x7 clock spends the rest of its own 1 h and 3 h from the change on (the report's rule).
    changed = registered + timedelta(minutes=10)
    assert parse_iso(body["sla"]["attention_due"]) == changed + timedelta(minutes=55)
    assert parse_iso(body["sla"]["solution_due"]) == changed + timedelta(minutes=172, seconds=30)
    event = next(e for e in body["events"] if e["kind"] == "severity_changed")
    assert event["detail"] == {"from": "S3", "to": "S1", "reason": "sin servicio"}
    # The queue orders by the new deadline.
    other = await _new(desk, "SM9", "+50688880009", severity="S2")
    assert (await desk.queue("ana", "L1"))[:2] == [t, other]
    for payload, field in (
        ({"severity": "S1"}, "reason"),
        ({"severity": "S9", "reason": "x"}, "severity"),
        ({"reason": "x"}, "severity"),
    ):
        status, body = await desk.act("ana", t, "severity", payload)
        assert status == 400 and body["error"]["field"] == field
    status, body = await desk.act("ana", t, "severity", {"severity": "S1", "reason": "otra vez"})
    assert status == 409


async def test_escalation_moves_the_incident_between_queues_and_keeps_the_clocks(desk) -> None:
    t = await _new(desk)
    _, before = await desk.get("ana", t)
    assert t in await desk.queue("ana", "L1")
    status, body = await desk.act(
        "ana", t, "escalate", {"level": "L2", "team": "redes", "reason": "falla de red"}
    )
    assert status == 200 and body == {"tracking": t, "level": "L2", "visible": False}
    assert t not in await desk.queue("ana", "L1")
    assert t in await desk.queue("beto", "L2")
    status, after = await desk.get("beto", t)
    assert after["level"] == "L2" and after["team"] == "redes"
    assert after["sla"]["attention_due"] == before["sla"]["attention_due"]
    assert after["sla"]["solution_due"] == before["sla"]["solution_due"]
    event = next(e for e in after["events"] if e["kind"] == "escalated")
    assert event["actor"] == "ana"
    assert (
        event["detail"]["phase"] == "escalamiento" and event["detail"]["reason"] == "falla de red"
    )
    # L2 claims: the investigation phase begins.
    status, body = await desk.act("beto", t, "claim")
    assert [e["detail"].get("phase") for e in body["events"] if e["kind"] == "claimed"] == [
        "investigacion"
    ]
    # Down or sideways is refused; the L1 agent has lost access.
    assert (await desk.act("beto", t, "escalate", {"level": "L1", "reason": "x"}))[0] == 409
    assert (await desk.act("beto", t, "escalate", {"level": "L2", "reason": "x"}))[0] == 409
    assert (await desk.act("ana", t, "escalate", {"level": "L3", "reason": "x"}))[0] == 404
    status, body = await desk.act(
        "beto", t, "escalate", {"level": "L3", "team": "avanzado", "reason": "bug del equipo"}
    )
    assert status == 200 and body == {"tracking": t, "level": "L3", "visible": False}
    assert t in await desk.queue("carla", "L3")


async def test_escalation_input_errors(desk) -> None:
    t = await _new(desk)
    cases = [
        ({"level": "L2", "team": "redes"}, "reason"),
        ({"level": "L2", "team": "redes", "reason": " "}, "reason"),
        ({"level": "L7", "reason": "x"}, "level"),
        ({"level": "L2", "team": "nadie", "reason": "x"}, "team"),
        ({"level": "L2", "team": "avanzado", "reason": "x"}, "team"),  # an L3 team
        ({"reason": "x"}, "level"),
    ]
    for payload, field in cases:
        status, body = await desk.act("ana", t, "escalate", payload)
        assert status == 400, payload
        assert body["error"]["field"] == field, payload


async def test_resolve_close_reopen(desk) -> None:
    t = await _new(desk)
    assert (await desk.act("ana", t, "close"))[0] == 409  # not resolved yet
    assert (await desk.act("ana", t, "reopen"))[0] == 409  # not resolved or closed
    status, body = await desk.act("ana", t, "resolve", {"category": "otra", "resolution": "x"})
    assert status == 400 and body["error"]["field"] == "category"
    status, body = await desk.act("ana", t, "resolve", {"category": "configuracion"})
    assert status == 400 and body["error"]["field"] == "resolution"
    status, body = await desk.act(
        "ana", t, "resolve", {"category": "configuracion", "resolution": "Se reconfiguró el PBX"}
    )
    assert status == 200 and body["status"] == "resolved"
    assert body["category"] == "configuracion" and body["resolution"] == "Se reconfiguró el PBX"
    assert t not in await desk.queue("ana", "L1")
    again = {"category": "consulta", "resolution": "y"}
    assert (await desk.act("ana", t, "resolve", again))[0] == 409
    assert (await desk.act("ana", t, "reply", {"text": "hola"}))[0] == 409
    status, body = await desk.act("ana", t, "close")
    assert status == 200 and body["status"] == "closed"
    phases = [e["detail"].get("phase") for e in body["events"]]
    assert "resolucion-y-recuperacion" in phases and phases[-1] == "cierre"
    closed_at = await desk.gw.store.read(
        lambda tx: tx.one("SELECT closed_at FROM incidents WHERE tracking = ?", (t,))
    )
    assert closed_at["closed_at"] == iso(desk.gw.clock())
    assert (await desk.act("ana", t, "close"))[0] == 409
    assert (await desk.act("ana", t, "severity", {"severity": "S1", "reason": "x"}))[0] == 409
    status, body = await desk.act("ana", t, "reopen", {"reason": "el cliente llamó de nuevo"})
    assert status == 200 and body["status"] == "in_progress"
    assert body["sla"]["resolved_at"] is None
    assert t in await desk.queue("ana", "L1")


async def test_request_errors(desk) -> None:
    t = await _new(desk)
    client = desk.client
    resp = await client.post(f"/api/v1/incidents/{t}/claim")
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "unauthorized"
    resp = await client.post(f"/api/v1/incidents/{t}/claim", headers={"Authorization": "Bearer x"})
    assert resp.status == 401
    resp = await client.post(f"/api/v1/incidents/{t}/explode", headers=desk.auth("ana"))
    assert resp.status == 404
    status, body = await desk.act("ana", "CMW-9999999-0", "claim")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = await desk.act("ana", "no-such-thing", "claim")
    assert status == 404
    resp = await client.post(
        f"/api/v1/incidents/{t}/reply", data=b"{not json", headers=desk.auth("ana")
    )
    assert resp.status == 400 and (await resp.json())["error"]["field"] == "body"
    resp = await client.post(f"/api/v1/incidents/{t}/reply", json=[1], headers=desk.auth("ana"))
    assert resp.status == 400
    status, body = await desk.act("ana", t, "reply", {"text": 5})
    assert status == 400 and body["error"]["field"] == "text"
    status, body = await desk.act("ana", t, "reply", {})
    assert status == 400 and body["error"]["field"] == "text"


async def test_actions_publish_live_notices_after_commit(desk) -> None:
    t = await _new(desk)
    async with desk.gw.bus.subscribe() as queue:
        await desk.act("ana", t, "claim")
        notice = queue.get_nowait()
        assert notice["tracking"] == t and notice["action"] == "claim"
        await desk.act("ana", t, "escalate", {"level": "L2", "team": "redes", "reason": "red"})
        notice = queue.get_nowait()
        assert notice["event"] == "escalated"
        assert (notice["from_level"], notice["level"], notice["team"]) == ("L1", "L2", "redes")
        assert (await desk.act("ana", t, "claim"))[0] == 404
        assert queue.empty()  # nothing committed, nothing published
