"""Agents and API tokens: argon2id password hashes, tokens stored as SHA-256 digests.

API tokens are 256-bit random strings, so a fast hash is enough to store them (nothing to
brute-force); passwords are low-entropy and get argon2id. Pure helpers plus `Tx` functions.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.core.errors import Conflict, Rejected
from gateway.core.timeutil import iso
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


def create_token(tx: Tx, name: str, now: datetime) -> str:
    """A new API token for the user `name` (returned once, stored hashed)."""
    row = tx.one("SELECT id FROM users WHERE name = ?", (name,))
    if row is None:
        raise Rejected(f"no user named {name!r}", field="name")
    token = secrets.token_urlsafe(32)
    tx.execute(
        "INSERT INTO api_tokens (user_id, token_hash, created_at) VALUES (?, ?, ?)",
        (row["id"], token_digest(token), iso(now)),
    )
    return token


def user_by_token(tx: Tx, token: str) -> User | None:
    """The user an API token belongs to."""
    row = tx.one(
        "SELECT u.* FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?",
        (token_digest(token),),
    )
    return _user(row) if row else None


def user_by_name(tx: Tx, name: str) -> tuple[User, str | None] | None:
    """The user and its password hash."""
    row = tx.one("SELECT * FROM users WHERE name = ?", (name,))
    return (_user(row), row["password_hash"]) if row else None


def user_by_id(tx: Tx, user_id: int) -> User | None:
    """The user with that id."""
    row = tx.one("SELECT * FROM users WHERE id = ?", (user_id,))
    return _user(row) if row else None
