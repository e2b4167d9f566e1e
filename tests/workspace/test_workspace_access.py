"""Access (checklist A1): a tracking number grants nothing; levels and roles decide."""

from __future__ import annotations

from tests.workspace.conftest import email, pdf, whatsapp


async def _escalated(desk, pid: str, phone: str, level: str, team: str) -> str:
    t = (await desk.gw.intake.accept(whatsapp(pid, phone))).tracking
    status, _ = await desk.act(
        "sofia", t, "escalate", {"level": level, "team": team, "reason": "r"}
    )
    assert status == 200
    return t


async def test_l1_cannot_read_or_act_on_an_l2_incident(desk) -> None:
    t = await _escalated(desk, "SM1", "+50688880001", "L2", "redes")
    status, body = await desk.get("ana", t)
    assert status == 404 and body["error"]["code"] == "not_found"
    for action, payload in (
        ("claim", None),
        ("reply", {"text": "hola"}),
        ("note", {"text": "x"}),
        ("severity", {"severity": "S1", "reason": "x"}),
        ("resolve", {"category": "consulta", "resolution": "x"}),
        ("close", None),
        ("reopen", None),
    ):
        status, body = await desk.act("ana", t, action, payload)
        assert status == 404, action
    # Nothing changed on the incident.
    status, body = await desk.get("beto", t)
    assert status == 200 and body["status"] == "in_progress" and body["claimed_by"] is None
    assert [m["direction"] for m in body["messages"]] == ["in"]


async def test_l2_member_sees_l2_only_with_own_team_first(desk) -> None:
    accounts = await _escalated(desk, "SM1", "+50688880001", "L2", "cuentas")
    network = await _escalated(desk, "SM2", "+50688880002", "L2", "redes")
    l3 = await _escalated(desk, "SM3", "+50688880003", "L3", "avanzado")
    l1 = (await desk.gw.intake.accept(whatsapp("SM4", "+50688880004"))).tracking
    assert await desk.queue("beto", "L2") == [network, accounts]  # redes first for beto
    assert await desk.queue("bea", "L2") == [accounts, network]  # cuentas first for bea
    for other in (l3, l1):
        assert (await desk.get("beto", other))[0] == 404
        assert (await desk.act("beto", other, "claim"))[0] == 404
    resp = await desk.client.get("/api/v1/queue?level=L3", headers=desk.auth("beto"))
    assert resp.status == 403
    # L3 sees its level only; the supervisor sees every level.
    assert await desk.queue("carla", "L3") == [l3]
    assert (await desk.get("carla", network))[0] == 404
    for t in (accounts, network, l3, l1):
        assert (await desk.get("sofia", t))[0] == 200


async def test_attachments_follow_the_incident_access(desk) -> None:
    r = await desk.gw.intake.accept(
        email("<m1@example.com>", "luis@example.com", "Adjunto factura", attachments=(pdf(),))
    )
    _, body = await desk.get("ana", r.tracking)
    url = body["messages"][0]["attachments"][0]["url"]
    resp = await desk.client.get(url, headers=desk.auth("ana"))
    assert resp.status == 200
    assert resp.headers["Content-Disposition"].startswith("attachment")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert (await desk.client.get(url, headers=desk.auth("beto"))).status == 404
    await desk.act("ana", r.tracking, "escalate", {"level": "L3", "reason": "firmware"})
    assert (await desk.client.get(url, headers=desk.auth("ana"))).status == 404
    assert (await desk.client.get(url, headers=desk.auth("carla"))).status == 200
