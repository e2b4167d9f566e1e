"""The quarantine through real SMTP and HTTP: backscatter (a DSN naming no mail we sent) and
mail whose processing failed are held for supervisors, never put in the L1 queue; a supervisor
releases (a normal contact, body extracted) or discards them (CONTRACT "Quarantine")."""

from __future__ import annotations

from typing import Any

from gateway.core import intake as intake_module
from tests.adapters.email.conftest import fixture, incident_json, mail, outbox_rows, send

UNKNOWN_DSN = fixture("dsn.eml").replace(b"{{ORIGINAL_ID}}", b"<not-ours@elsewhere.example>")


async def token(gw: Any, role: str = "supervisor", name: str = "sara") -> str:
    from gateway.core.auth import add_user, create_token

    now = gw.clock()

    def create(tx: Any) -> str:
        add_user(tx, name, role, None, None, now)
        return create_token(tx, name, now)

    return await gw.store.transact(create)


async def api(gw: Any, method: str, path: str, bearer: str) -> tuple[int, Any]:
    http = gw.extras["http"]
    resp = await http.request(method, path, headers={"Authorization": f"Bearer {bearer}"})
    return resp.status, await resp.json()


async def count(gw: Any, table: str) -> int:
    row = await gw.store.read(lambda tx: tx.one(f"SELECT count(*) AS n FROM {table}"))
    return int(row["n"])


async def test_backscatter_is_held_not_queued_and_a_retry_is_the_same_item(start_email, relay):
    gw = await start_email()
    for _ in range(2):  # the reporting MTA retries: still one item
        code, text = await send(gw, UNKNOWN_DSN, mail_from="")
        assert code == 250 and "CMW-" not in text
    assert await count(gw, "incidents") == 0 and await outbox_rows(gw) == []
    boss = await token(gw)
    status, body = await api(gw, "GET", "/api/v1/quarantine", boss)
    assert status == 200
    [item] = body["items"]
    assert set(item) == {"id", "channel", "received_at", "reason", "summary"}
    assert (item["channel"], item["reason"]) == ("email", "unmatched_bounce")
    assert "Undelivered Mail" in item["summary"]
    agent = await token(gw, "l1", "leo")
    assert (await api(gw, "GET", "/api/v1/quarantine", agent))[0] == 403
    status, queue = await api(gw, "GET", "/api/v1/queue?level=L1", agent)
    assert status == 200 and queue["incidents"] == []


async def test_release_makes_a_normal_contact_with_its_body_and_no_reply(start_email, relay):
    gw = await start_email()
    assert (await send(gw, UNKNOWN_DSN, mail_from=""))[0] == 250
    boss = await token(gw)
    [item] = (await api(gw, "GET", "/api/v1/quarantine", boss))[1]["items"]
    agent = await token(gw, "l1", "leo")
    assert (await api(gw, "POST", f"/api/v1/quarantine/{item['id']}/release", agent))[0] == 403
    status, done = await api(gw, "POST", f"/api/v1/quarantine/{item['id']}/release", boss)
    assert status == 200 and done["state"] == "released"
    incident = await incident_json(gw, done["tracking"])
    assert "User unknown" in incident["messages"][0]["body"]  # the body was extracted
    assert "body_pending" not in incident["flags"]
    assert (await api(gw, "GET", "/api/v1/quarantine", boss))[1]["items"] == []
    # Released twice (another tab): nothing held any more.
    assert (await api(gw, "POST", f"/api/v1/quarantine/{item['id']}/release", boss))[0] == 404
    assert await count(gw, "incidents") == 1
    assert await outbox_rows(gw) == []  # never an acknowledgement to a mailer daemon
    # The same DSN delivered again answers the incident it became.
    code, text = await send(gw, UNKNOWN_DSN, mail_from="")
    assert code == 250 and done["tracking"] in text and await count(gw, "incidents") == 1


async def test_discard_drops_the_item(start_email, relay):
    gw = await start_email()
    await send(gw, UNKNOWN_DSN, mail_from="")
    boss = await token(gw)
    [item] = (await api(gw, "GET", "/api/v1/quarantine", boss))[1]["items"]
    status, done = await api(gw, "POST", f"/api/v1/quarantine/{item['id']}/discard", boss)
    assert (status, done["state"]) == (200, "discarded")
    assert (await api(gw, "GET", "/api/v1/quarantine", boss))[1]["items"] == []
    assert (await api(gw, "POST", f"/api/v1/quarantine/{item['id']}/discard", boss))[0] == 404
    assert (await api(gw, "POST", "/api/v1/quarantine/99999/release", boss))[0] == 404
    assert await count(gw, "incidents") == 0


async def test_a_mail_whose_processing_failed_is_held_until_its_retry_succeeds(
    start_email, relay, monkeypatch
):
    gw = await start_email()
    real = intake_module.assign
    broken = {"on": True}

    def assign(*args: Any) -> Any:
        if broken["on"]:
            raise KeyError("routing table bug")
        return real(*args)

    monkeypatch.setattr(intake_module, "assign", assign)  # a bug in processing
    raw = mail(msgid="<fails@cliente.com>")
    code, _ = await send(gw, raw)
    assert code == 451  # kept, and the sender retries
    boss = await token(gw)
    [item] = (await api(gw, "GET", "/api/v1/quarantine", boss))[1]["items"]
    assert item["reason"] == "processing_failed" and "ana@cliente.com" in item["summary"]
    broken["on"] = False
    code, text = await send(gw, raw)  # the sender's retry, once the bug is gone
    assert code == 250 and "CMW-" in text
    assert (await api(gw, "GET", "/api/v1/quarantine", boss))[1]["items"] == []
    assert await count(gw, "incidents") == 1
