"""Issue 4: no record lost while the collector is down; more workers; and a
bad filter config refused with the field named."""
import threading

import pytest

from helpers import GROWTH_KEY, SEARCH_KEY, chat_body, filter_config, usage_window_start, wait_for_requests
from procs import Collector, wait_until


def test_collector_down_then_up_loses_no_record(stack_factory):
    s = stack_factory()
    since = usage_window_start()
    s.collector.stop()
    n = 12
    for i in range(n):
        status, _, body = s.chat(SEARCH_KEY if i % 2 else GROWTH_KEY, chat_body(3))
        assert status == 200, body  # usage shipping never blocks traffic

    # The shipper retries while the collector is away; its counters show it.
    def retried():
        stats = s.envoy.stats()
        return stats if stat(stats, "aispend_records_retried") > 0 and stat(stats, "aispend_ship_failures") > 0 \
            else None
    wait_until(retried, 15, "aispend_records_retried and aispend_ship_failures > 0 in Envoy admin /stats")

    restarted = Collector(s.collector.workdir, port=s.collector.port)
    s.collector.proc.forget()
    s.collector = restarted
    restarted.start()
    usage = wait_for_requests(restarted, since, n, timeout=30, group_by="team")
    assert {r["team"]: r["requests"] for r in usage["rows"]} == {"search": n // 2, "growth": n // 2}
    stats = s.envoy.stats()
    assert stat(stats, "aispend_records_dropped") == 0
    assert stat(stats, "aispend_records_emitted") == n


def stat(stats: dict[str, int], suffix: str) -> int:
    """A counter by its plugin-defined name (Envoy prefixes e.g. `wasmcustom.`)."""
    return sum(v for k, v in stats.items() if k == suffix or k.endswith("." + suffix))


def test_two_workers_count_every_call(stack_factory):
    s = stack_factory(concurrency=2)
    since = usage_window_start()
    n_threads, per_thread = 4, 10
    failures = []

    def worker(key):
        for _ in range(per_thread):
            status, _, _ = s.chat(key, chat_body(2))
            if status != 200:
                failures.append(status)

    threads = [threading.Thread(target=worker, args=(SEARCH_KEY if i % 2 else GROWTH_KEY,))
               for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    total = n_threads * per_thread
    usage = wait_for_requests(s.collector, since, total, group_by="team")
    assert usage["totals"]["input_tokens"] == 2 * total
    assert usage["totals"]["output_tokens"] == 5 * total


def _bad_sha(cfg):
    cfg["identity"]["keys"][1]["sha256"] = "not-hex"
    return "identity.keys[1].sha256"


def _typo(cfg):
    cfg["tags"]["on_confict"] = "reject"  # a typo must not silently disable a control
    return "on_confict"


@pytest.mark.parametrize("break_config", [_bad_sha, _typo], ids=["bad-sha256", "unknown-field"])
def test_invalid_filter_config_is_refused_naming_the_field(stack_factory, break_config):
    cfg = filter_config()
    field = break_config(cfg)
    s = stack_factory(cfg, wait=False)

    def named():
        return field in s.envoy.proc.log_text()
    wait_until(named, 20, f"a log line naming {field}")
    line = next(ln for ln in s.envoy.proc.log_text().splitlines() if field in ln)
    assert "aispend" in line and "invalid config" in line
    # Envoy 1.40 fails closed on a static listener: the filter cannot load, so
    # Envoy does not start at all and no request can bypass the filter.
    wait_until(lambda: not s.envoy.proc.running(), 20, "Envoy to refuse the config and exit")
    assert s.envoy.proc.popen.returncode != 0
    assert "Unable to create Wasm plugin aispend" in s.envoy.proc.log_text()
    assert s.mock.requests() == []
