"""The two error kinds at the core's boundary, which every adapter maps onto its wire.

`Rejected` is permanent (SMTP 5xx, HTTP 4xx): retrying the same input will fail again.
`TemporaryFailure` means nothing was committed and the sender should retry (SMTP 451, HTTP 503).
"""

from __future__ import annotations


class GatewayError(Exception):
    """Base of the errors the core raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class Rejected(GatewayError):
    """Permanent refusal of an input: bad data, forbidden action."""

    code = "rejected"


class NotFound(Rejected):
    """The object does not exist (or the caller may not know it exists)."""

    code = "not_found"


class Forbidden(Rejected):
    """The caller may not do this."""

    code = "forbidden"


class Conflict(Rejected):
    """A transition the incident's current state does not allow."""

    code = "conflict"


class TemporaryFailure(GatewayError):
    """Nothing was committed; the caller should retry later."""

    code = "temporarily_unavailable"


class Shunted(TemporaryFailure):
    """The input is committed as a shunted receipt (its processing hit a bug); the sender is
    told to retry, and `python -m gateway replay` processes it once fixed."""


class Misconfigured(GatewayError):
    """The gateway cannot run as configured (the operator must change a setting)."""

    code = "misconfigured"
