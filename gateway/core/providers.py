"""Adapter health: the last success and the last failure of each provider this instance called.

Adapters record here where their sends succeed or fail ("twilio", "telegram", "smtp"); the
alarm monitor copies it to the database (`alarm_signals`) so the one instance evaluating alarms
sees every instance's. In memory only; never blocks, never raises.
"""

from __future__ import annotations

from datetime import datetime

from gateway.core.alarms import ProviderState
from gateway.core.metrics import Metrics
from gateway.core.timeutil import Clock, utcnow

PROVIDERS = ("twilio", "telegram", "smtp")


class ProviderHealth:
    """Last ok / last error per provider, and since when it has been failing."""

    def __init__(self, clock: Clock = utcnow, metrics: Metrics | None = None):
        self.clock = clock
        self.metrics = metrics
        self.states: dict[str, ProviderState] = {}

    def _gauges(self, provider: str, state: ProviderState) -> None:
        if self.metrics is None:
            return
        if state.last_ok is not None:
            self.metrics.provider_last_ok.labels(provider).set(state.last_ok.timestamp())
        since = state.failing_since.timestamp() if state.failing_since else 0
        self.metrics.provider_failing_since.labels(provider).set(since)

    def ok(self, provider: str) -> None:
        """A call to `provider` succeeded (or it answered a permanent refusal: it is up)."""
        old = self.states.get(provider, ProviderState())
        self.states[provider] = ProviderState(self.clock(), old.last_error, old.error, None)
        self._gauges(provider, self.states[provider])

    def failed(self, provider: str, reason: str) -> None:
        """A call to `provider` failed in a way a retry may fix (unreachable, 5xx, timeout)."""
        now: datetime = self.clock()
        old = self.states.get(provider, ProviderState())
        since = old.failing_since or now
        self.states[provider] = ProviderState(old.last_ok, now, reason[:300], since)
        self._gauges(provider, self.states[provider])
