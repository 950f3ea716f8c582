"""Issue 22, the Grafana dashboard (dashboards/aispend.json): valid JSON, every
panel on the Prometheus datasource variable, and every metric its queries name
exists in what a running collector (/metrics) and real Envoy with the filter
(/stats/prometheus) expose after one call through the gateway. The collector's
spend gauges carry that call under its team and model."""
from __future__ import annotations

import json
import re

from helpers import SEARCH_KEY, chat_body, usage_window_start, wait_for_requests
from procs import ROOT, call

DASHBOARD = ROOT / "dashboards" / "aispend.json"
METRIC = re.compile(r"\baispend_[a-z0-9_]+\b")
SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+\S+$")


def exposed(text: str) -> dict[str, list[str]]:
    """Prometheus exposition text -> {metric name: [sample lines]}; a
    histogram's samples count under their family name too."""
    names: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = SAMPLE.match(line.strip())
        if not m or line.startswith("#"):
            continue
        name = m.group(1)
        names.setdefault(name, []).append(line)
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix):
                names.setdefault(name[: -len(suffix)], []).append(line)
    return names


def queries(dashboard: dict) -> list[tuple[str, str]]:
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def test_every_metric_the_dashboard_queries_exists(stack_factory):
    dashboard = json.loads(DASHBOARD.read_text())  # valid JSON, or this fails
    assert dashboard["uid"] == "aispend"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 12
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p.get("targets"), f"panel {p['title']!r} has no query"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"

    s = stack_factory()
    since = usage_window_start()
    assert s.chat(SEARCH_KEY, chat_body(5))[0] == 200
    wait_for_requests(s.collector, since, 1)

    status, _, body = call("GET", s.collector.port, "/metrics")
    assert status == 200
    collector = exposed(body.decode())
    status, _, body = call("GET", s.envoy.admin_port, "/stats/prometheus")
    assert status == 200
    envoy = exposed(body.decode())
    assert "aispend_requests" in envoy, "the filter's counters are in Envoy's Prometheus output"

    referenced = {}
    for title, expr in queries(dashboard):
        for name in METRIC.findall(expr):
            referenced.setdefault(name, title)
    missing = {n: t for n, t in referenced.items() if n not in collector and n not in envoy}
    assert not missing, f"queried but exposed by neither the collector nor Envoy: {missing}"
    # Both sources are charted, including the spend gauges by team and model.
    assert any(n in collector for n in referenced) and any(n in envoy for n in referenced)
    for name in ("aispend_spend_usd", "aispend_records_accepted_total", "aispend_caps_flags",
                 "aispend_alerts_total", "aispend_records_shipped", "aispend_denied_402"):
        assert name in referenced, f"{name} is not charted"

    spend = collector["aispend_spend_usd"]
    search = [line for line in spend if 'team="search"' in line and 'model="gpt-4o-mini' in line]
    assert len(search) == 1 and float(search[0].split()[-1]) > 0, spend
    want = s.collector.usage(group_by="team")["rows"]
    got = {re.search(r'team="([^"]*)"', line).group(1) for line in spend}
    assert {r["team"] for r in want} <= got, (want, spend)
