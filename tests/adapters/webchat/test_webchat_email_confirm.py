"""An offline chat visitor gets replies by email only at an address they confirmed (issue #15).

Through the wire: the chat socket, the confirmation mail leaving through the outbox and the email
channel to a loopback relay, the emailed link opened over HTTP (a button, then POST), and the
agent's replies while the visitor is away.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from adapters.email import smtp as email_smtp
from adapters.webchat import ws as webchat_ws
from adapters.webchat.ws import HUB
from tests.adapters.email.conftest import Relay
from tests.adapters.webchat.chat_kit import (
    START,
    agent_reply,
    connect,
    frames_until,
    hello,
    start_chat,
    wait_for,
)
from tests.conftest import CLOSED_TIME

ADAPTERS = {"webchat": webchat_ws.setup, "email": email_smtp.setup}


async def email_rows(gw: Any, kind: str) -> list[dict[str, Any]]:
    return await gw.store.read(
        lambda tx: tx.all(
            "SELECT * FROM outbox WHERE channel = 'email' AND kind = ? ORDER BY id", (kind,)
        )
    )


async def wait_sent(gw: Any, kind: str) -> None:
    """Until the outbox has recorded the first `kind` mail as sent (5 s at most)."""
    async with asyncio.timeout(5):
        while (await email_rows(gw, kind))[0]["status"] != "sent":  # noqa: ASYNC110 - a row
            await asyncio.sleep(0.01)


async def test_replies_are_mailed_only_once_the_address_is_confirmed(
    start_app: Any, make_settings: Any, clock: Any
) -> None:
    clock.set(CLOSED_TIME)  # after hours: the visitor is told to expect mail
    relay = await Relay().start()
    try:
        settings = make_settings(GATEWAY_SMTP_RELAY=f"127.0.0.1:{relay.port}")
        client, gw = await start_app(settings, adapters=ADAPTERS)
        ws, _, ticket = await start_chat(client)
        assert "Le enviamos un enlace a ana@example.com" in ticket["notice"]
        [mail] = await relay.wait(1)
        assert mail["To"] == "ana@example.com" and mail["Auto-Submitted"] == "auto-generated"
        link = re.search(r"http://\S+/chat/confirm\?\S+", mail.get_content())
        assert link, mail.get_content()
        await ws.close()
        await wait_for(lambda: gw.app[HUB].visitors == {}, "the socket to be gone")
        # Not confirmed yet: the reply waits in the chat, nothing is mailed to the typed address.
        row = await agent_reply(gw, ticket["tracking"], "¿Sigue sin tono?")
        assert row["provider_id"] == "stored-for-replay" and await email_rows(gw, "reply") == []
        # The visitor opens the link: a button (a mail scanner's GET confirms nothing)...
        path = link.group(0).split("/chat/confirm", 1)[1]
        page = await client.get("/chat/confirm" + path)
        html = await page.text()
        assert page.status == 200 and "Confirmar mi correo" in html
        assert await email_rows(gw, "reply") == [] and await confirmed(gw) == []
        token = re.search(r'name="t" value="([^"]+)"', html).group(1)  # type: ignore[union-attr]
        done = await client.post("/chat/confirm?lang=es", data={"t": token})
        assert done.status == 200 and "su correo quedó confirmado" in await done.text()
        assert await confirmed(gw) == ["ana@example.com"]
        # ... and from then on an offline reply is mailed too.
        row = await agent_reply(gw, ticket["tracking"], "Le llamamos en 10 minutos.")
        assert row["provider_id"] == "email-fallback"
        [copy] = await email_rows(gw, "reply")
        assert copy["recipient"] == "ana@example.com"
        _, mailed = await relay.wait(2)  # the copy reaches the visitor's confirmed address
        assert mailed["To"] == "ana@example.com"
        assert "Le llamamos en 10 minutos." in mailed.get_body().get_content()  # type: ignore[union-attr]
        await wait_sent(gw, "reply")  # its send is over (no relay session left at the end)
        # A forged or stale link confirms nothing.
        bad = await client.post("/chat/confirm?lang=es", data={"t": "x" * 43})
        assert bad.status == 400 and "no es válido" in await bad.text()
    finally:
        await relay.aclose()


async def confirmed(gw: Any) -> list[str]:
    rows = await gw.store.read(
        lambda tx: tx.all("SELECT email FROM webchat_emails WHERE confirmed_at IS NOT NULL")
    )
    return [r["email"] for r in rows]


async def test_someone_elses_address_gets_one_confirmation_mail_and_no_replies(
    start_app: Any, make_settings: Any
) -> None:
    client, gw = await start_app(make_settings(), adapters=ADAPTERS)  # no relay: rows wait
    for n in range(3):  # a prankster types the victim's address again and again
        ws = await connect(client)
        await hello(ws)
        await ws.send_json({**START, "client_id": f"p-{n}", "email": "victima@example.com"})
        await frames_until(ws, "ticket")
        await ws.close()
    rows = await email_rows(gw, "confirm")
    assert [r["recipient"] for r in rows] == ["victima@example.com"]  # [email] ack_window
    assert await confirmed(gw) == []
