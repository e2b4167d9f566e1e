"""Agent sessions: argon2 login (throttled per user and IP), signed cookies, CSRF, logout.

The cookie holds (user id, session epoch, session id, expiry) signed with HMAC-SHA256 under the
gateway's secret key. Logout and password change bump `users.session_epoch`, which ends every
session issued before (checklist A3). Failed logins are persisted, so throttling survives restarts.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web

from gateway.core.auth import User, hash_password, user_by_id, user_by_name, verify_password
from gateway.core.services import gw_of
from gateway.core.timeutil import iso
from gateway.store.tx import Tx
from gateway.web.api import USER_KEY
from gateway.web.http import client_address

COOKIE = "cmw_agent"
LOGIN_CSRF_COOKIE = "cmw_login_csrf"
LIFETIME = timedelta(hours=12)
MAX_FAILURES = 5  # per user name and client IP ...
FAILURE_WINDOW = timedelta(minutes=15)  # ... within this window, then 429 until it passes
MIN_PASSWORD = 10
SESSION_KEY = web.RequestKey("agent_session", dict)

MIGRATIONS = [
    (
        1,
        """
        CREATE TABLE workspace_login_failures (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,
            at TEXT NOT NULL
        );
        CREATE INDEX workspace_login_failures_key ON workspace_login_failures(key, at);
        """,
    )
]


@dataclass(frozen=True)
class Session:
    """A verified session cookie."""

    user_id: int
    epoch: int
    sid: str
    expires: int


def _mac(secret: str, payload: bytes) -> str:
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def encode_session(secret: str, session: Session) -> str:
    """The signed cookie value of a session."""
    data = json.dumps(
        {"u": session.user_id, "e": session.epoch, "s": session.sid, "x": session.expires},
        separators=(",", ":"),
    ).encode()
    payload = base64.urlsafe_b64encode(data).decode().rstrip("=")
    return f"{payload}.{_mac(secret, payload.encode())}"


def decode_session(secret: str, value: str, now: datetime) -> Session | None:
    """The session of a cookie value, or None if forged, malformed or expired."""
    payload, _, mac = value.partition(".")
    if not mac or not hmac.compare_digest(mac, _mac(secret, payload.encode())):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        session = Session(int(data["u"]), int(data["e"]), str(data["s"]), int(data["x"]))
    except (ValueError, KeyError, TypeError):
        return None
    return session if session.expires > now.timestamp() else None


def csrf_token(secret: str, sid: str) -> str:
    """The CSRF token bound to one session (sent in forms and the X-CSRF-Token header)."""
    return _mac(secret, f"csrf:{sid}".encode())


def session_of(request: web.Request) -> Session | None:
    """The verified session of this request (after `authenticate` ran)."""
    data = request.get(SESSION_KEY)
    return Session(**data) if data else None


def check_csrf(request: web.Request, supplied: str | None) -> bool:
    """Whether `supplied` is the CSRF token of the request's session."""
    session = session_of(request)
    if session is None or not supplied:
        return False
    return hmac.compare_digest(supplied, csrf_token(gw_of(request).secret_key, session.sid))


async def authenticate(request: web.Request) -> User | None:
    """gw.authenticators entry: the user of a valid, current session cookie."""
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    gw = gw_of(request)
    session = decode_session(gw.secret_key, value, gw.clock())
    if session is None:
        return None
    user = await gw.store.read(lambda tx: user_by_id(tx, session.user_id))
    if user is None or user.session_epoch != session.epoch:
        return None  # logged out or password changed since this cookie was issued
    request[SESSION_KEY] = session.__dict__
    return user


def set_session_cookie(request: web.Request, response: web.StreamResponse, user: User) -> None:
    """Issue a fresh session for `user` on `response`."""
    gw = gw_of(request)
    expires = int((gw.clock() + LIFETIME).timestamp())
    session = Session(user.id, user.session_epoch, secrets.token_urlsafe(16), expires)
    response.set_cookie(
        COOKIE,
        encode_session(gw.secret_key, session),
        max_age=int(LIFETIME.total_seconds()),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=gw.settings.public_url.startswith("https://"),
    )


def clear_session_cookie(response: web.StreamResponse) -> None:
    """Remove the session cookie from the browser."""
    response.del_cookie(COOKIE, path="/")


def _throttle_key(name: str, ip: str) -> str:
    return f"{name.strip().lower()}|{ip}"


def failures(tx: Tx, key: str, now: datetime) -> int:
    """Failed logins of this key within the window."""
    row = tx.one(
        "SELECT count(*) AS n FROM workspace_login_failures WHERE key = ? AND at > ?",
        (key, iso(now - FAILURE_WINDOW)),
    )
    return int(row["n"]) if row else 0


class LoginThrottled(Exception):
    """Too many failed logins for this user name from this address."""


async def login(request: web.Request, name: str, password: str) -> User | None:
    """The user if the password matches; LoginThrottled after too many failures."""
    gw = gw_of(request)
    key = _throttle_key(name, client_address(request, gw.settings.trusted_proxies))
    now = gw.clock()
    if await gw.store.read(lambda tx: failures(tx, key, now)) >= MAX_FAILURES:
        raise LoginThrottled(key)
    found = await gw.store.read(lambda tx: user_by_name(tx, name.strip()))
    stored = found[1] if found else None
    # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
    ok = await asyncio.get_running_loop().run_in_executor(None, verify_password, stored, password)
    if ok and found:
        await gw.store.transact(
            lambda tx: tx.execute("DELETE FROM workspace_login_failures WHERE key = ?", (key,))
        )
        return found[0]
    await gw.store.transact(
        lambda tx: tx.execute(
            "INSERT INTO workspace_login_failures (key, at) VALUES (?, ?)", (key, iso(now))
        )
    )
    return None


async def logout(request: web.Request, user: User) -> None:
    """End every session of the user (bump the epoch)."""
    gw = gw_of(request)
    await gw.store.transact(
        lambda tx: tx.execute(
            "UPDATE users SET session_epoch = session_epoch + 1 WHERE id = ?", (user.id,)
        )
    )


async def change_password(request: web.Request, user: User, current: str, new: str) -> User:
    """Set a new password and end the user's other sessions; returns the refreshed user."""
    gw = gw_of(request)
    found = await gw.store.read(lambda tx: user_by_name(tx, user.name))
    loop = asyncio.get_running_loop()
    stored = found[1] if found else None
    if not await loop.run_in_executor(None, verify_password, stored, current):
        raise ValueError("La contraseña actual no es correcta.")
    if len(new) < MIN_PASSWORD:
        raise ValueError(f"La contraseña nueva debe tener al menos {MIN_PASSWORD} caracteres.")
    hashed = await loop.run_in_executor(None, hash_password, new)

    def write(tx: Tx) -> User | None:
        tx.execute(
            "UPDATE users SET password_hash = ?, session_epoch = session_epoch + 1 WHERE id = ?",
            (hashed, user.id),
        )
        return user_by_id(tx, user.id)

    fresh = await gw.store.transact(write)
    assert fresh is not None
    request[USER_KEY] = fresh
    return fresh
