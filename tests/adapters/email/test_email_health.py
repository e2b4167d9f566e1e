"""The SMTP relay's health as the NOC sees it (last ok / last error of provider "smtp"), and the
delivery attempts in an incident's complete record."""

from __future__ import annotations

from gateway.core.auth import add_user, create_token
from tests.adapters.email.conftest import Relay, attempted, free_port, mail, send, tracking_of


async def test_relay_failure_and_recovery_are_recorded(start_email, clock) -> None:
    port = free_port()
    gw = await start_email(GATEWAY_SMTP_RELAY=f"127.0.0.1:{port}")
    code, text = await send(gw, mail())
    assert code == 250
    tracking = tracking_of(text)
    await attempted(gw)
    down = gw.providers.states["smtp"]
    assert down.last_ok is None and down.failing_since == clock.now
    assert "relay unreachable" in (down.error or "")
    relay = await Relay(port=port).start()
    try:
        clock.advance(minutes=20)
        await gw.outbox.drain_once()
        await relay.wait(1)
    finally:
        await relay.aclose()
    up = gw.providers.states["smtp"]
    assert up.last_ok == clock.now and up.failing_since is None and up.last_error is not None

    now = clock.now

    def token(tx) -> str:
        add_user(tx, "ana", "l1", None, "correct horse battery", now)
        return create_token(tx, "ana", now)

    auth = {"Authorization": f"Bearer {await gw.store.transact(token)}"}
    http = gw.extras["http"]
    record = await (await http.get(f"/api/v1/incidents/{tracking}/record", headers=auth)).json()
    [ack] = [d for d in record["deliveries"] if d["kind"] == "ack"]
    assert ack["status"] == "sent" and ack["attempts"] == 2
    assert [t["ok"] for t in ack["tries"]] == [False, True]
    assert "relay unreachable" in ack["tries"][0]["error"]
