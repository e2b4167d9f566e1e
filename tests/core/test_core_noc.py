"""NOC alarm episodes end to end: the controllable clock, a real SMTP sink (aiosmtpd on
loopback) receiving the notices through the outbound relay, a loopback webhook receiver, and
the episodes listed by the API. Runs on both databases."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from aiohttp import web
from aiosmtpd.smtp import SMTP

from gateway.core import noc
from gateway.core.model import Contact, Inbound
from gateway.core.timeutil import iso
from tests.conftest import OPEN_TIME


@dataclass
class Sink:
    """A loopback SMTP server that keeps what it receives."""

    messages: list[tuple[list[str], EmailMessage]] = field(default_factory=list)
    server: Any = None
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = BytesParser(policy=policy.default).parsebytes(envelope.original_content)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 2.0.0 queued"

    async def wait(self, count: int) -> list[EmailMessage]:
        async with asyncio.timeout(5):
            while len(self.messages) < count:  # noqa: ASYNC110 - filled by the server
                await asyncio.sleep(0.01)
        return [m for _, m in self.messages]


@pytest.fixture
async def sink():
    s = Sink()
    loop = asyncio.get_running_loop()
    s.server = await loop.create_server(lambda: SMTP(s, hostname="sink.test"), "127.0.0.1", 0)
    s.port = s.server.sockets[0].getsockname()[1]
    yield s
    s.server.close()


@pytest.fixture
async def hook():
    """A loopback webhook receiver: returns (url, list of received JSON bodies)."""
    received: list[dict] = []

    async def post(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/hook", received
    await runner.cleanup()


def _alarms(sink: Sink, url: str) -> dict:
    return {
        "alarms": {
            "notify": ["noc@callmyway.com", "guardia@callmyway.com"],
            "webhook": url,
            "interval": "1d",  # the background slot stays far away: the test evaluates by hand
            "repeat": "1h",
            "at_risk": 0,
            "breached": 0,
            "outbox_age": "10m",
            "unattended": {"L1": "20m", "L2": "0", "L3": "0"},
        }
    }


async def _wait_hook(received: list, count: int) -> None:
    async with asyncio.timeout(5):
        while len(received) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_episode_notifies_once_repeats_and_recovers(
    start_app, make_settings, sink, hook, clock, agent_token
):
    url, received = hook
    settings = make_settings(_alarms(sink, url), GATEWAY_SMTP_RELAY=f"127.0.0.1:{sink.port}")
    client, gw = await start_app(settings, adapters={})  # no senders: the ack stays queued
    monitor = gw.app[noc.MONITOR]
    receipt = await gw.intake.accept(
        Inbound(
            channel="email",
            provider_id="<m1@example.com>",
            contact=Contact(name="Ana", email="ana@example.com"),
            text="Sin servicio",
            received_at=OPEN_TIME,
        )
    )
    assert await monitor.evaluate() == []  # just arrived: nothing to say

    clock.advance(minutes=25)
    opened = await monitor.evaluate()
    assert sorted((a.kind, a.key) for a in opened) == [
        ("open", "outbox_age:email"),
        ("open", "unattended:L1:CR"),
    ]
    [mail] = await sink.wait(1)
    assert sink.messages[0][0] == ["noc@callmyway.com", "guardia@callmyway.com"]
    assert mail["Subject"].startswith("[CallMyWay NOC] ALARMA: ")
    assert mail["Auto-Submitted"] == "auto-generated"
    assert "sin atender hace 25 min" in mail.get_content()
    await _wait_hook(received, 1)
    assert {n["event"] for n in received[0]["notices"]} == {"alarm"}

    clock.advance(minutes=30)  # still on, but notified 30 min ago: quiet
    assert await monitor.evaluate() == []
    clock.advance(minutes=30)  # an hour since the notice: again
    repeated = await monitor.evaluate()
    assert {a.kind for a in repeated} == {"repeat"} and len(repeated) == 2
    mails = await sink.wait(2)
    assert "(sigue)" in mails[1]["Subject"]

    # Someone attends the incident and the mail goes out: both alarms end with a notice.
    def fix(tx: Any) -> None:
        now = iso(clock())
        tx.execute(
            "UPDATE incidents SET attended_at = ? WHERE tracking = ?", (now, receipt.tracking)
        )
        tx.execute("UPDATE outbox SET status = 'sent', sent_at = ?", (now,))

    await gw.store.transact(fix)
    clock.advance(minutes=1)
    recovered = await monitor.evaluate()
    assert {a.kind for a in recovered} == {"recover"} and len(recovered) == 2
    mails = await sink.wait(3)
    assert mails[2]["Subject"].startswith("[CallMyWay NOC] NORMALIZADO")
    await _wait_hook(received, 3)
    assert {n["event"] for n in received[2]["notices"]} == {"recovery"}
    assert await monitor.evaluate() == []
    assert len(sink.messages) == 3

    # The episodes, as a supervisor lists them.
    auth = {"Authorization": f"Bearer {await agent_token(gw, 'sara', 'supervisor')}"}
    body = await (await client.get("/api/v1/alarms", headers=auth)).json()
    episodes = {e["key"]: e for e in body["alarms"]}
    assert set(episodes) == {"outbox_age:email", "unattended:L1:CR"}
    ep = episodes["unattended:L1:CR"]
    assert ep["open"] is False and ep["notices"] == 3
    assert ep["started_at"] == (OPEN_TIME.replace(minute=25)).isoformat(timespec="microseconds")
    assert (await (await client.get("/api/v1/alarms?state=open", headers=auth)).json())[
        "alarms"
    ] == []
    l1 = {"Authorization": f"Bearer {await agent_token(gw)}"}
    assert (await client.get("/api/v1/alarms", headers=l1)).status == 403


async def test_adapter_health_and_intake_failures_reach_the_evaluation(
    start_app, make_settings, sink, hook, clock
):
    url, _received = hook
    settings = make_settings(_alarms(sink, url), GATEWAY_SMTP_RELAY=f"127.0.0.1:{sink.port}")
    _, gw = await start_app(settings, adapters={})
    monitor = gw.app[noc.MONITOR]
    gw.providers.failed("twilio", "Twilio answered 503")
    await monitor.flush_signals()
    clock.advance(minutes=6)
    gw.providers.failed("twilio", "Twilio answered 503")
    gw.intake.temporary_failures += 5  # five intakes answered "try again" just now
    await monitor.flush_signals()
    keys = {a.key: a for a in await monitor.evaluate()}
    assert set(keys) == {"provider:twilio", "intake_failures"}
    assert keys["provider:twilio"].summary == "twilio: falla desde hace 6 min: Twilio answered 503"
    gw.providers.ok("twilio")
    clock.advance(minutes=6)  # the failures left the window
    await monitor.flush_signals()
    assert {(a.kind, a.key) for a in await monitor.evaluate()} == {
        ("recover", "provider:twilio"),
        ("recover", "intake_failures"),
    }
    await sink.wait(2)


async def test_database_alarm_works_without_the_database(
    start_app, make_settings, sink, hook, clock, agent_token
):
    url, _received = hook
    settings = make_settings(_alarms(sink, url), GATEWAY_SMTP_RELAY=f"127.0.0.1:{sink.port}")
    client, gw = await start_app(settings, adapters={})
    writable = {"ok": True}

    async def probe(store: Any) -> bool:  # swappable: gateway.core.health may provide one
        return writable["ok"]

    monitor = noc.AlarmMonitor(gw, probe)
    writable["ok"] = False
    assert [(a.kind, a.key) for a in await monitor.check_database()] == [("open", "database")]
    [mail] = await sink.wait(1)
    assert "la base de datos no acepta escrituras" in mail["Subject"]
    clock.advance(minutes=10)
    assert await monitor.check_database() == []
    clock.advance(hours=1)
    assert [a.kind for a in await monitor.check_database()] == ["repeat"]
    writable["ok"] = True
    assert [a.kind for a in await monitor.check_database()] == ["recover"]
    await sink.wait(3)
    auth = {"Authorization": f"Bearer {await agent_token(gw, 'sara', 'admin')}"}
    [stored] = (await (await client.get("/api/v1/alarms", headers=auth)).json())["alarms"]
    assert stored["key"] == "database" and stored["open"] is False and stored["notices"] == 3


@pytest.mark.postgresql_only
async def test_two_instances_evaluate_each_slot_once(start_app, make_settings, sink, hook, clock):
    from dataclasses import replace

    url, _ = hook
    tree = _alarms(sink, url)
    tree["alarms"]["interval"] = "1m"
    settings = make_settings(tree, GATEWAY_SMTP_RELAY=f"127.0.0.1:{sink.port}")
    _, gw1 = await start_app(replace(settings, instance="a"), adapters={})
    _, gw2 = await start_app(replace(settings, instance="b"), adapters={})
    await gw1.intake.accept(
        Inbound(
            channel="whatsapp",
            provider_id="SM1",
            contact=Contact(name="Ana", phone="+50688880001"),
            text="Sin servicio",
            received_at=OPEN_TIME,
        )
    )
    for gw in (gw1, gw2):  # both ask for the next slot's job: one row
        await gw.app[noc.MONITOR].schedule_next()
    clock.advance(minutes=25)
    ran = await asyncio.gather(gw1.scheduler.run_due_jobs(), gw2.scheduler.run_due_jobs())
    [mail] = await sink.wait(1)
    assert "unattended:L1:CR" in mail.get_content()
    await asyncio.sleep(1.5)  # the instances' own scheduler loops get their turn too
    assert len(sink.messages) == 1
    jobs = await gw1.store.read(
        lambda tx: tx.all("SELECT key, attempts FROM jobs WHERE kind = 'alarms' ORDER BY key")
    )
    assert jobs[0]["attempts"] == 1 and sum(ran) <= 1
