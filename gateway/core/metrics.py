"""Prometheus metrics of one gateway (its own registry, so tests can build many apps)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

# The store's own counts, read when /metrics is scraped: (metric, the store's attribute, help).
STORE_COUNTERS = (
    ("gateway_store_batches", "batches", "Write transactions committed (group-commit batches)"),
    (
        "gateway_store_retries",
        "retries",
        "Writes run again alone after losing a race to another transaction (PostgreSQL)",
    ),
    (
        "gateway_store_deadlocks",
        "deadlocks",
        "Write batches PostgreSQL rolled back to break a deadlock (their jobs were run again)",
    ),
)


class StoreCounters(Collector):
    """The store's counters as Prometheus counters; a store without one (SQLite has no
    concurrent writers to race or deadlock) reports 0."""

    def __init__(self, store: Any):
        self.store = store

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        for name, attribute, doc in STORE_COUNTERS:
            yield CounterMetricFamily(name, doc, value=int(getattr(self.store, attribute, 0)))
        # SQLite: one process per file, nothing to notify.
        notifying = bool(getattr(self.store, "notify_changes", False))
        yield GaugeMetricFamily(
            "gateway_change_notifications",
            "1 while this instance's writes notify other instances (PostgreSQL: another"
            " instance's change feed was heard lately), else 0",
            value=int(notifying),
        )


class Metrics:
    """The gateway's counters, histograms and gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.intakes = Counter(
            "gateway_intakes_total",
            "Inbound items by channel and outcome",
            ["channel", "outcome"],
            registry=r,
        )
        self.intake_seconds = Histogram(
            "gateway_intake_seconds",
            "Time from accept() to commit",
            ["channel"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.queue_depth = Gauge(
            "gateway_queue_depth", "Open incidents by level and line", ["level", "line"], registry=r
        )
        self.outbox_backlog = Gauge(
            "gateway_outbox_backlog",
            "Outbox rows by channel and status",
            ["channel", "status"],
            registry=r,
        )
        self.outbox_oldest = Gauge(
            "gateway_outbox_oldest_pending_seconds",
            "Age of the oldest undelivered outbox row by channel (0 when none)",
            ["channel"],
            registry=r,
        )
        self.outbox_results = Counter(
            "gateway_outbox_results_total",
            "Delivery attempts by channel and result",
            ["channel", "result"],
            registry=r,
        )
        self.sla_breaches = Counter(
            "gateway_sla_breaches_total", "SLA breaches detected", ["kind", "severity"], registry=r
        )
        self.rejections = Counter(
            "gateway_rejections_total",
            "Refused inbound requests by channel and reason",
            ["channel", "reason"],
            registry=r,
        )
        self.provider_last_ok = Gauge(
            "gateway_provider_last_ok_timestamp_seconds",
            "Unix time of the last successful call to a provider (twilio, telegram, smtp)",
            ["provider"],
            registry=r,
        )
        self.provider_failing_since = Gauge(
            "gateway_provider_failing_since_timestamp_seconds",
            "Unix time of the first failed call since the last success (0: not failing)",
            ["provider"],
            registry=r,
        )
        # labels() looks its child up under a lock on every call: the hot path keeps its own.
        self._intake_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def intake(self, channel: str, outcome: str, seconds: float) -> None:
        """Count one intake and its latency."""
        children = self._intake_children.get((channel, outcome))
        if children is None:
            children = (self.intakes.labels(channel, outcome), self.intake_seconds.labels(channel))
            self._intake_children[(channel, outcome)] = children
        children[0].inc()
        children[1].observe(seconds)

    def outbox_result(self, channel: str, result: str) -> None:
        """Count one delivery attempt."""
        self.outbox_results.labels(channel, result).inc()

    def reject(self, channel: str, reason: str) -> None:
        """Count a refused request (bad signature, too large, rate limited...)."""
        self.rejections.labels(channel, reason).inc()

    def watch_store(self, store: Any) -> None:
        """Expose the store's own counters (batches, retries, deadlocks) at every scrape."""
        self.registry.register(StoreCounters(store))

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
