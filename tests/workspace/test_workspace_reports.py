"""The supervisor's pages over HTTP on both databases: who may see them, the month at a glance
with its SVG charts and links to every breach, the month picker's bad input, the CSV links and
the printable penalty sheet; agents other than supervisors are refused."""

from __future__ import annotations

import re

from tests.web.test_web_reports import PENALTIES, generate
from tests.workspace.conftest import login


async def test_reports_pages_for_supervisors(start_app, make_settings, agent_token, clock) -> None:
    settings = make_settings(overrides={"penalties": PENALTIES})
    client, gw = await start_app(settings, adapters={})
    agent = await agent_token(gw, "ana", "l1")
    await agent_token(gw, "sofia", "supervisor")
    planned, special = await generate(client, gw, clock, agent)

    # An L1 agent: no link in the navigation, and the pages answer 403 in Spanish.
    assert await login(client, "ana") in (302, 303)
    queue = await (await client.get("/agent/")).text()
    assert "/agent/reportes" not in queue
    resp = await client.get("/agent/reportes?mes=2026-11")
    assert resp.status == 403 and "solo para supervisores" in await resp.text()
    resp = await client.get("/agent/reportes/penalizaciones?mes=2026-11")
    assert resp.status == 403
    await client.post("/agent/logout", data={})
    client.session.cookie_jar.clear()

    assert await login(client, "sofia") in (302, 303)
    queue = await (await client.get("/agent/")).text()
    assert 'href="/agent/reportes"' in queue
    resp = await client.get("/agent/reportes?mes=2026-11")
    html = await resp.text()
    assert resp.status == 200, html
    assert "Content-Security-Policy" in resp.headers
    for chart in ("chart-lines", "chart-weeks", "chart-severity", "chart-channel"):
        assert re.search(rf'<svg class="chart" id="{chart}" role="img"', html), chart
    assert "meta 98,0 %" in html
    breached = [p.tracking for p in planned if p.attention_late or p.solution_late]
    for tracking in [*breached, special["open"]]:
        assert f'href="/agent/incidents/{tracking}"' in html, tracking
    assert special["upgraded"] not in html  # met under the severity in force
    assert 'id="at-risk"' not in html or special["open"] in html
    assert "/api/v1/reports/sla?month=2026-11&amp;format=csv&amp;sheet=penalties" in html
    assert "estado al" in html  # the open-incidents rule is said on the page
    assert "noviembre de 2026" in html
    # The CSV buttons work with the session cookie.
    resp = await client.get("/api/v1/reports/sla?month=2026-11&format=csv&sheet=penalties")
    assert resp.status == 200 and resp.content_type == "text/csv"

    # Bad month or zone: a 400 page that says which field, never a 500.
    resp = await client.get("/agent/reportes?mes=2026-13")
    assert resp.status == 400 and "mes (AAAA-MM)" in await resp.text()
    resp = await client.get("/agent/reportes?mes=2026-11&zona=Mars/Base")
    assert resp.status == 400 and "zona horaria" in await resp.text()
    resp = await client.get("/agent/reportes/penalizaciones?mes=noviembre")
    assert resp.status == 400 and "mes (AAAA-MM)" in await resp.text()

    # The printable sheet: each site with its breached incidents and its discount.
    resp = await client.get("/agent/reportes/penalizaciones?mes=2026-11")
    sheet = await resp.text()
    assert resp.status == 200
    report = await (await client.get("/api/v1/reports/sla?month=2026-11")).json()
    for code, entry in report["penalties"]["by_line"].items():
        assert f'id="site-{code}"' in sheet
        shown = f"{entry['discount_percent']:.2f}".replace(".", ",")
        assert f"descuento {shown} %" in sheet, code
    assert f'href="/agent/incidents/{special["open"]}"' in sheet
    assert '<script src="/static/agent/reports.js"></script>' in sheet
