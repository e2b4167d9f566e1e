"""Inbound WhatsApp through the wire: new incident + TwiML, follow-ups, dedupe, concurrency, 503."""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from typing import Any

from gateway.app import create_app
from gateway.core.services import GW
from tests.adapters.whatsapp.wa_kit import (
    ACCOUNT_SID,
    ADAPTERS,
    AUTH_TOKEN,
    PUBLIC_URL,
    count,
    inbound_form,
    post_signed,
)
from tests.conftest import CLOSED_TIME
from tests.faults import Outage, Slow, make_store_with

PATH = "/webhooks/twilio/whatsapp"
TRACKING = re.compile(r"CMW-[0-9]{7,}-[0-9]")


def reply_of(xml: str) -> str | None:
    """The text of the TwiML <Message>, or None for an empty <Response/>."""
    root = ET.fromstring(xml)
    assert root.tag == "Response"
    message = root.find("Message")
    return None if message is None else (message.text or "")


async def _incident(client: Any, gw: Any, agent_token: Any, tracking: str) -> dict[str, Any]:
    token = await agent_token(gw)
    resp = await client.get(
        f"/api/v1/incidents/{tracking}", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 200
    return await resp.json()


async def test_first_message_opens_an_incident_and_answers_in_spanish(wa, agent_token) -> None:
    client, gw = wa
    resp = await post_signed(client, PATH, inbound_form("+5215512345678"))
    assert resp.status == 200
    assert resp.content_type in ("application/xml", "text/xml")
    text = reply_of(await resp.text())
    assert text is not None and text.startswith("Hola Ana Pérez, gracias por contactar")
    tracking = TRACKING.search(text).group(0)  # type: ignore[union-attr]
    assert "fuera de nuestro horario" not in text
    body = await _incident(client, gw, agent_token, tracking)
    assert body["channel"] == "whatsapp" and body["country"] == "MX"
    assert body["contact"]["phone"] == "+525512345678"  # WhatsApp's +521 form normalized
    assert body["contact"]["name"] == "Ana Pérez"
    assert body["messages"][0]["body"].startswith("Hola, no tengo tono")


async def test_follow_ups_join_the_open_incident_without_reply_spam(wa, agent_token) -> None:
    client, gw = wa
    first = await post_signed(client, PATH, inbound_form("+50688001122"))
    tracking = TRACKING.search(await first.text()).group(0)  # type: ignore[union-attr]
    for text in ("Ya reinicié el router", "Sigue igual"):
        resp = await post_signed(client, PATH, inbound_form("+50688001122", text))
        assert resp.status == 200
        assert reply_of(await resp.text()) is None  # empty <Response/>
    body = await _incident(client, gw, agent_token, tracking)
    assert body["country"] == "CR"
    assert [m["body"] for m in body["messages"]][1:] == ["Ya reinicié el router", "Sigue igual"]
    assert await count(gw, "incidents") == 1


async def test_a_retried_message_sid_gets_the_same_answer_once_stored(wa) -> None:
    client, gw = wa
    form = inbound_form("+50688001122")
    first = await (await post_signed(client, PATH, form)).text()
    again = await (await post_signed(client, PATH, form)).text()
    assert again == first and reply_of(first)
    follow = inbound_form("+50688001122", "otra cosa")
    answers = [await (await post_signed(client, PATH, follow)).text() for _ in range(2)]
    assert [reply_of(a) for a in answers] == [None, None]
    # Twilio retrying concurrently (slow first answer): still one stored message.
    late = inbound_form("+50688001122", "tercer mensaje")
    results = await asyncio.gather(*(post_signed(client, PATH, late) for _ in range(5)))
    assert {r.status for r in results} == {200}
    assert await count(gw, "messages") == 3
    assert await count(gw, "receipts") == 3
    assert await count(gw, "incidents") == 1


async def test_concurrent_first_messages_from_one_number_make_one_incident(wa) -> None:
    client, gw = wa
    forms = [inbound_form("+50377778888", f"mensaje {i}") for i in range(8)]
    results = await asyncio.gather(*(post_signed(client, PATH, f) for f in forms))
    texts = [reply_of(await r.text()) for r in results]
    assert [r.status for r in results] == [200] * 8
    assert len([t for t in texts if t]) == 1  # one acknowledgement, seven silent follow-ups
    assert await count(gw, "incidents") == 1
    assert await count(gw, "messages") == 8


async def test_after_hours_the_answer_says_when_we_open(wa, clock) -> None:
    client, _ = wa
    clock.set(CLOSED_TIME)  # Sunday 23:00 in Costa Rica
    resp = await post_signed(client, PATH, inbound_form("+50688001122"))
    text = reply_of(await resp.text())
    assert text is not None and TRACKING.search(text)
    assert "fuera de nuestro horario de atención" in text
    assert "lunes a viernes de 06:00 a 21:00" in text
    assert "Abrimos el lunes 30/11/2026 a las 06:00, hora de Costa Rica" in text


async def test_an_english_line_answers_in_english(wa) -> None:
    client, _ = wa
    form = inbound_form("+13055550123", "Hello, my phone line has no dial tone since this morning")
    text = reply_of(await (await post_signed(client, PATH, form)).text())
    assert text is not None and text.startswith("Hello Ana Pérez, thank you")
    assert "tracking number CMW-" in text


async def test_a_store_that_cannot_commit_answers_503_so_twilio_retries(
    aiohttp_client, wa_settings, clock
) -> None:
    store = make_store_with(wa_settings, Outage)
    app = create_app(wa_settings, clock=clock, store=store, adapters=ADAPTERS)
    client = await aiohttp_client(app)
    form = inbound_form("+50688001122")
    store.down = True
    resp = await post_signed(client, PATH, form)
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert "<Response" not in await resp.text()
    store.down = False
    assert await count(app[GW], "receipts") == 0
    resp = await post_signed(client, PATH, form)  # Twilio's retry / the fallback URL
    assert resp.status == 200 and TRACKING.search(await resp.text())
    assert await count(app[GW], "incidents") == 1


async def test_a_slow_webhook_is_logged_and_its_retry_deduplicated(
    aiohttp_client, make_settings, twilio_fake, clock, caplog
) -> None:
    """Checklist T6: a webhook answered after Twilio may have given up is logged; the retry
    Twilio then sends is answered from the stored receipt, one incident."""
    settings = make_settings(
        {"gateway": {"slow_webhook": "0.2s"}},
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        GATEWAY_PUBLIC_URL=PUBLIC_URL,
        TWILIO_API_BASE=twilio_fake.url,
    )
    store = make_store_with(settings, Slow)
    client = await aiohttp_client(create_app(settings, clock=clock, store=store, adapters=ADAPTERS))
    form = inbound_form("+50688001188")
    store.delay = 0.3
    first = await post_signed(client, PATH, form)
    assert first.status == 200
    assert "slow webhook: POST /webhooks/twilio/whatsapp answered 200 after 0." in caplog.text
    caplog.clear()
    store.delay = 0.0
    again = await post_signed(client, PATH, form)
    assert again.status == 200 and await again.text() == await first.text()
    assert "slow webhook" not in caplog.text  # a quick answer is not logged
    assert await count(client.app[GW], "incidents") == 1
