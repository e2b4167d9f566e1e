"""Resolution by email: the notice through the relay, and the customer's quoted answer with
its 1-5 rating recorded as `csat` without reopening; a real answer reopens."""

from __future__ import annotations

from typing import Any

from tests.adapters.email.conftest import incident_json, mail, send, tracking_of


async def test_resolution_notice_by_email_and_the_rating_in_the_reply(
    start_email: Any, relay: Any
) -> None:
    gw = await start_email()
    code, text = await send(gw, mail(msgid="<r1@cliente.com>"))
    assert code == 250
    tracking = tracking_of(text)
    await relay.wait(1)  # the acknowledgement
    await incident_json(gw, tracking)  # creates the supervisor's token
    auth = {"Authorization": f"Bearer {gw.extras['test_token']}"}
    http = gw.extras["http"]
    resolved = {"category": "configuracion", "resolution": "Se corrigió el desvío de llamadas"}
    resp = await http.post(f"/api/v1/incidents/{tracking}/resolve", json=resolved, headers=auth)
    assert resp.status == 200, await resp.text()

    _, notice = await relay.wait(2)
    assert notice["Subject"] == f"[{tracking}] Su caso fue resuelto: Sin tono en la línea"
    assert notice["In-Reply-To"] == "<r1@cliente.com>"
    assert "Auto-Submitted" not in notice  # a person is asked a question: not an auto-reply
    body = notice.get_content()
    assert tracking in body and "del 1 (nada satisfecho) al 5 (muy satisfecho)" in body

    # The customer answers from their mail client, quoting our notice.
    quoted = "\n".join("> " + line for line in body.splitlines())
    answer = mail(
        subject=f"Re: {notice['Subject']}",
        body=f"4\n\nEl lun, 30 nov 2026 a las 10:00, Soporte CallMyWay escribió:\n{quoted}",
        headers={"In-Reply-To": notice["Message-ID"], "References": notice["Message-ID"]},
    )
    code, text = await send(gw, answer)
    assert code == 250 and tracking in text
    incident = await incident_json(gw, tracking)
    assert (incident["status"], incident["csat"]) == ("resolved", 4)
    assert incident["messages"][-1]["body"].startswith("4")

    # A reply that says more reopens the incident.
    again = mail(subject=f"Re: {notice['Subject']}", body="Sigue desviando a otro número.")
    code, _ = await send(gw, again)
    assert code == 250
    incident = await incident_json(gw, tracking)
    assert incident["status"] == "in_progress" and incident["csat"] == 4
