"""deploy/prometheus and deploy/grafana name only metrics the gateway really exposes: every
expression is checked against a scrape of a running gateway's /metrics (all adapters on)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bgateway_[a-z0-9_]+\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
}


def rule_expressions() -> list[str]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "gateway-alerts.yml").read_text())
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    doc = json.loads((DEPLOY / "grafana" / "gateway-dashboard.json").read_text())
    return [t["expr"] for panel in doc["panels"] for t in panel["targets"]]


async def exposed_names(client) -> set[str]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    names: set[str] = set()
    for line in (await resp.text()).splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            names.update(name + s for s in SUFFIXES.get(kind, ()))
    return names


async def test_every_rule_and_panel_names_an_existing_metric(start_app, settings) -> None:
    client, _ = await start_app(settings)  # every adapter: their own metrics too
    names = await exposed_names(client)
    rules, panels = rule_expressions(), dashboard_expressions()
    assert len(rules) >= 10 and len(panels) >= 10
    unknown = {m for expr in rules + panels for m in METRIC.findall(expr)} - names
    assert unknown == set()
    for expr in rules + panels:
        assert METRIC.search(expr) or expr.startswith("up{"), expr
    # The dashboard covers what an operator alarms on.
    covered = {m for expr in panels for m in METRIC.findall(expr)}
    for must in (
        "gateway_queue_depth",
        "gateway_outbox_oldest_pending_seconds",
        "gateway_outbox_backlog",
        "gateway_sla_breaches_total",
        "gateway_provider_failing_since_timestamp_seconds",
        "gateway_intakes_total",
    ):
        assert must in covered
