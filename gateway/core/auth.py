"""Agents and API tokens: argon2id password hashes, tokens stored as SHA-256 digests.

API tokens are 256-bit random strings, so a fast hash is enough to store them (nothing to
brute-force); they expire (`[agents] token_lifetime`) and are revoked by `token revoke` and by a
password change. Passwords are low-entropy and get argon2id, run in `PasswordPool`'s own bounded
threads. Pure helpers plus `Tx` functions.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.core.errors import Conflict, Rejected
from gateway.core.timeutil import iso, parse_iso
from gateway.store.tx import Tx

ROLES = ("l1", "l2", "l3", "supervisor", "admin")
_hasher = PasswordHasher()


@dataclass(frozen=True)
class User:
    """An authenticated agent."""

    id: int
    name: str
    role: str
    team: str | None
    session_epoch: int = 0

    @property
    def levels(self) -> tuple[str, ...]:
        """Queue levels this user works (supervisors and admins see every level)."""
        return {"l1": ("L1",), "l2": ("L2",), "l3": ("L3",)}.get(self.role, ("L1", "L2", "L3"))


def hash_password(password: str) -> str:
    """argon2id hash of a password."""
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Constant-work verification; False for any mismatch or a missing hash."""
    if not stored:
        _hasher.hash(password)  # same work either way: no user-existence timing oracle
        return False
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def token_digest(token: str) -> str:
    """What is stored for an API token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _user(row: dict) -> User:
    return User(row["id"], row["name"], row["role"], row["team"], row["session_epoch"])


def add_user(
    tx: Tx, name: str, role: str, team: str | None, password: str | None, now: datetime
) -> User:
    """Create an agent; Conflict if the name exists."""
    if role not in ROLES:
        raise Rejected(f"role must be one of {', '.join(ROLES)}", field="role")
    if not name or not name.strip():
        raise Rejected("a user name is required", field="name")
    if tx.one("SELECT 1 FROM users WHERE name = ?", (name,)):
        raise Conflict(f"user {name!r} already exists")
    user_id = tx.insert(
        "INSERT INTO users (name, role, team, password_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        (name, role, team, hash_password(password) if password else None, iso(now)),
    )
    return User(user_id, name, role, team)


def create_token(tx: Tx, name: str, now: datetime, lifetime: timedelta | None = None) -> str:
    """A new API token for the user `name` (returned once, stored hashed), valid `lifetime`."""
    row = tx.one("SELECT id FROM users WHERE name = ?", (name,))
    if row is None:
        raise Rejected(f"no user named {name!r}", field="name")
    token = secrets.token_urlsafe(32)
    expires = iso(now + lifetime) if lifetime else None
    tx.execute(
        "INSERT INTO api_tokens (user_id, token_hash, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (row["id"], token_digest(token), iso(now), expires),
    )
    return token


def token_expiry(row: dict[str, Any], lifetime: timedelta) -> datetime:
    """When a token row stops working (tokens from before expiry existed: created + lifetime)."""
    expires = parse_iso(row.get("expires_at"))
    if expires is None:
        created = parse_iso(row["created_at"])
        assert created is not None
        expires = created + lifetime
    return expires


def user_by_token(tx: Tx, token: str, now: datetime, lifetime: timedelta) -> User | None:
    """The user an API token belongs to, unless it expired or was revoked."""
    row = tx.one(
        "SELECT u.*, t.created_at AS token_created_at, t.expires_at AS token_expires_at"
        " FROM api_tokens t JOIN users u ON u.id = t.user_id"
        " WHERE t.token_hash = ? AND t.revoked_at IS NULL",
        (token_digest(token),),
    )
    if row is None:
        return None
    times = {"created_at": row["token_created_at"], "expires_at": row["token_expires_at"]}
    if token_expiry(times, lifetime) <= now:
        return None
    return _user(row)


def list_tokens(tx: Tx) -> list[dict[str, Any]]:
    """Every API token's id, user and dates (never the token itself)."""
    return tx.all(
        "SELECT t.id, u.name, t.created_at, t.expires_at, t.revoked_at FROM api_tokens t"
        " JOIN users u ON u.id = t.user_id ORDER BY t.id"
    )


def revoke_tokens(
    tx: Tx, now: datetime, *, token_id: int | None = None, user_id: int | None = None
) -> int:
    """Revoke one token, or every live token of a user; returns how many were revoked."""
    if token_id is not None:
        return tx.execute(
            "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (iso(now), token_id),
        )
    return tx.execute(
        "UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
        (iso(now), user_id),
    )


def user_by_name(tx: Tx, name: str) -> tuple[User, str | None] | None:
    """The user and its password hash."""
    row = tx.one("SELECT * FROM users WHERE name = ?", (name,))
    return (_user(row), row["password_hash"]) if row else None


def user_by_id(tx: Tx, user_id: int) -> User | None:
    """The user with that id."""
    row = tx.one("SELECT * FROM users WHERE id = ?", (user_id,))
    return _user(row) if row else None


class HashPoolBusy(Exception):
    """More sign-ins are waiting for a hashing thread than `[agents] hash_queue` allows."""


class PasswordPool:
    """argon2 in its own few threads, with a bounded queue.

    argon2 costs tens of milliseconds of CPU and 64 MiB per call: run in the default executor,
    a sign-in flood would hold every default thread, and with them what else uses that pool
    (the WhatsApp fallback's spool writes, DNS look-ups of aiohttp's resolver). Here a flood waits
    in (or is refused at) its own queue.
    """

    def __init__(self, workers: int, queue: int):
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="argon2")
        self.limit = workers + queue
        self.in_flight = 0  # calls submitted and not finished (running or waiting)
        self.calls = 0  # hashes run since start (a flood of unknown names must add none)

    async def _run(self, fn: Any, *args: Any) -> Any:
        if self.in_flight >= self.limit:
            raise HashPoolBusy
        self.in_flight += 1
        self.calls += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self.in_flight -= 1

    async def verify(self, stored: str | None, password: str) -> bool:
        """`verify_password` in the pool."""
        return bool(await self._run(verify_password, stored, password))

    async def hash(self, password: str) -> str:
        """`hash_password` in the pool."""
        return str(await self._run(hash_password, password))

    def close(self) -> None:
        """Stop the threads (running hashes finish; queued ones are dropped)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
