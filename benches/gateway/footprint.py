#!/usr/bin/env python3
"""Where a chat call's compiled code is (`make bench-footprint`): which wasm
functions a call runs, how many instruction-cache lines of their machine code
it touches and how often it misses there, aispend against the floor filter.

`make bench-instr` shows that aispend and the floor run nearly the same
number of instructions in Envoy per call, and that aispend's compiled wasm
misses the L1 instruction cache several hundred times more per call: a call
runs more distinct code once. This names that code, function by function,
so a change to the request path can be judged by the lines it removes.

How: the chat call of `make bench-fuel` (benches/gateway/fuel.py, demo
config) runs in the test host (tests/wasm_host) on Wasmtime with its
`perfmap` profiler, which writes each compiled function's address and name
to /tmp/perf-<pid>.map; the wasm is a build that keeps its name section
(target/symbols, the release profile with strip off: the same code). The
process runs under valgrind's callgrind with collection off; after WARMUP
calls collection is turned on for CALLS calls, with the L1 caches of this
CPU simulated, and every instruction's count and misses are mapped to the
function that holds it. Wasmtime's Cranelift is not V8's TurboFan, so the
absolute figures differ from Envoy's; both compile the same functions with
the same inlining, and the ranking is what this is for. The test host's
Python runs between callbacks and evicts the cache as Envoy's own code
does: misses come close to the lines a call touches.

Per function: lines run every call (64-byte lines holding an instruction
every call ran), I1 misses and instructions per call. Root ticks (the
batch dispatch) are not in the window: the records written a few calls at
a time on the request path are.

Environment: FOOTPRINT_CALLS (default 200), FOOTPRINT_TOP (default 40),
FOOTPRINT_WASM, FOOTPRINT_FLOOR (wasm builds with a name section).
"""
from __future__ import annotations

import bisect
import collections
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

CALLS = int(os.environ.get("FOOTPRINT_CALLS", "200"))
TOP = int(os.environ.get("FOOTPRINT_TOP", "40"))
WARMUP = 300
SYMBOLS = ROOT / "target" / "symbols" / "wasm32-wasip1" / "release"
WASM = Path(os.environ.get("FOOTPRINT_WASM", SYMBOLS / "aispend_plugin.wasm"))
FLOOR = Path(os.environ.get("FOOTPRINT_FLOOR", SYMBOLS / "floor_filter.wasm"))
LINE = 64


def child(wasm: Path, variant: str, warmup: int, calls: int) -> None:
    """Run the chat calls; between warm-up and the measured calls, wait for
    the parent to switch collection on (a line on stdin)."""
    import wasmtime

    import fuel
    from tests.wasm_host import host as host_mod
    from tests.wasm_host.host import Host, Reply

    cfg = wasmtime.Config()
    cfg.profiler = "perfmap"
    cfg.cache = True  # compiled natively by the first run, loaded under valgrind
    host_mod._ENGINE = wasmtime.Engine(cfg)
    host_mod._MODULES.clear()
    config = b"" if variant == "floor" else fuel.demo_config(False)

    def collector(call):
        body = fuel.CAPS_REPLY if call.path.startswith("/v1/caps") else b'{"accepted":0}'
        return Reply(200, [("content-type", "application/json")], body)

    def upstream(_request):
        return Reply(200, [("content-type", "application/json")], [fuel.REPLY, b""])

    vm = Host("envoy", wasm, config, workers=1, clusters={"aispend_collector": fuel.COLLECTOR},
              strict=False, dispatch=collector)

    def run(n: int) -> None:
        for _ in range(n):
            ex = vm.http_request(path="/v1/chat/completions", headers=fuel.HEADERS,
                                 chunks=[fuel.BODY, b""], upstream=upstream)
            if ex.client.status != 200:
                sys.exit(f"footprint: {wasm.name} answered {ex.client.status}")

    run(warmup)
    print("ready", flush=True)
    sys.stdin.readline()
    run(calls)
    print("done", flush=True)
    sys.stdin.readline()


def perf_map(pid: int, keep: Path) -> list[tuple[int, int, str]]:
    """Wasmtime's map of the compiled functions, moved beside the profile."""
    shutil.move(f"/tmp/perf-{pid}.map", keep)
    entries = []
    for line in keep.read_text().splitlines():
        start, size, name = line.split(" ", 2)
        entries.append((int(start, 16), int(size, 16), name))
    return sorted(entries)


def per_function(out: Path, entries: list[tuple[int, int, str]]) -> dict[str, dict]:
    """Self counts per compiled function from a `--dump-instr=yes` profile
    (callgrind's compressed positions: absolute, +n, -n or `*`)."""
    starts = [e[0] for e in entries]
    lo, hi = entries[0][0], entries[-1][0] + entries[-1][1]
    events: list[str] = []
    ir: dict[str, int] = collections.Counter()
    i1: dict[str, int] = collections.Counter()
    line_ir: dict[tuple[str, int], int] = collections.Counter()
    addr, after_call, npos = 0, False, 1
    for line in out.read_text().splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
            continue
        if line.startswith("positions:"):
            npos = len(line.split()) - 1
            continue
        if line.startswith("calls="):
            after_call = True  # the next cost line is the call's inclusive cost
            continue
        if not line or line[0] not in "+-*0123456789":
            continue
        fields = line.split()
        pos = fields[0]
        if pos.startswith("0x"):
            addr = int(pos, 16)
        elif pos[0] in "+-":
            step = int(pos[1:], 16) if pos[1:].startswith("0x") else int(pos[1:])
            addr += step if pos[0] == "+" else -step
        if after_call:
            after_call = False
            continue
        if not lo <= addr < hi:
            continue
        k = bisect.bisect_right(starts, addr) - 1
        start, size, name = entries[k]
        if addr >= start + size:
            continue
        values = dict(zip(events, (int(v) for v in fields[npos:])))
        ir[name] += values.get("Ir", 0)
        i1[name] += values.get("I1mr", 0)
        line_ir[(name, addr // LINE)] = max(line_ir[(name, addr // LINE)], values.get("Ir", 0))
    lines: dict[str, int] = collections.Counter()
    for (name, _), n in line_ir.items():
        if n >= CALLS:
            lines[name] += 1
    return {name: {"ir": ir[name] / CALLS, "i1": i1[name] / CALLS, "lines": lines[name]} for name in ir}


def measure(wasm: Path, variant: str, tmp: Path) -> dict[str, dict]:
    me = [sys.executable, __file__, "--child", str(wasm), variant]
    # Compile natively once (Wasmtime's cache): Cranelift under valgrind is slow.
    warm = subprocess.Popen([*me, "1", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _, err = warm.communicate("\n\n", timeout=300)
    Path(f"/tmp/perf-{warm.pid}.map").unlink(missing_ok=True)
    if warm.returncode != 0:
        sys.exit(f"footprint: {wasm.name}: {err[-2000:]}")
    out = tmp / f"callgrind-{variant}.out"
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--cache-sim=yes", "--dump-instr=yes",
         f"--callgrind-out-file={out}", *me, str(WARMUP), str(CALLS)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=(tmp / f"{variant}.log").open("w"), text=True)
    try:
        for want, toggle in (("ready", "on"), ("done", "off")):
            got = proc.stdout.readline().strip()
            if got != want:
                sys.exit(f"footprint: {variant}: expected {want!r}, got {got!r} (log {tmp}/{variant}.log)")
            subprocess.run(["callgrind_control", "-i", toggle, str(proc.pid)], check=True, capture_output=True)
            proc.stdin.write("\n")
            proc.stdin.flush()
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    return per_function(out, perf_map(proc.pid, tmp / f"perf-{variant}.map"))


def short(name: str) -> str:
    """A function's path without its hash and crate-version suffixes."""
    name = re.sub(r"::h[0-9a-f]{16}$", "", re.sub(r"\[[0-9a-f]{16}\]", "", name))
    return name.replace("aispend_plugin::", "").replace("floor_filter::", "")[:90]


def main() -> int:
    import tempfile

    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return 0
    for f in (WASM, FLOOR):
        if not f.exists():
            sys.exit(f"footprint: {f} missing; run `make bench-footprint` (it builds target/symbols)")
    tmp = Path(tempfile.mkdtemp(prefix="aispend-footprint-"))
    results = {}
    for name, wasm, variant in (("c) aispend", WASM, "aispend"), ("e) floor calls", FLOOR, "floor")):
        print(f"bench-footprint: {name} ...", file=sys.stderr, flush=True)
        results[name] = measure(wasm, variant, tmp)
    print(f"\nCompiled wasm per chat call (test host, Wasmtime/Cranelift, callgrind L1 simulation, {CALLS} calls)")
    for name, fns in results.items():
        run = [f for f in fns.values() if f["lines"]]
        print(f"{name:<16} functions run every call {len(run):>4}   lines run every call {sum(f['lines'] for f in fns.values()):>5}"
              f"   I1 misses {sum(f['i1'] for f in fns.values()):>7,.0f}"
              f"   instructions {sum(f['ir'] for f in fns.values()):>8,.0f}")
    for name, fns in results.items():
        print(f"\n{name}: functions by I1 misses per call")
        print(f"{'lines':>6}{'misses':>8}{'instr':>8}  function")
        for fn, f in sorted(fns.items(), key=lambda kv: -kv[1]["i1"])[:TOP]:
            print(f"{f['lines']:>6}{f['i1']:>8.1f}{f['ir']:>8.0f}  {short(fn)}")
    print(f"\nraw results and logs: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
