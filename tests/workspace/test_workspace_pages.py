"""The agent pages over HTTP: escaping, sanitised mail, Spanish errors, the live socket."""

from __future__ import annotations

import asyncio
import re

import pytest

from tests.workspace.conftest import csrf_of, email, image, login, pdf, png, whatsapp

XSS = '<img src=x onerror="window.__xss=1"><script>alert(1)</script>'


async def test_queue_page_escapes_customer_text_and_sets_a_strict_csp(desk) -> None:
    await desk.gw.intake.accept(whatsapp("SM1", "+50688880001", text=XSS, name="<b>Eva</b>"))
    await login(desk.client, "ana")
    resp = await desk.client.get("/agent/")
    html = await resp.text()
    assert "&lt;img src=x onerror=" in html and "&lt;b&gt;Eva&lt;/b&gt;" in html
    assert "<img src=x" not in html and "<script>alert" not in html
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "img-src 'self'" in csp and "'unsafe-inline'" not in csp
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert "WhatsApp" in html and '<td data-label="País">Costa Rica</td>' in html  # no "CR · +506"


async def test_queue_filters_and_after_hours_marker(desk, clock) -> None:
    from tests.conftest import CLOSED_TIME

    await desk.gw.intake.accept(whatsapp("SM1", "+50688880001", text="de día"))
    await desk.gw.intake.accept(email("<m@x>", "luis@example.com", "correo de día"))
    clock.set(CLOSED_TIME)
    await desk.gw.intake.accept(whatsapp("SM2", "+525541700000", text="de noche"))
    await login(desk.client, "ana")
    html = await (await desk.client.get("/agent/")).text()
    assert html.count('data-tracking="CMW-') == 3 and "fuera de horario" in html
    html = await (await desk.client.get("/agent/?channel=email")).text()
    assert html.count('data-tracking="CMW-') == 1 and "correo de día" not in html  # subject shown
    html = await (await desk.client.get("/agent/?country=MX")).text()
    assert html.count('data-tracking="CMW-') == 1 and ">México</td>" in html
    html = await (await desk.client.get("/agent/fragments/queue?channel=whatsapp")).text()
    assert html.count('data-tracking="CMW-') == 2


async def test_incident_page_shows_sanitised_mail_attachments_and_routing(desk) -> None:
    mail = (
        '<p>Hola <a href="javascript:alert(1)">aquí</a> <a href="https://ok.example/x">ok</a></p>'
        '<img src="http://tracker.example/p.gif"><script>alert(2)</script>'
        '<style>@import url(http://evil.example/x.css);</style><svg onload="alert(3)"></svg>'
    )
    r = await desk.gw.intake.accept(
        email("<m1@x>", "luis@example.com", "Hola aquí ok", html=mail, attachments=(pdf(),))
    )
    await login(desk.client, "ana")
    resp = await desk.client.get(f"/agent/incidents/{r.tracking}")
    html = await resp.text()
    assert resp.status == 200
    srcdoc = re.search(r'<iframe sandbox="" [^>]*srcdoc="([^"]*)"', html)
    assert srcdoc, "HTML mail is shown in a sandboxed frame"
    clean = srcdoc.group(1)
    for bad in ("javascript:", "tracker.example", "script", "@import", "onload", "<"):
        assert bad not in clean
    assert "https://ok.example/x" in clean
    assert 'download="factura.pdf"' in html and "/api/v1/attachments/" in html
    assert "Enrutamiento" in html and "<li>" in html
    assert "Registrado" in html and "Auditoría" in html


async def test_screenshots_are_previewed_and_everything_else_stays_a_download(desk) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'
    files = (
        image("captura.png", png(), "image/png"),
        image("disfrazado.png", b"<html><script>alert(1)</script></html>", "image/png"),
        image("logo.svg", svg, "image/svg+xml"),
        pdf(),
    )
    r = await desk.gw.intake.accept(whatsapp("SMimg", "+50688880077", attachments=files))
    await login(desk.client, "ana")
    html = await (await desk.client.get(f"/agent/incidents/{r.tracking}")).text()
    previews = re.findall(r'<img class="preview" src="([^"]+)"', html)
    assert len(previews) == 2  # the two declared PNGs; never the SVG or the PDF
    first = await desk.client.get(previews[0])
    assert first.status == 200 and first.headers["Content-Type"] == "image/png"
    assert first.headers["Content-Disposition"].startswith("inline")
    assert first.headers["X-Content-Type-Options"] == "nosniff"
    assert await first.read() == png()
    # A "PNG" whose bytes are HTML is only ever an opaque download, preview asked or not.
    fake = await desk.client.get(previews[1])
    assert fake.headers["Content-Type"] == "application/octet-stream"
    assert fake.headers["Content-Disposition"].startswith("attachment")
    svg_url = re.search(r'href="([^"]+)" download="logo.svg"', html).group(1)
    forced = await desk.client.get(svg_url + "?preview=1")
    assert forced.headers["Content-Type"] == "application/octet-stream"
    assert forced.headers["Content-Disposition"].startswith("attachment")


async def test_page_forms_run_actions_and_explain_refusals_in_spanish(desk) -> None:
    r = await desk.gw.intake.accept(whatsapp("SM1", "+50688880001"))
    client = desk.client
    await login(client, "ana")
    page = f"/agent/incidents/{r.tracking}"
    csrf = csrf_of(await (await client.get(page)).text())
    resp = await client.post(f"{page}/close", data={"csrf": csrf})
    assert resp.status == 409 and "Solo se puede cerrar un incidente resuelto" in await resp.text()
    resp = await client.post(f"{page}/reply", data={"csrf": csrf, "text": ""})
    assert resp.status == 400 and "Escriba el texto." in await resp.text()
    resp = await client.post(f"{page}/severity", data={"csrf": csrf, "severity": "S1"})
    assert resp.status == 400 and "Indique el motivo." in await resp.text()
    resp = await client.post(
        f"{page}/reply",
        data={"csrf": csrf, "text": "Revisamos", "wait_for_customer": "1"},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == f"{page}?hecho=reply"
    html = await (await client.get(resp.headers["Location"])).text()
    assert "Respuesta en cola de envío" in html and "esperando al cliente" in html
    resp = await client.post(
        f"{page}/escalate",
        data={"csrf": csrf, "level": "L2", "team": "redes", "reason": "red"},
        allow_redirects=False,
    )
    assert resp.status == 303 and resp.headers["Location"] == "/agent/?hecho=escalate"
    resp = await client.get(page)
    assert resp.status == 404 and "no existe en sus colas" in await resp.text()  # out of access


@pytest.mark.parametrize(
    "headers, query, status",
    [
        ({"Origin": "https://evil.example"}, "csrf={csrf}", 403),
        ({}, "csrf={csrf}", 403),  # a WebSocket handshake always carries Origin in browsers
        ({"Origin": "{origin}"}, "csrf=wrong", 403),
    ],
)
async def test_live_socket_refuses_cross_site_handshakes(desk, headers, query, status) -> None:
    await login(desk.client, "ana")
    csrf = csrf_of(await (await desk.client.get("/agent/")).text())
    origin = str(desk.client.make_url("/")).rstrip("/")
    headers = {k: v.format(origin=origin) for k, v in headers.items()}
    resp = await desk.client.get(
        "/agent/ws?" + query.format(csrf=csrf),
        headers={
            **headers,
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert resp.status == status


async def test_live_socket_relays_only_notices_the_agent_may_see(desk) -> None:
    client = desk.client
    await login(client, "ana")
    csrf = csrf_of(await (await client.get("/agent/")).text())
    origin = str(client.make_url("/")).rstrip("/")
    async with client.ws_connect(f"/agent/ws?csrf={csrf}", headers={"Origin": origin}) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        r = await desk.gw.intake.accept(whatsapp("SM1", "+50688880001"))
        frame = await ws.receive_json(timeout=5)
        assert frame == {"type": "incident", "event": "created", "tracking": r.tracking}
        other = await desk.gw.intake.accept(whatsapp("SM2", "+50688880002"))
        assert (await ws.receive_json(timeout=5))["tracking"] == other.tracking
        await desk.act("sofia", r.tracking, "escalate", {"level": "L2", "reason": "x"})
        frame = await ws.receive_json(timeout=5)
        assert (frame["event"], frame["level"], frame["team"]) == ("escalated", "L2", None)
        # Now purely L2 business: no frame for the L1 agent, the next one is SM3's.
        await desk.act("sofia", r.tracking, "claim")
        await desk.gw.intake.accept(whatsapp("SM3", "+50688880003"))
        frame = await ws.receive_json(timeout=5)
        assert frame["event"] == "created" and frame["tracking"] != r.tracking
        with pytest.raises(asyncio.TimeoutError):
            await ws.receive_json(timeout=0.2)


async def test_static_assets_and_unauthenticated_fragments(desk) -> None:
    resp = await desk.client.get("/static/agent/live.js")
    assert resp.status == 200 and "WebSocket" in await resp.text()
    assert (await desk.client.get("/agent/fragments/queue")).status == 401


async def test_find_by_tracking_number_still_checks_access(desk) -> None:
    mine = (await desk.gw.intake.accept(whatsapp("SM1", "+50688880001"))).tracking
    theirs = (await desk.gw.intake.accept(whatsapp("SM2", "+50688880002"))).tracking
    await desk.act("sofia", theirs, "escalate", {"level": "L3", "reason": "x"})
    client = desk.client
    await login(client, "ana")
    resp = await client.get(f"/agent/buscar?tracking={mine.lower()}", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == f"/agent/incidents/{mine}"
    resp = await client.get("/agent/buscar?tracking=CMW-123")
    assert resp.status == 400 and "no es un número de seguimiento válido" in await resp.text()
    resp = await client.get(f"/agent/buscar?tracking={theirs}")
    assert resp.status == 404 and "no existe en sus colas" in await resp.text()
