"""Soak: steady mixed traffic through real Envoy + the aispend filter + the
real collector for SOAK_SECONDS (default 600), then compare the start and
the end. Traffic cycles through every provider format of the mock provider
(JSON and streams: OpenAI chat/responses/embeddings, Azure, Anthropic,
Gemini) plus provider errors (500, 429) and unknown keys (401).

Reported at the start (after a warm-up) and at the end:
  Envoy RSS, Envoy's heap (admin /memory allocated), collector RSS, p99 latency.
The wasm VM's own heap is not exposed by Envoy 1.40 or by the filter (no
metric for it); Envoy's allocated heap includes the V8 VMs' memory.

Fails (exit 1) when, from start to end:
  Envoy RSS grows more than SOAK_MAX_ENVOY_GROWTH_MB (default 32 MB),
  collector RSS grows more than SOAK_MAX_COLLECTOR_GROWTH_MB (default 64 MB),
  p99 grows past max(2 x start p99, start p99 + 20 ms),
  any record is unaccounted (emitted != stored + dropped) or dropped,
  or any request fails unexpectedly.

Usage: make soak  (SOAK_SECONDS=20 make soak for a smoke run)."""
from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
sys.path.insert(0, str(ROOT / "tests"))

import procs  # noqa: E402
from helpers import SEARCH_KEY, filter_config  # noqa: E402
from mock_provider import MockProvider  # noqa: E402
from test_providers import CASES  # noqa: E402

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
RPS = float(os.environ.get("SOAK_RPS", "40"))
MAX_ENVOY_MB = float(os.environ.get("SOAK_MAX_ENVOY_GROWTH_MB", "32"))
MAX_COLLECTOR_MB = float(os.environ.get("SOAK_MAX_COLLECTOR_GROWTH_MB", "64"))

ERRORS = [
    ("openai-500", "/v1/chat/completions", "authorization",
     {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}, {"x-mock-status": "500"}, 500),
    ("openai-429", "/v1/chat/completions", "authorization",
     {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}, {"x-mock-status": "429"}, 429),
]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def p99(samples: list[float]) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * 0.99))] * 1000 if s else 0.0


def plan() -> list[tuple]:
    """One round of requests: every provider case, the errors, a bad key."""
    out = []
    for _, path, key_header, body, mock_headers, *_ in CASES:
        headers = dict(mock_headers)
        if key_header == "authorization":
            headers["authorization"] = f"Bearer {SEARCH_KEY}"
        elif key_header:
            headers[key_header] = SEARCH_KEY
        out.append((path, body, headers, 200))
    for _, path, _, body, mock_headers, status in ERRORS:
        out.append((path, body, {**mock_headers, "authorization": f"Bearer {SEARCH_KEY}"}, status))
    out.append(("/v1/chat/completions", ERRORS[0][3], {"authorization": "Bearer sk-aispend-nope"}, 401))
    return out


class Traffic:
    def __init__(self, envoy: procs.Envoy):
        self.envoy, self.rounds = envoy, plan()
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.sent = 0
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        interval, i = 1.0 / RPS, 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            path, body, headers, want = self.rounds[i % len(self.rounds)]
            i += 1
            t0 = time.monotonic()
            try:
                status, _, _ = self.envoy.request("POST", path, body, headers, timeout=10)
                if status != want:
                    self.failures.append(f"{path}: {status} (want {want})")
            except OSError as e:
                self.failures.append(f"{path}: {e}")
            with self.lock:
                self.latencies.append(time.monotonic() - t0)
                self.sent += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def window(self) -> list[float]:
        with self.lock:
            out, self.latencies = self.latencies, []
        return out


def snapshot(envoy: procs.Envoy, collector: procs.Collector, latencies: list[float]) -> dict:
    _, _, mem = procs.call("GET", envoy.admin_port, "/memory")
    return {
        "envoy_rss_mb": round(rss_mb(envoy.proc.popen.pid), 1),
        "envoy_heap_mb": round(int(json.loads(mem)["allocated"]) / 2**20, 1),
        "collector_rss_mb": round(rss_mb(collector.proc.popen.pid), 1),
        "p99_ms": round(p99(latencies), 1),
        "requests": len(latencies),
    }


def main() -> int:
    window = min(60.0, max(5.0, SECONDS / 10))
    tmp = Path(tempfile.mkdtemp(prefix="aispend-soak-"))
    mock = MockProvider().start()
    collector = procs.Collector(tmp).start()
    envoy = procs.Envoy(tmp, upstream=mock.url, collector_port=collector.port, filter_config=filter_config())
    envoy.start()
    traffic = Traffic(envoy)
    worker = threading.Thread(target=traffic.run, daemon=True)
    try:
        worker.start()
        time.sleep(window)  # warm-up: caches, pools, the first batches
        traffic.window()
        time.sleep(window)
        start = snapshot(envoy, collector, traffic.window())
        print(f"start: {start}", flush=True)
        time.sleep(max(0.0, SECONDS - 3 * window))
        traffic.window()
        time.sleep(window)
        end = snapshot(envoy, collector, traffic.window())
        print(f"end:   {end}", flush=True)
        traffic.stop.set()
        worker.join()
        mock.clear()
        # Every record accounted for once the shipper has drained.
        def settled():
            st = envoy.stats()
            emitted = sum(v for k, v in st.items() if k.endswith("aispend_records_emitted"))
            dropped = sum(v for k, v in st.items() if k.endswith("aispend_records_dropped"))
            usage = collector.usage(**{"from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"})
            stored = usage["totals"]["requests"]
            return (emitted, stored, dropped) if emitted == stored + dropped else None
        emitted, stored, dropped = procs.wait_until(settled, 60, "emitted == stored + dropped")
        print(f"sent {traffic.sent} requests in {SECONDS:.0f}s; records emitted={emitted} stored={stored} "
              f"dropped={dropped}; unexpected answers: {len(traffic.failures)}")
        problems = []
        if end["envoy_rss_mb"] - start["envoy_rss_mb"] > MAX_ENVOY_MB:
            problems.append(f"Envoy RSS grew {end['envoy_rss_mb'] - start['envoy_rss_mb']:.1f} MB > {MAX_ENVOY_MB}")
        if end["collector_rss_mb"] - start["collector_rss_mb"] > MAX_COLLECTOR_MB:
            problems.append(f"collector RSS grew {end['collector_rss_mb'] - start['collector_rss_mb']:.1f} MB "
                            f"> {MAX_COLLECTOR_MB}")
        if end["p99_ms"] > max(2 * start["p99_ms"], start["p99_ms"] + 20):
            problems.append(f"p99 {start['p99_ms']} -> {end['p99_ms']} ms")
        if dropped:
            problems.append(f"{dropped} records dropped")
        if traffic.failures:
            problems.append(f"unexpected answers, e.g. {traffic.failures[:3]}")
        for p in problems:
            print(f"FAIL: {p}")
        if not problems:
            print(f"PASS: growth within bounds (Envoy RSS <= {MAX_ENVOY_MB} MB, collector RSS <= "
                  f"{MAX_COLLECTOR_MB} MB, p99 <= max(2x, +20 ms)); zero records lost")
        return 1 if problems else 0
    finally:
        traffic.stop.set()
        envoy.stop()
        collector.stop()
        mock.stop()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
