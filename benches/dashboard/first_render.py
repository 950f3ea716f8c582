"""The dashboard's first render over 1M records (`make bench-dashboard`):
the real collector binary (SQLite in a temp dir) is filled with
AISPEND_BENCH_RECORDS (default 1,000,000) records spread over the last 60
days through POST /v1/records, then Debian's Chromium (Playwright,
executable_path: no browser download) opens /ui/ signed in, and the script
prints the time from navigation to the overview rendered, and each API call
the page made (the browser's resource timing). Figures, no asserts."""
from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
import procs  # noqa: E402

from playwright.sync_api import sync_playwright  # noqa: E402

TEAMS = ["search", "growth", "ads", "infra", "mobile", "web", "data", "support"]
MODELS = ["gpt-4o-mini", "gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-flash"]
BATCH = 10_000


def fill(port: int, total: int) -> float:
    now = time.time()
    span = 60 * 86400
    rng = random.Random(22)
    started = time.monotonic()
    for first in range(0, total, BATCH):
        records = []
        for i in range(first, min(first + BATCH, total)):
            ts = now - span + span * i / total - 5
            key = rng.randrange(50)
            team = TEAMS[key % len(TEAMS)]
            records.append({
                "id": f"{int(ts * 1000) & 0xFFFFFFFFFFFF:012x}{rng.getrandbits(80):020x}",
                "ts": dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "gateway": "envoy", "key_id": f"key-{key}", "auth": "api_key",
                "tags": {"org": "acme", "team": team, "project": f"p{key % 12}",
                         "cost_center": f"CC-{1000 + key % 8}", "environment": "prod"},
                "labels": {}, "provider": "openai", "operation": "chat",
                "model": MODELS[rng.randrange(len(MODELS))], "status": 200,
                "input_tokens": rng.randint(100, 4000), "cached_input_tokens": 0,
                "cache_write_input_tokens": 0, "output_tokens": rng.randint(10, 800),
                "reasoning_tokens": 0})
        status, _, body = procs.call("POST", port, "/v1/records", {"records": records},
                                     {"authorization": f"Bearer {procs.INGEST_TOKEN}"}, timeout=120)
        assert status == 200 and json.loads(body)["rejected"] == [], body[:300]
    return time.monotonic() - started


def main() -> None:
    total = int(os.environ.get("AISPEND_BENCH_RECORDS", "1000000"))
    runs = int(os.environ.get("AISPEND_BENCH_RUNS", "5"))
    work = Path(tempfile.mkdtemp(prefix="aispend-dashboard-"))
    collector = procs.Collector(work)
    try:
        collector.start()
        took = fill(collector.port, total)
        print(f"{total} records ingested over HTTP in {took:.1f} s")
        for team in TEAMS:
            procs.call("POST", collector.port, "/v1/budgets",
                       {"id": f"team-{team}", "scope": {"team": team}, "period": "month", "amount_usd": 500},
                       {"authorization": f"Bearer {procs.ADMIN_TOKEN}"})
        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(f"http://127.0.0.1:{collector.port}/ui/")
            page.fill("#token", procs.ADMIN_TOKEN)
            page.click("form#signin button[type=submit]")
            page.wait_for_selector("[data-ready='1']", timeout=30_000)
            renders, calls = [], {}
            for _ in range(runs):
                page.reload()  # the token stays in sessionStorage: straight to the overview
                page.wait_for_selector("[data-page='overview'][data-ready='1']", timeout=30_000)
                renders.append(page.evaluate("performance.now()"))
                for e in page.evaluate(
                        "performance.getEntriesByType('resource').filter(e => e.name.includes('/v1/'))"
                        ".map(e => [new URL(e.name).pathname + new URL(e.name).search,"
                        " e.responseStart - e.requestStart])"):
                    # `to` is "now" at each load: one line per call, whatever the second.
                    calls.setdefault(re.sub(r"to=[^&]*", "to=now", e[0]), []).append(e[1])
            shot = work / "overview-1M.png"
            page.screenshot(path=str(shot), full_page=True)
            browser.close()
        print(f"first render (navigation to overview drawn), median of {runs}: "
              f"{statistics.median(renders):.0f} ms, worst {max(renders):.0f} ms")
        for path, ts in sorted(calls.items()):
            print(f"  {statistics.median(ts):6.1f} ms  {path}")
    finally:
        collector.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
