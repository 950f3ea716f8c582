#!/usr/bin/env python3
"""The key registry at scale (`make bench-registry`): a registry of N keys
(10,000 and 100,000 by default) run through the compiled filter under the
proxy-wasm test host (tests/wasm_host) with wasmtime fuel on, as
benches/gateway/fuel.py does. Two workers, Envoy profile.

Printed per size: the snapshot's bytes (the collector's JSON), the shared
data the filter keeps (`aispend:registry:keys` + `aispend:registry`), the
wasm instructions of the poll that takes a new version in (validate the
JSON, write shared data, decode this worker's copy), of the other worker's
tick that decodes it, of a tick with nothing new, and of one chat request
with a registry key and with a static config key.

Environment: AISPEND_WASM as for `make bench-fuel`. Argument: key counts.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time

import fuel
from fuel import BODY, HEADERS, REPLY, ROOT, WASM, Host, Reply, fuel_engine

STATIC_KEY = "sk-aispend-demo-search"
TAGS = ("org", "team", "project", "cost_center", "environment")


def snapshot(n: int, version: str) -> bytes:
    """A registry as SPEC §8 shapes it: every key with the five canonical
    tags, limits, an expiry, like a real fleet's."""
    keys = []
    for i in range(n):
        keys.append({
            "sha256": hashlib.sha256(f"sk-aispend-bench-{i:08d}".encode()).hexdigest(),
            "key_id": f"key-{i:08d}",
            "tags": {"org": "acme", "team": f"team-{i % 500:03d}", "project": f"project-{i % 2000:04d}",
                     "cost_center": f"CC-{i % 300:04d}", "environment": ("prod", "dev", "staging")[i % 3]},
            "limits": {"requests_per_minute": 600, "tokens_per_minute": 200000},
            "status": "active",
            "not_after": "2027-12-31T00:00:00Z",
        })
    return json.dumps({"version": version, "keys": keys}, separators=(",", ":")).encode()


def config() -> bytes:
    cfg = json.loads((ROOT / "envoy" / "demo-filter-config.json").read_text())
    cfg["identity"]["registry"] = {"poll_ms": 2000}
    return json.dumps(cfg).encode()


def measure(meter: fuel.Meter, n: int) -> dict:
    body = {"v": snapshot(n, f"v{n}")}

    def collector(call):
        if call.path.startswith("/v1/keys/registry"):
            if call.header("if-none-match") == f'"v{n}"':
                return Reply(304, [])
            return Reply(200, [("content-type", "application/json")], body["v"])
        return Reply(200, [("content-type", "application/json")],
                     b'{"version":"v1","caps":[]}' if call.path.startswith("/v1/caps")
                     else b'{"accepted":0}')

    vm = Host("envoy", WASM, config(), workers=2, clusters={"aispend_collector": "127.0.0.1:9"},
              strict=False, dispatch=collector)

    def metered(fn) -> dict:
        meter.by_export.clear()
        meter.on = True
        started = time.perf_counter()
        fn()
        meter.on = False
        return {**meter.by_export, "_seconds": time.perf_counter() - started}

    out = {"snapshot_bytes": len(body["v"])}
    # Worker 0 polls and takes the answer in; worker 1 decodes on its tick.
    out["poll"] = metered(lambda: vm.tick(worker=0))
    out["other_worker_tick"] = metered(lambda: vm.tick(worker=1))
    shared = vm.shared.snapshot()
    out["shared_bytes"] = sum(len(k) + len(v) for k, v in shared.items() if k.startswith("aispend:registry"))
    out["quiet_tick"] = metered(lambda: vm.tick(worker=1))

    def request(key: str, worker: int):
        headers = [(n, f"Bearer {key}" if n == "authorization" else v) for n, v in HEADERS]
        ex = vm.http_request(path="/v1/chat/completions", headers=headers, chunks=[BODY, b""],
                             upstream=lambda _r: Reply(200, [("content-type", "application/json")],
                                                       [REPLY, b""]), worker=worker)
        assert ex.client.status == 200, (key, ex.client.status, ex.client.body[:200])

    registry_key = f"sk-aispend-bench-{n // 2:08d}"
    for key in (registry_key, STATIC_KEY):  # warm the digest caches
        request(key, 1)
    out["request_registry_key"] = metered(lambda: request(registry_key, 1))
    out["request_static_key"] = metered(lambda: request(STATIC_KEY, 1))
    return out


def total(d: dict) -> int:
    return int(sum(v for k, v in d.items() if not k.startswith("_")))


def main(argv: list[str]) -> int:
    sizes = [int(a) for a in argv] or [10_000, 100_000]
    if not WASM.exists():
        sys.exit(f"registry_fuel: {WASM} missing; run `make wasm`")
    fuel_engine()
    meter = fuel.Meter()
    print("key registry at scale (wasm instructions = fuel; Envoy profile, 2 workers)")
    for n in sizes:
        r = measure(meter, n)
        print(f"\n{n:,} keys")
        print(f"  snapshot (collector JSON)            {r['snapshot_bytes']:>14,} bytes")
        print(f"  shared data (keys + meta)            {r['shared_bytes']:>14,} bytes")
        print(f"  poll taking a new version in         {total(r['poll']):>14,} instructions"
              f"  ({r['poll']['_seconds']:.2f} s in the test host)")
        print(f"  other worker's tick decoding it      {total(r['other_worker_tick']):>14,} instructions"
              f"  ({r['other_worker_tick']['_seconds']:.2f} s)")
        print(f"  tick with nothing new                {total(r['quiet_tick']):>14,} instructions")
        print(f"  one chat call, registry key          {total(r['request_registry_key']):>14,} instructions")
        print(f"  one chat call, static config key     {total(r['request_static_key']):>14,} instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
