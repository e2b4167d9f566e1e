"""Agent replies out through Twilio's Messages API, the 24-hour window, status callbacks (T9)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

from adapters.twilio.status import register_call_status_handler
from tests.adapters.whatsapp.wa_kit import (
    ACCOUNT_SID,
    ADAPTERS,
    AUTH_TOKEN,
    PUBLIC_URL,
    WA_NUMBER,
    inbound_form,
    post_signed,
    sid,
    status_form,
)

WEBHOOK = "/webhooks/twilio/whatsapp"
STATUS = "/webhooks/twilio/status"
TRACKING = re.compile(r"CMW-[0-9]{7,}-[0-9]")


async def wait_for(check: Any) -> Any:
    """Poll until the background outbox worker has done its part (bounded)."""
    for _ in range(250):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.02)
    raise AssertionError("condition never became true")


async def open_incident(client: Any, phone: str = "+5215512345678") -> str:
    resp = await post_signed(client, WEBHOOK, inbound_form(phone))
    return TRACKING.search(await resp.text()).group(0)  # type: ignore[union-attr]


async def reply(client: Any, token: str, tracking: str, text: str) -> Any:
    return await client.post(
        f"/api/v1/incidents/{tracking}/reply",
        json={"text": text},
        headers={"Authorization": f"Bearer {token}"},
    )


async def out_message(gw: Any) -> dict[str, Any] | None:
    return await gw.store.read(
        lambda tx: tx.one("SELECT * FROM messages WHERE direction = 'out' ORDER BY id DESC")
    )


async def outbox_row(gw: Any) -> dict[str, Any] | None:
    return await gw.store.read(lambda tx: tx.one("SELECT * FROM outbox ORDER BY id DESC"))


async def sent_message(gw: Any) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        row = await out_message(gw)
        return row if row and row["external_ref"] else None

    return await wait_for(check)


async def test_reply_goes_out_and_status_callbacks_only_move_forward(
    wa, twilio_fake, agent_token
) -> None:
    client, gw = wa
    token = await agent_token(gw)
    tracking = await open_incident(client)
    resp = await reply(client, token, tracking, "Hola Ana, ¿puede reiniciar el equipo?")
    assert resp.status == 200
    message = await sent_message(gw)
    [form] = twilio_fake.sent
    assert form["From"] == f"whatsapp:{WA_NUMBER}"
    assert form["To"] == "whatsapp:+525512345678"
    assert form["Body"] == "Hola Ana, ¿puede reiniciar el equipo?"
    assert form["StatusCallback"] == PUBLIC_URL + STATUS
    message_sid = message["external_ref"]
    assert message_sid.startswith("SM") and message["delivery_status"] == "sent"
    for status in ("delivered", "sent", "queued", "read", "read", "delivered"):
        resp = await post_signed(client, STATUS, status_form(message_sid, status))
        assert resp.status == 200
    message = await out_message(gw)
    assert message and message["delivery_status"] == "read"  # never moved backwards
    body = await (
        await client.get(
            f"/api/v1/incidents/{tracking}", headers={"Authorization": f"Bearer {token}"}
        )
    ).json()
    assert body["messages"][-1]["delivery_status"] == "read"


async def test_failed_delivery_shows_twilio_error_code_to_agents(
    wa, twilio_fake, agent_token
) -> None:
    client, gw = wa
    token = await agent_token(gw)
    tracking = await open_incident(client)
    await reply(client, token, tracking, "Le escribimos por su caso")
    message_sid = (await sent_message(gw))["external_ref"]
    form = status_form(message_sid, "undelivered", ErrorCode="63016")
    assert (await post_signed(client, STATUS, form)).status == 200
    late = status_form(message_sid, "sent")
    assert (await post_signed(client, STATUS, late)).status == 200
    body = await (
        await client.get(
            f"/api/v1/incidents/{tracking}", headers={"Authorization": f"Bearer {token}"}
        )
    ).json()
    last = body["messages"][-1]
    assert last["delivery_status"] == "undelivered"
    assert last["delivery_error"].startswith("Twilio 63016: fuera de la ventana de 24 horas")
    [event] = [e for e in body["events"] if e["kind"] == "delivery_failed"]
    assert event["detail"]["error_code"] == "63016"
    assert event["detail"]["message_sid"] == message_sid


async def test_a_callback_before_the_sid_is_recorded_is_applied_later(
    wa, twilio_fake, agent_token, clock
) -> None:
    client, gw = wa
    token = await agent_token(gw)
    tracking = await open_incident(client)
    twilio_fake.early_callback = (str(client.make_url("")).rstrip("/"), "delivered")
    await reply(client, token, tracking, "Ya quedó resuelto")
    message = await sent_message(gw)
    assert message["delivery_status"] == "sent"  # the callback came too early to match
    clock.advance(minutes=1)
    gw.scheduler.wake()

    async def delivered() -> bool:
        row = await out_message(gw)
        return bool(row and row["delivery_status"] == "delivered")

    await wait_for(delivered)


async def test_unknown_sids_and_foreign_forms(wa, caplog) -> None:
    client, _ = wa
    caplog.set_level(logging.WARNING)
    resp = await post_signed(client, STATUS, status_form(sid(), "delivered"))
    assert resp.status == 200
    assert "unknown message" in caplog.text
    form = status_form(sid(), "delivered")
    del form["MessageSid"]
    resp = await post_signed(client, STATUS, form)
    assert resp.status == 400
    assert "MessageSid" in (await resp.json())["error"]["message"]


async def test_call_status_callbacks_reach_the_voice_handler(wa) -> None:
    client, gw = wa
    seen: list[dict[str, str]] = []

    async def handler(form: Any) -> None:
        seen.append(dict(form))

    register_call_status_handler(gw, handler)
    call_sid = sid("CA")
    form = status_form("x", "x")
    form.clear()
    for key, value in [
        ("Called", "+50688001122"),
        ("CallStatus", "completed"),
        ("Duration", "1"),
        ("CallSid", call_sid),
        ("From", "+50640004000"),
        ("Direction", "outbound-api"),
        ("CallDuration", "42"),
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("To", "+50688001122"),
    ]:
        form.add(key, value)
    resp = await post_signed(client, STATUS, form)
    assert resp.status == 200
    assert seen == [dict(form)]


async def test_outside_the_window_free_text_is_refused(wa, twilio_fake, agent_token, clock):
    client, gw = wa
    token = await agent_token(gw)
    tracking = await open_incident(client)
    clock.advance(hours=24, minutes=1)
    resp = await reply(client, token, tracking, "¿Sigue con el problema?")
    assert resp.status == 409
    error = (await resp.json())["error"]
    assert "24 horas" in error["message"] and "plantilla" in error["message"]
    assert await out_message(gw) is None and await outbox_row(gw) is None
    # The customer writes again: the window reopens.
    await post_signed(client, WEBHOOK, inbound_form("+5215512345678", "Sí, sigue igual"))
    assert (await reply(client, token, tracking, "Gracias, lo revisamos")).status == 200


async def test_outside_the_window_the_approved_template_is_used(
    start_app, make_settings, twilio_fake, agent_token, clock
) -> None:
    settings = make_settings(
        {"whatsapp": {"template_content_sid": "HX0123456789abcdef0123456789abcdef"}},
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        GATEWAY_PUBLIC_URL=PUBLIC_URL,
        TWILIO_API_BASE=twilio_fake.url,
    )
    client, gw = await start_app(settings, adapters=ADAPTERS)
    token = await agent_token(gw)
    tracking = await open_incident(client)
    clock.advance(hours=30)
    assert (await reply(client, token, tracking, "¿Sigue con el problema?")).status == 200
    await sent_message(gw)
    [form] = twilio_fake.sent
    assert form["ContentSid"] == "HX0123456789abcdef0123456789abcdef"
    assert json.loads(form["ContentVariables"]) == {"1": tracking}
    assert "Body" not in form
    events = await gw.store.read(
        lambda tx: tx.all("SELECT kind FROM events WHERE kind = 'whatsapp_template_used'")
    )
    assert len(events) == 1


async def test_rate_limits_and_server_errors_are_retried(
    wa, twilio_fake, agent_token, clock
) -> None:
    client, gw = wa
    token = await agent_token(gw)
    tracking = await open_incident(client)
    twilio_fake.modes = ["429", "500"]
    await reply(client, token, tracking, "Estamos revisando su línea")

    async def attempts(n: int) -> Any:
        row = await outbox_row(gw)
        return row if row and row["attempts"] >= n and row["status"] != "sending" else None

    row = await wait_for(lambda: attempts(1))
    assert row["status"] == "pending" and "429" in row["last_error"]
    clock.advance(minutes=1)
    gw.outbox.wake()
    row = await wait_for(lambda: attempts(2))
    assert row["status"] == "pending" and "500" in row["last_error"]
    clock.advance(minutes=5)
    gw.outbox.wake()
    message = await sent_message(gw)
    assert message["delivery_status"] == "sent" and len(twilio_fake.sent) == 3


async def test_an_invalid_number_fails_at_once_with_twilio_code(
    wa, twilio_fake, agent_token
) -> None:
    client, gw = wa
    token = await agent_token(gw)
    tracking = await open_incident(client)
    twilio_fake.modes = ["21211"]
    await reply(client, token, tracking, "Hola")

    async def dead() -> Any:
        row = await outbox_row(gw)
        return row if row and row["status"] == "dead" else None

    row = await wait_for(dead)
    assert row["attempts"] == 1 and "21211" in row["last_error"]
    message = await out_message(gw)
    assert message and message["delivery_status"] == "failed"
    assert "21211" in message["delivery_error"]


async def test_an_unreachable_twilio_is_retried(
    start_app, make_settings, agent_token, twilio_fake
) -> None:
    settings = make_settings(
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN,
        GATEWAY_PUBLIC_URL=PUBLIC_URL,
        TWILIO_API_BASE="http://127.0.0.1:9",  # discard port: nothing listens
    )
    client, gw = await start_app(settings, adapters=ADAPTERS)
    token = await agent_token(gw)
    tracking = await open_incident(client)
    await reply(client, token, tracking, "Hola")

    async def retried() -> Any:
        row = await outbox_row(gw)
        return row if row and row["attempts"] == 1 and row["status"] == "pending" else None

    row = await wait_for(retried)
    assert "Twilio unreachable" in row["last_error"]
