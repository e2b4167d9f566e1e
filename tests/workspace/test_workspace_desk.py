"""The workspace's own data over HTTP, on both databases: the queue's views and counts, unread
marks, each agent's time zone, canned replies and the typing signal."""

from __future__ import annotations

import json
import re
from typing import Any

from tests.workspace.conftest import csrf_of, email, login, whatsapp


def trackings(html: str) -> list[str]:
    return re.findall(r'<tr data-tracking="([^"]+)"', html)


async def test_views_counts_and_unread_marks(desk: Any, clock: Any) -> None:
    a = await desk.gw.intake.accept(whatsapp("SM1", "+50688880001"))
    clock.advance(minutes=1)
    b = await desk.gw.intake.accept(email("<m1@x>", "luis@example.com", "Factura"))
    client = desk.client
    await login(client, "ana")
    resp = await client.get("/agent/fragments/queue")
    assert json.loads(resp.headers["X-Queue-Counts"]) == {
        "mios": 0,
        "sin-asignar": 2,
        "abiertos": 2,
        "esperando": 0,
        "resueltos": 0,
    }
    html = await resp.text()
    assert html.count('data-unread="1"') == 2  # never looked at
    assert trackings(await (await client.get("/agent/?orden=recientes")).text()) == [
        b.tracking,
        a.tracking,
    ]

    await client.get(f"/agent/incidents/{a.tracking}")  # looked at it
    status, _ = await desk.act(
        "ana",
        a.tracking,
        "reply",
        {
            "text": "¿Reinició el equipo?",
            "wait_for_customer": True,
        },
    )
    assert status == 200
    await desk.act("ana", b.tracking, "resolve", {"category": "facturacion", "resolution": "ok"})
    resp = await client.get("/agent/fragments/queue?vista=mios")
    assert json.loads(resp.headers["X-Queue-Counts"]) == {
        "mios": 1,
        "sin-asignar": 0,
        "abiertos": 1,
        "esperando": 1,
        "resueltos": 1,
    }
    html = await resp.text()
    assert trackings(html) == [a.tracking] and 'data-unread="0"' in html
    assert "al cliente" in html  # the customer's turn: not counted as their wait
    assert trackings(await (await client.get("/agent/?vista=resueltos")).text()) == [b.tracking]
    assert trackings(await (await client.get("/agent/?vista=esperando")).text()) == [a.tracking]

    await desk.gw.intake.accept(whatsapp("SM2", "+50688880001", text="Sí, sigue igual"))
    html = await (await client.get("/agent/?vista=mios")).text()
    assert 'data-unread="1"' in html and "<title>(1) Cola L1" in html
    # Another agent's marks are their own.
    await login(client, "sofia")
    html = await (await client.get("/agent/fragments/queue?vista=resueltos")).text()
    assert 'data-unread="1"' in html


async def test_time_zone_preference_and_spanish_incident_page(desk: Any) -> None:
    r = await desk.gw.intake.accept(whatsapp("SM1", "+525541700000"))
    client = desk.client
    await login(client, "ana")
    html = await (await client.get(f"/agent/incidents/{r.tracking}")).text()
    assert "30/11/2026 09:00" in html and "hora de México (UTC−6)" in html
    assert "México" in html and "\\u" not in html and "routed" not in html
    page = await client.get("/agent/preferencias")
    csrf = csrf_of(await page.text())
    resp = await client.post("/agent/preferencias", data={"csrf": csrf, "timezone": "Mars/Base"})
    assert resp.status == 400 and "Elija una zona horaria" in await resp.text()
    resp = await client.post(
        "/agent/preferencias", data={"csrf": csrf, "timezone": "America/Santo_Domingo"}
    )
    assert resp.status == 200 and "Preferencias guardadas" in await resp.text()
    html = await (await client.get(f"/agent/incidents/{r.tracking}")).text()
    assert "30/11/2026 11:00" in html and "hora de República Dominicana (UTC−4)" in html


async def test_canned_replies_are_kept_by_supervisors(desk: Any) -> None:
    r = await desk.gw.intake.accept(whatsapp("SM1", "+50688880001", name="Eva"))
    client = desk.client
    await login(client, "ana")
    assert (await client.get("/agent/respuestas")).status == 403
    await login(client, "sofia")
    csrf = csrf_of(await (await client.get("/agent/respuestas")).text())
    form = {"csrf": csrf, "title": "Saludo", "language": "es", "body": "Hola {nombre}"}
    resp = await client.post("/agent/respuestas", data={**form, "body": "Hola {name}"})
    assert resp.status == 400 and "El marcador {name} no existe" in await resp.text()
    resp = await client.post("/agent/respuestas", data=form)
    assert resp.status == 200 and "Respuesta guardada" in await resp.text()
    en = {**form, "title": "Hello", "language": "en", "body": "Hello {nombre}, {seguimiento}"}
    await client.post("/agent/respuestas", data=en)
    html = await (await client.get(f"/agent/incidents/{r.tracking}")).text()
    data = json.loads(re.search(r'id="canned-data">(.*?)</script>', html, re.S).group(1))
    assert [(c["title"], c["text"]) for c in data] == [
        ("Saludo", "Hola Eva"),
        ("Hello", f"Hello Eva, {r.tracking}"),
    ]
    rows = await desk.gw.store.read(lambda tx: tx.all("SELECT id FROM canned_replies ORDER BY id"))
    resp = await client.post(
        "/agent/respuestas", data={"csrf": csrf, "id": str(rows[0]["id"]), "borrar": "1"}
    )
    assert resp.status == 200 and "Respuesta borrada" in await resp.text()
    left = await desk.gw.store.read(lambda tx: tx.all("SELECT title FROM canned_replies"))
    assert left == [{"title": "Hello"}]


async def test_typing_signal_checks_access(desk: Any) -> None:
    r = await desk.gw.intake.accept(whatsapp("SM1", "+50688880001"))
    resp = await desk.client.post(f"/agent/typing/{r.tracking}", headers=desk.auth("ana"))
    assert resp.status == 204  # a WhatsApp customer is not shown anything
    status, _ = await desk.act("ana", r.tracking, "escalate", {"level": "L2", "reason": "red"})
    assert status == 200
    resp = await desk.client.post(f"/agent/typing/{r.tracking}", headers=desk.auth("ana"))
    assert resp.status == 404  # out of her queues
