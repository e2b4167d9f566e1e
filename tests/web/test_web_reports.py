"""The monthly report and the penalty sheet over a generated month with known answers, through
the API on both databases: incidents registered, answered, resolved, re-rated and left waiting
by agents as the clock moves; the expected figures come from the plan, not from the engine.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.core.model import Contact, Inbound

MIN = timedelta(minutes=1)
PHONES = {
    "CR": "+5068888{:04d}",
    "MX": "+52551234{:04d}",
    "US": "+1305555{:04d}",
    "CA": "+1613555{:04d}",
}
# Tuesdays to Thursdays of November 2026 that are no holiday on any of these lines
# (US: 11th Veterans Day, 26th Thanksgiving; MX: 16th Revolution Day is a Monday).
DAYS = [3, 4, 5, 10, 12, 17, 18, 19, 24, 25]
# severity: (attend in time, attend late, resolve in time, resolve late) after registration at
# 10:00 local; S1/S2 run on 24x7 (1 h/3 h, 1.5 h/4 h), S3 on business hours (2 h/4 h) and 10:00
# + 5 h is still inside the day's 06:00-21:00.
OFFSETS = {
    "S1": (30 * MIN, 90 * MIN, 120 * MIN, 240 * MIN),
    "S2": (60 * MIN, 120 * MIN, 180 * MIN, 300 * MIN),
    "S3": (60 * MIN, 180 * MIN, 180 * MIN, 300 * MIN),
}
PENALTIES = {
    "per_breach": {"S1": 3.0, "S2": 2.0, "S3": 1.0, "S4": 0.5},
    "site_per_point": 0.1,
    "general_per_point": 1.0,
    "site_cap": 8.0,
    "general_cap": 10.0,
}
REPORT_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class Planned:
    line: str
    registered: datetime
    severity: str
    attention_late: bool
    solution_late: bool
    tracking: str = ""


def plan() -> list[Planned]:
    lines = list(PHONES)
    zones = {"CR": "America/Costa_Rica", "MX": "America/Mexico_City",
             "US": "America/New_York", "CA": "America/Toronto"}  # fmt: skip
    out = []
    for i in range(40):
        line = lines[i % 4]
        local = datetime(2026, 11, DAYS[i % 10], 10, i // 10, tzinfo=ZoneInfo(zones[line]))
        out.append(
            Planned(line, local.astimezone(UTC), ("S1", "S2", "S3")[i % 3], i % 5 == 0, i % 7 == 0)
        )
    return sorted(out, key=lambda p: p.registered)


def wa(pid: str, phone: str, severity: str, at: datetime) -> Inbound:
    return Inbound(
        received_at=at,
        channel="whatsapp",
        provider_id=pid,
        contact=Contact(phone=phone),
        text="La central no registra llamadas",
        thread_by_contact=False,
        acknowledge=False,
        severity=severity,
    )


async def post(client, path: str, token: str, body: dict) -> dict:
    resp = await client.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def act(client, clock, token, p: Planned, action: str, at: datetime, body: dict) -> None:
    clock.now = at
    await post(client, f"/api/v1/incidents/{p.tracking}/{action}", token, body)


RESOLVE = {"category": "consulta", "resolution": "Se reconfiguró la troncal"}


async def generate(client, gw, clock, token) -> tuple[list[Planned], dict[str, str]]:
    """The planned incidents plus four special ones; returns them and the specials' trackings."""
    planned = plan()
    for n, p in enumerate(planned):
        clock.now = p.registered
        receipt = await gw.intake.accept(
            wa(f"SM{n}", PHONES[p.line].format(n), p.severity, p.registered)
        )
        p.tracking = receipt.tracking
        a_ok, a_late, s_ok, s_late = OFFSETS[p.severity]
        attend = p.registered + (a_late if p.attention_late else a_ok)
        await act(client, clock, token, p, "reply", attend, {"text": "Revisamos su caso"})
        resolve = p.registered + (s_late if p.solution_late else s_ok)
        await act(client, clock, token, p, "resolve", resolve, RESOLVE)
    special: dict[str, str] = {}

    async def register(name: str, phone: str, severity: str, at: datetime) -> Planned:
        clock.now = at
        receipt = await gw.intake.accept(wa(f"SP-{name}", phone, severity, at))
        special[name] = receipt.tracking
        return Planned("", at, severity, False, False, receipt.tracking)

    # Re-rated S3 -> S1 after 1 h: due 11:30 and 13:15 by the severity in force (the final
    # severity counted from registration would have made the 11:10 answer late).
    reg = datetime(2026, 11, 26, 16, 0, tzinfo=UTC)  # 10:00 in Mexico City
    p = await register("upgraded", "+525599990001", "S3", reg)
    rerate = {"severity": "S1", "reason": "Caída total"}
    await act(client, clock, token, p, "severity", reg + 60 * MIN, rerate)
    await act(client, clock, token, p, "reply", reg + 70 * MIN, {"text": "Revisamos"})
    await act(client, clock, token, p, "resolve", reg + 180 * MIN, RESOLVE)
    # Waiting on the customer at report time: attention met, solution paused -> pending.
    reg = datetime(2026, 11, 27, 16, 0, tzinfo=UTC)
    p = await register("waiting", "+50688889901", "S1", reg)
    body = {"text": "¿Nos confirma el número?", "wait_for_customer": True}
    await act(client, clock, token, p, "reply", reg + 20 * MIN, body)
    # Open at month's end, never answered: both times breached at report time.
    await register("open", "+50688889902", "S1", datetime(2026, 11, 30, 22, 0, tzinfo=UTC))
    # 23:30 on October 31st in Mexico City (05:30 UTC on November 1st): October for the line.
    reg = datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    p = await register("october", "+525599990002", "S1", reg)
    await act(client, clock, token, p, "reply", reg + 10 * MIN, {"text": "Revisamos"})
    await act(client, clock, token, p, "resolve", reg + 60 * MIN, RESOLVE)
    clock.now = REPORT_AT
    return planned, special


def expected(planned: list[Planned]) -> dict:
    """Per line and severity: decided, met; breached severities; the generated ones only."""
    lines: dict[str, dict] = {}
    for p in planned:
        entry = lines.setdefault(p.line, {"incidents": 0, "met": 0, "breached": []})
        entry["incidents"] += 1
        if p.attention_late or p.solution_late:
            entry["breached"].append(p.severity)
        else:
            entry["met"] += 1
    return lines


async def test_generated_month_report_and_penalties(
    start_app, make_settings, agent_token, clock
) -> None:
    settings = make_settings(overrides={"penalties": PENALTIES})
    client, gw = await start_app(settings, adapters={})
    agent = await agent_token(gw, "ana", "l1")
    boss = await agent_token(gw, "jefa", "supervisor")
    planned, special = await generate(client, gw, clock, agent)
    want = expected(planned)
    # The specials: CR gets "waiting" (pending) and "open" (breached, S1); MX "upgraded" (met).
    want["CR"]["incidents"] += 1
    want["CR"]["breached"].append("S1")
    want["MX"]["incidents"] += 1
    want["MX"]["met"] += 1

    resp = await client.get(
        "/api/v1/reports/sla?month=2026-11", headers={"Authorization": f"Bearer {boss}"}
    )
    assert resp.status == 200, await resp.text()
    report = await resp.json()
    assert report["open_judged_at_report_time"] is True and "generated_at" in report
    assert report["generated_at"].startswith("2026-12-01T12:00")
    decided = sum(w["incidents"] for w in want.values())
    met = sum(w["met"] for w in want.values())
    overall = report["overall"]
    assert (overall["incidents"], overall["met"], overall["pending"]) == (decided, met, 1)
    assert overall["breached"] == decided - met
    assert overall["open"] == 2  # "waiting" and "open"
    assert overall["compliance"] == round(met / decided, 4)
    assert overall["gap"] == round(0.98 - met / decided, 4)
    for code, w in want.items():
        line = report["by_line"][code]
        assert (line["incidents"], line["met"]) == (w["incidents"], w["met"]), code
    assert "october" not in [i["tracking"] for i in report["incidents"]]
    trackings = {i["tracking"]: i for i in report["incidents"]}
    assert special["october"] not in trackings
    upgraded = trackings[special["upgraded"]]
    assert upgraded["state"] == "met" and upgraded["severity"] == "S1"
    assert upgraded["attention"]["due"].startswith("2026-11-26T17:30")
    assert upgraded["solution"]["due"].startswith("2026-11-26T19:15")
    assert [s for _, s in upgraded["severities"]] == ["S3", "S1"]
    waiting = trackings[special["waiting"]]
    assert (waiting["attention"]["state"], waiting["solution"]["state"]) == ("met", "pending")
    opened = trackings[special["open"]]
    assert opened["state"] == "breached" and opened["open"] is True
    assert opened["attention"]["overrun_minutes"] == 13 * 60  # due 23:00, report at 12:00
    # Every breached planned incident is in the breaches, late by the planned amount.
    breaches = {b["tracking"]: b for b in report["breaches"]}
    for p in planned:
        assert (p.tracking in breaches) == (p.attention_late or p.solution_late)
        if p.attention_late:
            _, a_late, *_ = OFFSETS[p.severity]
            budget = {"S1": 60, "S2": 90, "S3": 120}[p.severity]
            assert breaches[p.tracking]["attention_overrun_minutes"] == a_late / MIN - budget
    assert (
        report["by_severity"]["S3"]["incidents"]
        == sum(1 for p in planned if p.severity == "S3") + 0
    )  # "upgraded" is S1 now
    assert report["by_channel"]["whatsapp"]["incidents"] == decided
    assert report["by_level"]["L1"]["incidents"] == decided
    assert report["by_team"]["sin-equipo"]["incidents"] == decided

    # Penalties: per site, the breached incidents by severity, the site's gap, the cap.
    sheet = report["penalties"]
    assert sheet["rule"]["per_breach"]["S1"] == 3.0
    for code, w in want.items():
        entry = sheet["by_line"][code]
        compliance = round(w["met"] / w["incidents"], 4)
        points = round(max(0.0, 0.98 - compliance) * 100, 2)
        raw = sum(PENALTIES["per_breach"][s] for s in w["breached"]) + 0.1 * points
        assert entry["breached"] == len(w["breached"]), code
        assert entry["discount_percent"] == round(min(raw, 8.0), 2), code
        assert entry["capped"] == (raw > 8.0)
        assert {i["tracking"] for i in entry["incidents"]} <= set(breaches)
    general_points = round((0.98 - met / decided) * 100, 2)
    assert sheet["general"]["gap_points"] == round(0.98 * 100 - round(met / decided, 4) * 100, 2)
    assert sheet["general"]["discount_percent"] == round(min(general_points, 10.0), 2)

    # One zone for the whole company: October 31st 23:30 in Mexico is November in UTC.
    resp = await client.get(
        "/api/v1/reports/sla?month=2026-11&tz=UTC", headers={"Authorization": f"Bearer {boss}"}
    )
    utc_report = await resp.json()
    assert special["october"] in {i["tracking"] for i in utc_report["incidents"]}
    assert utc_report["overall"]["incidents"] == decided + 1
    resp = await client.get(
        "/api/v1/reports/sla?month=2026-11&tz=Mars/Base",
        headers={"Authorization": f"Bearer {boss}"},
    )
    assert resp.status == 400 and (await resp.json())["error"]["field"] == "tz"

    # The penalty sheet as CSV: one row per breached incident and one total per line.
    resp = await client.get(
        "/api/v1/reports/sla?month=2026-11&format=csv&sheet=penalties",
        headers={"Authorization": f"Bearer {boss}"},
    )
    assert resp.status == 200 and resp.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    totals = {r["line"]: r for r in rows if r["tracking"] == "TOTAL"}
    for code in want:
        assert float(totals[code]["percent"]) == sheet["by_line"][code]["discount_percent"]
    listed = [r["tracking"] for r in rows if r["tracking"].startswith("CMW-")]
    assert sorted(listed) == sorted(breaches)
    late_open = next(r for r in rows if r["tracking"] == special["open"])
    assert late_open["missed"] == "attention+solution" and late_open["severity"] == "S1"
