"""Typed contact data is a claim, never an identity (issue #15, checklist E13/W5).

Through the wire: a caller's incident from a signed (attested) Twilio voice webhook, then an
attacker's Click2Call form or chat pre-form naming the caller's phone with the attacker's email,
then mail over SMTP from that email quoting a range of sequential tracking numbers. None of it
may reach the caller's incident; the claims are shown to agents as unverified.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import aiosmtplib

from adapters.email import smtp as email_smtp
from adapters.webchat import ws as webchat_ws
from gateway.core.auth import add_user, hash_password
from gateway.core.tracking import format_tracking
from tests.adapters.twilio.voice_kit import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    VOICE_ADAPTERS,
    get_incident,
    post_signed,
    twiml,
    voice_form,
)
from tests.adapters.webchat.chat_kit import START, connect, frames_until, hello
from tests.workspace.conftest import PASSWORD, login

ADAPTERS = {**VOICE_ADAPTERS, "email": email_smtp.setup, "webchat": webchat_ws.setup}
VICTIM = "+50688887777"
CR_LINE = "+50640004000"
ATTACKER = "mallory@evil.example"
WEBSITE = "https://www.callmyway.com"


async def victims_call(client: Any, gw: Any) -> str:
    """The victim calls with full STIR/SHAKEN attestation: an incident of their proven phone."""
    form = voice_form("CA" + "1" * 32, VICTIM, CR_LINE, StirVerstat="TN-Validation-Passed-A")
    resp = await post_signed(client, "/webhooks/twilio/voice", form)
    assert resp.status == 200
    twiml(await resp.text())
    row = await gw.store.read(
        lambda tx: tx.one("SELECT tracking FROM incidents WHERE channel = 'voice'")
    )
    return str(row["tracking"])


async def mail(gw: Any, sender: str, subject: str, body: str = "Necesito el detalle") -> str:
    """Deliver a message over SMTP; returns the DATA reply text (it names the tracking number)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "soporte@callmyway.com"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{abs(hash((sender, subject)))}@evil.example>"
    msg.set_content(body)
    _, reply = await aiosmtplib.send(msg, hostname="127.0.0.1", port=gw.extras["smtp_port"])
    assert reply.startswith("2.0.0 Accepted as CMW-"), reply
    return reply.rsplit(" ", 1)[1]


def tracking_range(first: int, last: int) -> str:
    """'CMW-0000001-x CMW-0000002-y ...': every number an attacker can enumerate."""
    return " ".join(format_tracking(n) for n in range(first, last + 1))


async def incident_of(gw: Any, tracking: str) -> dict[str, Any]:
    return await gw.store.read(lambda tx: tx.incident_by_tracking(tracking))


async def messages_of(gw: Any, tracking: str) -> list[dict[str, Any]]:
    row = await incident_of(gw, tracking)
    return await gw.store.read(lambda tx: tx.messages(row["id"]))


async def test_click2call_claim_attack_reaches_nothing_of_the_victim(
    start_app: Any, voice_settings: Any, fake_twilio: Any, agent_token: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=ADAPTERS)
    victim = await victims_call(client, gw)
    # The attacker asks for a call-back to the victim's phone, giving the attacker's email.
    resp = await client.post(
        "/api/v1/click2call",
        json={"name": "Ana Solís", "phone": VICTIM, "email": ATTACKER},
        headers={"Origin": WEBSITE},
    )
    assert resp.status == 202, await resp.text()
    form_tracking = (await resp.json())["tracking"]
    # Then mails from that email, quoting every tracking number up to well past the victim's.
    answered = await mail(gw, ATTACKER, f"Re: {tracking_range(1, 20)}")
    assert answered not in (victim, form_tracking)
    assert [m["direction"] for m in await messages_of(gw, victim)] == ["in"]  # the call only
    contact = await gw.store.read(
        lambda tx: tx.contact(tx.incident_by_tracking(victim)["contact_id"])
    )
    assert contact["phone"] == VICTIM and contact["email"] is None  # nothing merged into it
    token = await agent_token(gw)
    # The form's data is there for the agent, marked as typed, not proven.
    form_incident = await get_incident(client, token, form_tracking)
    assert form_incident["contact"] == {
        "name": "Ana Solís",
        "email": ATTACKER,
        "phone": VICTIM,
        "telegram_chat_id": None,
        "claimed": ["name", "email", "phone"],
    }
    # The attacker's mail is an incident of its own, of a contact with only the mail's sender.
    own = await get_incident(client, token, answered)
    assert own["contact"]["email"] == ATTACKER and own["contact"]["phone"] is None
    assert own["contact"]["claimed"] == []


async def test_webchat_claim_attack_reaches_nothing_of_the_victim(
    start_app: Any, voice_settings: Any, fake_twilio: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=ADAPTERS)
    victim = await victims_call(client, gw)
    ws = await connect(client)
    await hello(ws)
    await ws.send_json({**START, "phone": VICTIM, "email": ATTACKER})
    _, ticket = await frames_until(ws, "ticket")
    assert ticket["tracking"] != victim
    # The chat visitor's contact holds its signed visitor id only; the typed data are claims.
    chat = await incident_of(gw, ticket["tracking"])
    chat_contact = await gw.store.read(lambda tx: tx.contact(chat["contact_id"]))
    assert chat_contact["email"] is None and chat_contact["phone"] is None
    assert chat_contact["visitor_id"]
    # A WhatsApp-like later contact from the victim's phone, or mail from the attacker quoting
    # the victim's number, never meets the chat's claims.
    answered = await mail(gw, ATTACKER, f"Consulta {victim}")
    assert answered not in (victim, ticket["tracking"])
    assert len(await messages_of(gw, victim)) == 1
    assert len(await messages_of(gw, ticket["tracking"])) == 1


async def test_a_quoted_range_of_tracking_numbers_joins_only_the_senders_own(
    start_app: Any, voice_settings: Any, fake_twilio: Any
) -> None:
    client, gw = await start_app(voice_settings(), adapters=ADAPTERS)
    victim = await victims_call(client, gw)
    mine = await mail(gw, "luis@cliente.example", "Sin tono en la central")
    # The same customer quoting a range that includes their own number joins their incident...
    joined = await mail(gw, "luis@cliente.example", f"Re: {tracking_range(1, 5)}")
    assert joined == mine
    # ... while the range from anyone else is a new incident, never the victim's or Luis's.
    other = await mail(gw, ATTACKER, f"Re: {tracking_range(1, 5)}")
    assert other not in (victim, mine)
    assert len(await messages_of(gw, victim)) == 1
    assert len(await messages_of(gw, mine)) == 2


async def test_the_incident_page_marks_claims_as_unverified(
    start_app: Any, make_settings: Any, fake_twilio: Any
) -> None:
    # Plain http public URL: the session cookie is not `Secure`, so the test client keeps it.
    settings = make_settings(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        TWILIO_API_BASE=fake_twilio.url,
    )
    client, gw = await start_app(settings, adapters=ADAPTERS)
    resp = await client.post(
        "/api/v1/click2call",
        json={"name": "Ana Solís", "phone": VICTIM, "email": ATTACKER},
        headers={"Origin": WEBSITE},
    )
    tracking = (await resp.json())["tracking"]
    now = gw.clock()

    def agent(tx: Any) -> None:
        user = add_user(tx, "ana", "l1", None, None, now)
        tx.execute(
            "UPDATE users SET password_hash = ? WHERE id = ?", (hash_password(PASSWORD), user.id)
        )

    await gw.store.transact(agent)
    assert await login(client, "ana") == 303
    page = await (await client.get(f"/agent/incidents/{tracking}")).text()
    assert page.count("(dato declarado, no verificado)") == 3
    assert ATTACKER in page and VICTIM in page
