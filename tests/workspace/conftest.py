"""Fixtures of the agent workspace tests: a running gateway with agents of every role."""

from __future__ import annotations

import functools
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from gateway.core.auth import add_user, create_token, hash_password
from gateway.core.model import AttachmentIn, Contact, Inbound
from gateway.core.services import Gateway
from tests.conftest import OPEN_TIME

PASSWORD = "correct horse battery"
# name -> (role, team)
AGENTS = {
    "ana": ("l1", None),
    "beto": ("l2", "redes"),
    "bea": ("l2", "cuentas"),
    "carla": ("l3", "avanzado"),
    "sofia": ("supervisor", None),
}


def whatsapp(pid: str, phone: str, text: str = "No tengo tono desde esta mañana", **kw: Any):
    """A WhatsApp message as the WhatsApp adapter would hand it to the intake."""
    return Inbound(
        channel="whatsapp",
        provider_id=pid,
        contact=Contact(name=kw.pop("name", "Ana Cliente"), phone=phone),
        text=text,
        received_at=OPEN_TIME,
        thread_by_contact=True,
        **kw,
    )


def email(pid: str, address: str, text: str, *, html: str | None = None, **kw: Any) -> Inbound:
    """A mail as the SMTP adapter would hand it to the intake (html in meta)."""
    return Inbound(
        channel="email",
        provider_id=pid,
        contact=Contact(name=kw.pop("name", "Luis Cliente"), email=address),
        text=text,
        received_at=OPEN_TIME,
        subject=kw.pop("subject", "Falla en la central"),
        message_ref=pid,
        meta={"html": html} if html else {},
        attachments=kw.pop("attachments", ()),
        **kw,
    )


def png(width: int = 24, height: int = 16) -> bytes:
    """A real PNG (a red rectangle) a browser can decode."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def image(name: str, data: bytes, content_type: str) -> AttachmentIn:
    return AttachmentIn(filename=name, content_type=content_type, size=len(data), data=data)


def pdf(name: str = "factura.pdf") -> AttachmentIn:
    data = b"%PDF-1.4 fake but real bytes"
    return AttachmentIn(filename=name, content_type="application/pdf", size=len(data), data=data)


@dataclass
class Desk:
    """A running gateway, its HTTP client and one bearer token per agent."""

    client: TestClient
    gw: Gateway
    tokens: dict[str, str]

    def auth(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}

    async def act(self, name: str, tracking: str, action: str, body: Any = None) -> Any:
        resp = await self.client.post(
            f"/api/v1/incidents/{tracking}/{action}",
            json=body,
            headers=self.auth(name),
        )
        return resp.status, await resp.json()

    async def get(self, name: str, tracking: str) -> Any:
        resp = await self.client.get(f"/api/v1/incidents/{tracking}", headers=self.auth(name))
        return resp.status, await resp.json()

    async def queue(self, name: str, level: str) -> list[str]:
        resp = await self.client.get(f"/api/v1/queue?level={level}", headers=self.auth(name))
        assert resp.status == 200, await resp.text()
        return [r["tracking"] for r in (await resp.json())["incidents"]]


@functools.cache
def _password_hash() -> str:
    return hash_password(PASSWORD)


async def make_desk(gw: Gateway, client: TestClient) -> Desk:
    now = gw.clock()

    hashed = _password_hash()

    def create(tx: Any) -> dict[str, str]:
        tokens = {}
        for name, (role, team) in AGENTS.items():
            user = add_user(tx, name, role, team, None, now)
            # One argon2 hash shared by every test agent: hashing is deliberately slow.
            tx.execute("UPDATE users SET password_hash = ? WHERE id = ?", (hashed, user.id))
            tokens[name] = create_token(tx, name, now)
        return tokens

    return Desk(client, gw, await gw.store.transact(create))


@pytest.fixture
async def desk(start_app: Any, settings: Any) -> Desk:
    client, gw = await start_app(settings, adapters={})
    return await make_desk(gw, client)


async def login(
    client: TestClient, name: str, password: str = PASSWORD, headers: dict | None = None
) -> int:
    """Sign in through the login form like a browser; returns the final status."""
    page = await client.get("/agent/login", headers=headers)
    token = re.search(r'name="csrf" value="([^"]+)"', await page.text())
    assert token
    resp = await client.post(
        "/agent/login",
        data={"csrf": token.group(1), "name": name, "password": password},
        headers=headers,
        allow_redirects=False,
    )
    return resp.status


def csrf_of(html: str) -> str:
    """The session CSRF token a page carries."""
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert found, "page has no CSRF token"
    return found.group(1)
