"""Constants and helpers shared by the end-to-end tests (the demo keys, the
test filter config, request bodies, usage polling)."""
from __future__ import annotations

import copy
import datetime as dt
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/ -> mock_provider
sys.path.insert(0, str(HERE))

import procs  # noqa: E402
from mock_provider import MockProvider  # noqa: E402
from sink import RecordSink  # noqa: E402

SEARCH_KEY = procs.secret("sk-aispend-demo-search")
GROWTH_KEY = procs.secret("sk-aispend-demo-growth")
REVOKED_KEY = procs.secret("sk-aispend-test-revoked")  # sha256 below, status revoked
UPSTREAM_CREDENTIAL = "Bearer " + procs.secret("sk-upstream-real-credential")
SEARCH_TAGS = {"org": "acme", "team": "search", "project": "ranking", "cost_center": "CC-1001",
               "environment": "prod"}
GROWTH_TAGS = {"org": "acme", "team": "growth", "project": "chatbot", "cost_center": "CC-2002",
               "environment": "dev"}


def filter_config(**overrides) -> dict:
    """The demo filter config plus a revoked key, an upstream credential and a
    fast flush; `overrides` are deep-merged (dicts merge, other values replace)."""
    cfg = json.loads((procs.ROOT / "envoy" / "demo-filter-config.json").read_text())
    cfg["identity"]["keys"].append({
        "key_id": "test-revoked",
        "sha256": "52c80587ada6aa3fdef9d08a375e9e74c69eebf769261d4218f4ce794f04e2c5",
        "status": "revoked",
        "tags": {"team": "revoked"},
    })
    cfg["providers"] = {"openai": {"credential": {"header": "authorization", "value": UPSTREAM_CREDENTIAL}}}
    cfg["collector"]["flush_interval_ms"] = 200
    cfg["collector"]["max_backoff_ms"] = 1000
    return _merge(cfg, overrides)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def auth(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}


def chat_body(words: int, model: str = "gpt-4o-mini", **extra) -> dict:
    prompt = " ".join(f"word{i}" for i in range(words))
    return {"model": model, "messages": [{"role": "user", "content": prompt}], **extra}


def usage_window_start() -> str:
    """Start of a fresh whole-second window for /v1/usage `from`, so records of
    earlier tests against the same collector are excluded."""
    now = time.time()
    time.sleep(int(now) + 1 - now + 0.01)
    return dt.datetime.fromtimestamp(int(now) + 1, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def usage_window_end() -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_for_requests(collector: procs.Collector, since: str, n: int, timeout: float = 20, **params) -> dict:
    """Poll /v1/usage until its totals count `n` requests (the shipper flushed)."""
    def check():
        u = collector.usage(**{"from": since, "to": usage_window_end(), **params})
        return u if u.get("totals", {}).get("requests") == n else None
    return procs.wait_until(check, timeout, f"{n} requests in /v1/usage since {since}", interval=0.25)


class Stack:
    """One gateway under test: the mock provider, Envoy with the filter, and
    either the real collector or a RecordSink standing in for it."""

    def __init__(self, mock: MockProvider, collector, envoy: procs.Envoy, sink: RecordSink | None = None):
        self.mock, self.collector, self.envoy, self.sink = mock, collector, envoy, sink

    def chat(self, key: str | None, body: dict, headers: dict | None = None, path: str = "/v1/chat/completions"):
        hdrs = {**(auth(key) if key else {}), **(headers or {})}
        return self.envoy.request("POST", path, body, hdrs)


