"""Fixtures of the email tests: the gateway with its SMTP listener on port 0, a capturing relay.

The relay is a real aiosmtpd server on the test's loop (loopback, port 0) that records what the
gateway sends or answers 451/550 on demand; clients speak SMTP through aiosmtplib.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.smtp import SMTP

from adapters.email import smtp as email_smtp
from gateway.core.auth import add_user, create_token
from gateway.core.services import Gateway

FIXTURES = Path(__file__).with_name("fixtures")
SUPPORT = "soporte@callmyway.com"


def free_port() -> int:
    """A loopback port nobody listens on (for a relay that is down, then comes up)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Relay:
    """A loopback SMTP relay that captures messages; `answer` forces a reply to DATA."""

    port: int = 0
    answer: str | None = None
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)
    ehlo_names: list[str] = field(default_factory=list)  # the client's EHLO name, per message
    sessions: list[Any] = field(default_factory=list)  # SMTP sessions opened to this relay
    server: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.answer:
            return self.answer
        msg = BytesParser(policy=policy.default).parsebytes(envelope.original_content)
        self.ehlo_names.append(session.host_name)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))
        return "250 2.0.0 queued"

    async def start(self) -> Relay:
        loop = asyncio.get_running_loop()

        def session() -> SMTP:
            protocol = SMTP(self, hostname="relay.test", loop=loop)
            self.sessions.append(protocol)
            return protocol

        self.server = await loop.create_server(session, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Stop listening (sessions still open stay: `aclose` ends them too)."""
        if self.server is not None:
            self.server.close()
            self.server = None

    async def aclose(self) -> None:
        """Stop listening and end the sessions still open: a mail the gateway is still sending
        when a test ends must not leave its socket to the garbage collector."""
        self.stop()
        for protocol in self.sessions:
            transport = getattr(protocol, "transport", None)
            if transport is not None:
                transport.abort()
        self.sessions.clear()
        for _ in range(3):  # the transports close their sockets on the next loop turns
            await asyncio.sleep(0)

    async def wait(self, count: int, seconds: float = 5.0) -> list[EmailMessage]:
        """The captured messages once there are `count` (fails after `seconds`)."""
        async with asyncio.timeout(seconds):
            while len(self.messages) < count:  # noqa: ASYNC110 - filled by the server
                await asyncio.sleep(0.01)
        return [m for _, _, m in self.messages]


@pytest.fixture
async def relay():
    r = await Relay().start()
    yield r
    await r.aclose()


@pytest.fixture
def start_email(start_app, make_settings, relay) -> Callable[..., Any]:
    """await start_email(overrides=None, relay=True, resolver=None, **env) -> gw with SMTP on
    gw.extras; `resolver` is the fake DNS of sender authentication (empty by default)."""

    async def start(
        overrides: dict | None = None, *, with_relay: bool = True, resolver: Any = None, **env: str
    ):
        if with_relay and "GATEWAY_SMTP_RELAY" not in env:
            env["GATEWAY_SMTP_RELAY"] = f"127.0.0.1:{relay.port}"
        settings = make_settings(overrides, **env)
        client, gw = await start_app(
            settings, adapters={"email": email_smtp.setup}, resolver=resolver
        )
        gw.extras["http"] = client  # the agent API of this gateway, for assertions
        return gw

    return start


def mail(
    subject: str = "Sin tono en la línea",
    body: str = "Hola, no tengo tono en mi teléfono desde esta mañana. Por favor ayuda.",
    *,
    sender: str = "Ana Pérez <ana@cliente.com>",
    msgid: str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A plain UTF-8 customer mail to soporte@ as raw bytes."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Message-ID"] = msgid or make_msgid(domain="cliente.com")
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    return msg.as_bytes(policy=policy.SMTP)  # CRLF, as it travels


def fixture(name: str) -> bytes:
    """A corpus message, with CRLF line ends as it would travel over SMTP."""
    data = (FIXTURES / name).read_bytes()
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    if lines and lines[0].startswith(b"#"):  # the corpus files start with a comment line
        lines = lines[1:]
    return b"\r\n".join(lines)


async def send(
    gw: Gateway,
    raw: bytes,
    *,
    mail_from: str = "ana@cliente.com",
    rcpt: tuple[str, ...] = (SUPPORT,),
) -> tuple[int, str]:
    """One SMTP transaction against the gateway: (code, text) of the reply to DATA (or earlier)."""
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=gw.extras["smtp_port"], timeout=10)
    await client.connect()
    try:
        await client.ehlo()
        resp = await client.execute_command(b"MAIL", f"FROM:<{mail_from}>".encode())
        if resp.code != 250:
            return resp.code, resp.message
        for to in rcpt:
            resp = await client.execute_command(b"RCPT", f"TO:<{to}>".encode())
            if resp.code != 250:
                return resp.code, resp.message
        try:
            resp = await client.data(raw)
        except aiosmtplib.SMTPResponseException as exc:
            return exc.code, exc.message
        return resp.code, resp.message
    finally:
        if client.is_connected:
            client.close()


def tracking_of(text: str) -> str:
    """The tracking number in a '250 2.0.0 Accepted as CMW-…' reply."""
    assert "Accepted as CMW-" in text, text
    return text.rsplit(" ", 1)[-1]


async def incident_json(gw: Gateway, tracking: str) -> dict[str, Any]:
    """The incident as agents see it through GET /api/v1/incidents/{tracking}."""
    await gw.extras["email_extractor"].idle()
    token = gw.extras.get("test_token")
    if token is None:
        now = gw.clock()

        def create(tx: Any) -> str:
            add_user(tx, "lucia", "supervisor", None, None, now)  # no password: no argon2 cost
            return create_token(tx, "lucia", now)

        token = gw.extras["test_token"] = await gw.store.transact(create)
    resp = await gw.extras["http"].get(
        f"/api/v1/incidents/{tracking}", headers={"Authorization": f"Bearer {token}"}
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def outbox_rows(gw: Gateway) -> list[dict[str, Any]]:
    """Every outbox row (kind, recipient, status, provider_id), oldest first."""
    return await gw.store.read(
        lambda tx: tx.all("SELECT * FROM outbox WHERE channel = 'email' ORDER BY id")
    )


async def delivered(gw: Gateway, count: int, seconds: float = 5.0) -> list[dict[str, Any]]:
    """The outbox rows once `count` of them are recorded as sent (fails after `seconds`)."""
    async with asyncio.timeout(seconds):
        while True:
            rows = await outbox_rows(gw)
            if sum(r["status"] == "sent" for r in rows) >= count:
                return rows
            await asyncio.sleep(0.01)


async def attempted(gw: Gateway, attempts: int = 1, seconds: float = 5.0) -> dict[str, Any]:
    """The single outbox row once it has been tried `attempts` times and is not being sent."""
    async with asyncio.timeout(seconds):
        while True:
            await gw.outbox.drain_once()
            [row] = await outbox_rows(gw)
            if row["attempts"] >= attempts and row["status"] != "sending":
                return row
            await asyncio.sleep(0.01)
