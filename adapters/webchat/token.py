"""Signed web chat visitor tokens: `v1.<visitor id>.<issued unix time>.<HMAC-SHA256>`.

The token is the only proof of who a chat visitor is: it names a random visitor id and is
signed with the gateway's secret key. Pure functions (no clock, no I/O); they never look at
names, emails or phones, which prove nothing about the person typing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

VERSION = "v1"
# A visitor who comes back within this time resumes; each resume re-issues the token.
MAX_AGE = timedelta(days=90)
_PURPOSE = b"callmyway-webchat-visitor"  # domain separation from other uses of the key


def new_visitor_id() -> str:
    """A fresh 128-bit random visitor id (URL-safe, no dots or colons)."""
    return secrets.token_urlsafe(16)


def _signature(secret_key: str, visitor_id: str, issued: int) -> str:
    key = hmac.new(secret_key.encode(), _PURPOSE, hashlib.sha256).digest()
    mac = hmac.new(key, f"{VERSION}.{visitor_id}.{issued}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def issue_token(secret_key: str, visitor_id: str, now: datetime) -> str:
    """A token proving `visitor_id`, issued at `now` (aware)."""
    issued = int(now.timestamp())
    return f"{VERSION}.{visitor_id}.{issued}.{_signature(secret_key, visitor_id, issued)}"


def verify_token(secret_key: str, token: object, now: datetime) -> str | None:
    """The visitor id of a valid, unexpired token; None for anything else."""
    if not isinstance(token, str) or len(token) > 200:
        return None
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != VERSION or not parts[2].isdigit():
        return None
    _, visitor_id, issued_text, signature = parts
    if not visitor_id or ":" in visitor_id:
        return None
    issued = int(issued_text)
    expected = _signature(secret_key, visitor_id, issued)
    # Constant-time comparison: a timing oracle would let a forger build a signature bytewise.
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogatepass")):
        return None
    age = now.timestamp() - issued
    if age > MAX_AGE.total_seconds() or age < -300:  # 5 min of clock skew between instances
        return None
    return visitor_id
