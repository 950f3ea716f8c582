#!/usr/bin/env python3
"""Wasm instructions per request (`make bench-fuel`): the bench's chat call
through aispend, the floor filter and the no-op filter, run under the
proxy-wasm test host (tests/wasm_host) with wasmtime fuel metering on.

Fuel counts wasm operators executed inside the module (wasmtime charges
`memory.copy`/`memory.fill` one unit per byte, where V8 runs a native
memmove), so the figure is the same on every run and every machine, however busy: it is what the filter's
own logic costs, without the host calls' cost (which `make bench` measures in
a real Envoy). Printed per callback so a change shows where it landed.

Environment: AISPEND_WASM / AISPEND_NOOP_WASM as for `make bench`.
`--profile kong` runs the same calls under the test host's Kong profile
(ngx_wasm_module's rules; the config names the collector by host:port).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
from pathlib import Path

import wasmtime

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from wasm_host import host as host_mod  # noqa: E402
from wasm_host import vm as vm_mod  # noqa: E402
from wasm_host import Host, Reply  # noqa: E402

WASM = Path(os.environ.get("AISPEND_WASM", ROOT / "target/wasm32-wasip1/release/aispend_plugin.wasm"))
NOOP = Path(os.environ.get("AISPEND_NOOP_WASM", ROOT / "target/wasm32-wasip1/release/noop_filter.wasm"))
FLOOR = NOOP.with_name("floor_filter.wasm")
# The warm-up runs five flushes first, so the record buffer has grown to
# its working size (its growth, a one-time copy, is not a per-call cost).
WARMUP, MEASURED = 5200, 2000
# Root ticks per request: the bench runs ~8k req/s and the filter flushes
# every second, so one tick per 1,000 requests is the bench's share.
TICK_EVERY = 1000
CAPS_REPLY = b'{"version":"v1","caps":[]}'

# What wrk sends (benches/gateway/post.lua) and the fast upstream answers
# (benches/gateway/upstream.yaml.tmpl), with the headers Envoy adds before
# the filter runs.
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"say hello to the benchmark please"}]}'
HEADERS = [("content-type", "application/json"), ("authorization", "Bearer sk-aispend-demo-search"),
           ("content-length", str(len(BODY))), ("x-forwarded-proto", "http"),
           ("x-request-id", "6f1c1ab4-1f83-4a5e-9c53-2f2c8a7d4e1b")]
REPLY = (b'{"id":"chatcmpl-bench","object":"chat.completion","created":1732430000,'
         b'"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant",'
         b'"content":"w0 w1 w2 w3 w4"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,'
         b'"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":0},'
         b'"completion_tokens_details":{"reasoning_tokens":0}}}')

FUEL = 1 << 62
# Where the test host answers the collector's calls (never a real socket).
COLLECTOR = "127.0.0.1:9"


def fuel_engine() -> None:
    """Swap the test host's engine for one that meters fuel."""
    cfg = wasmtime.Config()
    cfg.consume_fuel = True
    host_mod._ENGINE = wasmtime.Engine(cfg)
    host_mod._MODULES.clear()
    init = vm_mod.Worker.__init__

    def worker_init(self, *a, **kw):
        init(self, *a, **kw)
        self.store.set_fuel(FUEL)

    vm_mod.Worker.__init__ = worker_init


class Meter:
    """Fuel spent per export, over every worker."""

    def __init__(self) -> None:
        self.by_export: collections.Counter = collections.Counter()
        self.on = False
        invoke = vm_mod.Worker._invoke
        meter = self

        def metered(worker, export, *args):
            before = worker.store.get_fuel()
            try:
                return invoke(worker, export, *args)
            finally:
                if meter.on:
                    meter.by_export[export] += before - worker.store.get_fuel()

        vm_mod.Worker._invoke = metered


def demo_config(limits: bool, profile: str = "envoy", signing: bool = False, strict: bool = False) -> bytes:
    cfg = json.loads((ROOT / "envoy" / "demo-filter-config.json").read_text())
    if strict:
        # The key's team under a strict budget: every call reserves against
        # the host's lease and settles (the price is fetched with the lease).
        cfg["caps"]["strict"] = {"models": ["openai:gpt-4o-mini"]}
    if profile == "kong":
        # Kong dispatches to the host:port nginx resolves, not a cluster.
        cfg["gateway"] = "kong"
        cfg["collector"]["cluster"] = COLLECTOR
    if limits:
        for key in cfg["identity"]["keys"]:
            key["limits"] = {"requests_per_minute": 100_000_000, "tokens_per_minute": 100_000_000_000}
    if signing:
        # Signed tags (README "Signed tags"): one HMAC-SHA256 per call.
        cfg["signing"] = {"keys": [{"id": "bench", "secret": "b" * 64}]}
    return json.dumps(cfg).encode()


def strict_caps_reply(seq: int) -> bytes:
    """A caps answer granting this host a large lease of a strict budget on
    team search, and gpt-4o-mini's price (collector/src/service/caps.rs)."""
    return json.dumps({
        "version": "v1", "caps": [], "host": "h", "price_version": "p1",
        "leases": [{"budget_id": "bench", "scope": {"team": "search"}, "seq": seq,
                    "allowance_usd": 1e6, "used_usd": 0.0, "expires_in_ms": 3_600_000,
                    "period_start": "2026-12-01T00:00:00.000Z"}],
        "prices": {"openai:gpt-4o-mini": {"input": 1.5e-7, "cached_input": 7.5e-8,
                                          "cache_write": 1.5e-7, "output": 6e-7,
                                          "max_output_tokens": 16384}},
    }).encode()


def measure(meter: Meter, wasm: Path, config: bytes, profile: str = "envoy") -> dict:
    polls = 0

    def collector(call):
        nonlocal polls
        if call.path.startswith("/v1/caps?host="):
            polls += 1
            body = strict_caps_reply(polls) if b'"strict"' in config else CAPS_REPLY
        elif call.path.startswith("/v1/caps"):
            body = (b'{"version":"v1","caps":[],"strict":1}' if b'"strict"' in config
                    else CAPS_REPLY)
        else:
            body = b'{"accepted":0}'
        return Reply(200, [("content-type", "application/json")], body)

    vm = Host(profile, wasm, config, workers=1, clusters={"aispend_collector": COLLECTOR},
              strict=False, dispatch=collector)
    served = 0
    if b'"strict"' in config:
        # A plain poll learns strict budgets exist, then the host id settles
        # and a poll naming it brings the lease and the price. Tick until
        # that happened (the tick period differs by profile: Kong's is
        # shorter than the poll interval).
        for _ in range(1000):
            if polls >= 1 and not vm.pending_calls():
                break
            vm.tick()
        if polls < 1:
            sys.exit("fuel: the strict variant never obtained a lease")

    def upstream(_request):
        # As Envoy 1.40 delivers it (seen in its trace log): the body with
        # end_of_stream false, then an empty callback that ends the stream.
        return Reply(200, [("content-type", "application/json")], [REPLY, b""])

    def once() -> None:
        nonlocal served
        served += 1
        if served % TICK_EVERY == 0:
            vm.tick()
        ex = vm.http_request(path="/v1/chat/completions", headers=HEADERS, chunks=[BODY, b""],
                             upstream=upstream)
        if ex.client.status != 200:
            sys.exit(f"fuel: {wasm.name} answered {ex.client.status}: {ex.client.body[:200]!r}")

    for _ in range(WARMUP):
        once()
    meter.by_export.clear()
    meter.on = True
    for _ in range(MEASURED):
        once()
    meter.on = False
    return {k: v / MEASURED for k, v in meter.by_export.items()}


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--profile", choices=("envoy", "kong"), default="envoy",
                      help="the test host's gateway profile (default envoy)")
    profile = args.parse_args().profile
    for f in (WASM, NOOP, FLOOR):
        if not f.exists():
            sys.exit(f"fuel: {f} missing; run `make wasm`")
    fuel_engine()
    meter = Meter()
    variants = [("b) no-op wasm", NOOP, b""), ("c) aispend", WASM, demo_config(False, profile)),
                ("d) aispend+limits", WASM, demo_config(True, profile)), ("e) floor calls", FLOOR, b""),
                ("f) aispend+signing", WASM, demo_config(False, profile, signing=True)),
                ("g) aispend+strict", WASM, demo_config(False, profile, strict=True))]
    results = {name: measure(meter, wasm, cfg, profile) for name, wasm, cfg in variants}
    exports = sorted({e for r in results.values() for e in r}, key=lambda e: -results["c) aispend"].get(e, 0))
    print(f"wasm instructions (fuel) per request, by callback ({profile} profile)")
    print(f"{'callback':<28}" + "".join(f"{n:>20}" for n in results))
    for e in exports:
        print(f"{e:<28}" + "".join(f"{r.get(e, 0):>20.0f}" for r in results.values()))
    print(f"{'total':<28}" + "".join(f"{sum(r.values()):>20.0f}" for r in results.values()))
    # The shipping path apart: the batch built and dispatched on the root
    # tick, and the collector's answer settled, per request shipped.
    ship = ("proxy_on_tick", "proxy_on_http_call_response")
    print(f"{'shipping path (tick+answer)':<28}"
          + "".join(f"{sum(r.get(e, 0) for e in ship):>20.0f}" for r in results.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
