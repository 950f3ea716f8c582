#!/usr/bin/env python3
"""Gateway benchmark (`make bench`): the same Envoy config with (a) no wasm
filter, (b) the no-op wasm filter, (c) aispend, each under wrk on loopback
against a fast direct_response upstream, one Envoy worker.

Environment: BENCH_DURATION (s, default 10), BENCH_CONNECTIONS (default 16),
BENCH_ROUNDS (default 1: a, b, c run in turn this many times and the median of
each figure is reported, which evens out noise from a shared machine).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from string import Template

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "envoy"))
import render  # noqa: E402

ENVOY = ROOT / ".venv" / "bin" / "envoy"
WASM = Path(os.environ.get("AISPEND_WASM", ROOT / "target/wasm32-wasip1/release/aispend_plugin.wasm"))
NOOP = Path(os.environ.get("AISPEND_NOOP_WASM", ROOT / "target/wasm32-wasip1/release/noop_filter.wasm"))
COLLECTOR = Path(os.environ.get("AISPEND_COLLECTOR_BIN", ROOT / "target/release/aispend-collector"))
DURATION = int(os.environ.get("BENCH_DURATION", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "16"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "1"))
UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ok(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench: process for {url} exited; log tail:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"bench: {url} not ready")


def spawn(argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})}, start_new_session=True)


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def parse_wrk(out: str) -> dict:
    def us(text: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s)$", text)
        return float(m.group(1)) * UNITS[m.group(2)] if m else float("nan")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": float(rps.group(1)) if rps else 0.0, "p50_us": us(pct.get("50", "")),
            "p99_us": us(pct.get("99", "")), "non2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(0) if errors else ""}


def wrk(port: int, connections: int, duration: int) -> dict:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(HERE / "post.lua"),
            f"http://127.0.0.1:{port}/v1/chat/completions"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return parse_wrk(out)


def run_variant(name: str, wasm: Path | None, upstream_port: int, collector_port: int, tmp: Path) -> dict:
    port, admin = free_port(), free_port()
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(render.render(listen_port=port, admin_port=admin, collector_port=collector_port,
                                 upstream=f"http://127.0.0.1:{upstream_port}", wasm_path=str(wasm) if wasm else None,
                                 filter_config=(ROOT / "envoy" / "demo-filter-config.json").read_text()))
    log = tmp / f"{name}.log"
    envoy = spawn([str(ENVOY), "-c", str(cfg), "--concurrency", "1", "--disable-hot-restart",
                   "--log-level", "warn"], log)
    try:
        wait_ok(f"http://127.0.0.1:{admin}/ready", envoy, log)
        wrk(port, CONNECTIONS, 2)  # warm-up: JIT, connection pools
        loaded = wrk(port, CONNECTIONS, DURATION)
        single = wrk(port, 1, max(3, DURATION // 2))
        return {"loaded": loaded, "single": single}
    finally:
        stop(envoy)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, to show what the collector cost during (c)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_result(runs: list[dict]) -> dict:
    from statistics import median as med
    return {kind: {k: (med([r[kind][k] for r in runs]) if isinstance(runs[0][kind][k], (int, float))
                       else runs[-1][kind][k]) for k in runs[0][kind]}
            for kind in ("loaded", "single")}


def fmt_row(name: str, r: dict) -> str:
    lo, si = r["loaded"], r["single"]
    warn = f"  !! {lo['non2xx']} non-2xx" if lo["non2xx"] else ""
    return (f"{name:<16}{lo['rps']:>12.0f}{lo['p50_us']:>10.0f}{lo['p99_us']:>10.0f}"
            f"{si['rps']:>12.0f}{si['p50_us']:>10.0f}{warn}")


def main() -> int:
    for f in (ENVOY, WASM, NOOP, COLLECTOR):
        if not f.exists():
            sys.exit(f"bench: {f} missing; run `make venv wasm collector`")
    if not shutil.which("wrk"):
        sys.exit("bench: wrk not found (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="aispend-bench-"))
    up_port, up_admin, coll_port = free_port(), free_port(), free_port()
    (tmp / "upstream.yaml").write_text(Template((HERE / "upstream.yaml.tmpl").read_text())
                                       .substitute(port=up_port, admin_port=up_admin))
    upstream = spawn([str(ENVOY), "-c", str(tmp / "upstream.yaml"), "--concurrency", "1",
                      "--disable-hot-restart", "--log-level", "warn"], tmp / "upstream.log")
    collector = spawn([str(COLLECTOR)], tmp / "collector.log", {
        "AISPEND_LISTEN": f"127.0.0.1:{coll_port}", "AISPEND_DATABASE_URL": f"sqlite://{tmp}/aispend.db",
        "AISPEND_INGEST_TOKEN": "demo-ingest-token", "AISPEND_READ_TOKEN": "demo-read-token",
        "AISPEND_ADMIN_TOKEN": "demo-admin-token"})
    try:
        wait_ok(f"http://127.0.0.1:{up_admin}/ready", upstream, tmp / "upstream.log")
        wait_ok(f"http://127.0.0.1:{coll_port}/healthz", collector, tmp / "collector.log")
        runs: dict[str, list] = {}
        collector_cpu = 0.0
        for rnd in range(ROUNDS):
            for name, wasm in (("a) no filter", None), ("b) no-op wasm", NOOP), ("c) aispend", WASM)):
                print(f"bench: round {rnd + 1}/{ROUNDS}: {name} ...", file=sys.stderr, flush=True)
                cpu_before = cpu_seconds(collector.pid)
                runs.setdefault(name, []).append(run_variant(name.split()[1], wasm, up_port, coll_port, tmp))
                if wasm == WASM:
                    collector_cpu += cpu_seconds(collector.pid) - cpu_before
        results = {name: median_result(r) for name, r in runs.items()}
    finally:
        stop(upstream)
        stop(collector)

    a, b, c = (results[k] for k in ("a) no filter", "b) no-op wasm", "c) aispend"))
    print(f"\ngateway benchmark: 1 Envoy worker, wrk -t1 -c{CONNECTIONS} -d{DURATION}s (and -c1), loopback, "
          f"median of {ROUNDS} round(s)")
    print(f"{'variant':<16}{'req/s':>12}{'p50 us':>10}{'p99 us':>10}{'c1 req/s':>12}{'c1 p50':>10}")
    for name, r in results.items():
        print(fmt_row(name, r))
    ratio_cb = c["loaded"]["rps"] / b["loaded"]["rps"] if b["loaded"]["rps"] else 0
    ratio_ba = b["loaded"]["rps"] / a["loaded"]["rps"] if a["loaded"]["rps"] else 0
    added_p50 = c["single"]["p50_us"] - b["single"]["p50_us"]
    size = WASM.stat().st_size
    print(f"\n(c)/(b) requests/s: {ratio_cb:.3f}   (target >= 0.90)  {'OK' if ratio_cb >= 0.9 else 'MISS'}")
    print(f"(b)/(a) requests/s: {ratio_ba:.3f}   (cost of loading any wasm filter)")
    print(f"added p50 (c)-(b), 1 connection: {added_p50:.1f} us   (target <= 30 us)  "
          f"{'OK' if added_p50 <= 30 else 'MISS'}")
    print(f"aispend_plugin.wasm: {size} bytes ({size / 1024:.0f} KiB)   (target <= 1 MiB)  "
          f"{'OK' if size <= 1 << 20 else 'MISS'}")
    print(f"collector CPU during (c): {collector_cpu / ROUNDS:.2f} s per round (same 2 cores as Envoy and wrk)")
    if c["loaded"]["non2xx"]:
        print("WARNING: aispend answered non-2xx during the run; its numbers do not measure the happy path")
    (tmp / "results.json").write_text(json.dumps({"median": results, "runs": runs}, indent=2))
    print(f"raw results and logs: {tmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
