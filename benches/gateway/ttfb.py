#!/usr/bin/env python3
"""Streaming time-to-first-byte benchmark (issue 5): through Envoy (one worker),
is the first body byte of a streamed chat completion within 1 ms with aispend
as with the no-op wasm filter?

Runs the collector, the mock provider (tests/mock_provider, streaming SSE with
a delay before every event) and, in turn, Envoy with (b) the no-op wasm filter
and (c) aispend. For each, one client on one keep-alive connection sends
streamed OpenAI chat requests one at a time and times, from just before the
request is written: the response headers, the first body byte and the end of
the stream.

Environment:
  TTFB_REQUESTS        measured requests per variant and round (default 200)
  TTFB_ROUNDS          rounds; variants run b c, c b, b c ... (ABBA, so slow
                       drift of a shared machine hits both alike); figures are
                       the median over rounds (default 2)
  TTFB_EVENT_DELAY_MS  mock delay before each SSE event (default 5)
  TTFB_TOKENS          streamed words; the stream has TOKENS + 4 events
                       (role, words, finish, usage, [DONE]) (default 16)
  TTFB_WARMUP          unmeasured requests per Envoy start (default 10)

Defaults: 20 events x 5 ms = a ~100 ms stream; ~2 x 2 x 200 x 0.1 s = 80 s.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from statistics import median, quantiles
from typing import Iterator

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench  # noqa: E402  (reuse its binaries, process and port helpers)

REQUESTS = int(os.environ.get("TTFB_REQUESTS", "200"))
ROUNDS = int(os.environ.get("TTFB_ROUNDS", "2"))
EVENT_DELAY_MS = int(os.environ.get("TTFB_EVENT_DELAY_MS", "5"))
TOKENS = int(os.environ.get("TTFB_TOKENS", "16"))
WARMUP = int(os.environ.get("TTFB_WARMUP", "10"))
EVENTS = TOKENS + 4
TARGET_MS = 1.0
FLUSH_WAIT_S = 1.5  # > collector.flush_interval_ms of envoy/demo-filter-config.json
VARIANTS = {"b) no-op wasm": bench.NOOP, "c) aispend": bench.WASM}

# include_usage is set by the client so both variants stream the same events:
# otherwise aispend adds it upstream (openai_stream_usage) and the aispend
# stream would carry one more delayed event than the no-op one.
BODY = json.dumps({
    "model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": True},
    "max_tokens": TOKENS,
    "messages": [{"role": "user", "content": "stream a reply for the ttfb benchmark"}],
}).encode()


def request_bytes(port: int) -> bytes:
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            "content-type: application/json\r\nauthorization: Bearer sk-aispend-demo-search\r\n"
            f"x-mock-delay-ms: {EVENT_DELAY_MS}\r\ncontent-length: {len(BODY)}\r\n\r\n")
    return head.encode() + BODY


class Connection:
    """One keep-alive HTTP/1.1 client connection that reads responses by hand,
    so it knows when each part arrived (http.client hides the recv calls)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.t_recv = 0  # perf_counter_ns of the latest recv

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        self.t_recv = time.perf_counter_ns()
        if not data:
            raise ConnectionError("Envoy closed the connection")
        self.buf += data

    def _line(self, sep: bytes = b"\r\n") -> bytes:
        while (i := self.buf.find(sep)) < 0:
            self._fill()
        line = bytes(self.buf[:i])
        del self.buf[: i + len(sep)]
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _first_byte_time(self) -> int:
        # We recv only while headers or a chunk-size line are incomplete, so
        # any body byte already buffered came with the latest recv.
        if not self.buf:
            self._fill()
        return self.t_recv

    def exchange(self, request: bytes) -> dict:
        """Send one request; return status, body and the three times in ns
        since the send."""
        t0 = time.perf_counter_ns()
        self.sock.sendall(request)
        head = self._line(b"\r\n\r\n").decode("latin-1").split("\r\n")
        t_headers = self.t_recv
        status = int(head[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        t_first = None
        body = bytearray()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while size := int(self._line().split(b";")[0], 16):
                if t_first is None:
                    t_first = self._first_byte_time()
                body += self._take(size)
                self._line()
            while self._line():  # trailers, up to the empty line
                pass
        else:
            size = int(headers.get("content-length", "0"))
            if size:
                t_first = self._first_byte_time()
            body += self._take(size)
        t_end = self.t_recv
        return {"status": status, "body": bytes(body), "headers_ns": t_headers - t0,
                "first_ns": (t_first or t_end) - t0, "end_ns": t_end - t0}


def check_stream(variant: str, r: dict) -> None:
    """Stop on anything but the whole stream: a denied or broken request would
    time an error page, not the streaming path."""
    text = r["body"].decode("utf-8", "replace")
    events = text.count("data: ")
    if r["status"] != 200 or "data: [DONE]" not in text or events != EVENTS:
        sys.exit(f"ttfb: {variant}: expected status 200 and {EVENTS} SSE events ending in [DONE], got "
                 f"status {r['status']} with {events} events:\n{text[:1500]}")


def run_requests(variant: str, port: int) -> list[dict]:
    conn = Connection(port)
    request = request_bytes(port)
    try:
        for _ in range(WARMUP):  # connection pools, wasm VM, first-use paths
            check_stream(variant, conn.exchange(request))
        out = []
        for _ in range(REQUESTS):
            r = conn.exchange(request)
            check_stream(variant, r)
            out.append({k: r[k] for k in ("headers_ns", "first_ns", "end_ns")})
        return out
    finally:
        conn.close()


@contextmanager
def envoy(name: str, wasm: Path, upstream_port: int, collector_port: int, tmp: Path) -> Iterator[int]:
    """Envoy with one worker and `wasm` loaded with the demo config; yields its port."""
    port, admin = bench.free_port(), bench.free_port()
    cfg = tmp / f"{name}.yaml"
    cfg.write_text(bench.render.render(
        listen_port=port, admin_port=admin, collector_port=collector_port,
        upstream=f"http://127.0.0.1:{upstream_port}", wasm_path=str(wasm),
        filter_config=(bench.ROOT / "envoy" / "demo-filter-config.json").read_text()))
    log = tmp / f"{name}.log"
    proc = bench.spawn([str(bench.ENVOY), "-c", str(cfg), "--concurrency", "1", "--disable-hot-restart",
                        "--log-level", "warn"], log)
    try:
        bench.wait_ok(f"http://127.0.0.1:{admin}/ready", proc, log)
        yield port
    finally:
        bench.stop(proc)


def percentiles(values: list[float]) -> dict:
    cuts = quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98]}


def summarize(samples: list[dict]) -> dict:
    """Percentiles in ms of one variant's round, and how many requests got
    their first byte less than half the stream's span before the end (a
    filter that buffered the stream would fail all of them)."""
    ms = {k: [s[k] / 1e6 for s in samples] for k in ("headers_ns", "first_ns", "end_ns")}
    half_span_ms = (EVENTS - 1) * EVENT_DELAY_MS / 2
    late = sum(1 for f, e in zip(ms["first_ns"], ms["end_ns"]) if e - f < half_span_ms)
    return {"headers": percentiles(ms["headers_ns"]), "first": percentiles(ms["first_ns"]),
            "end": percentiles(ms["end_ns"]), "late_first_byte": late}


def median_summary(rounds: list[dict]) -> dict:
    return {part: {p: median(r[part][p] for r in rounds) for p in ("p50", "p90", "p99")}
            for part in ("headers", "first", "end")} | {"late_first_byte": sum(r["late_first_byte"] for r in rounds)}


def recorded_usage(collector_port: int) -> dict:
    """What the collector stored for team `search`: proof that (c) accounted
    the streams it passed through (usage parsed from the SSE usage event)."""
    req = urllib.request.Request(f"http://127.0.0.1:{collector_port}/v1/usage?group_by=team&filter.team=search",
                                 headers={"authorization": "Bearer demo-read-token"})
    with urllib.request.urlopen(req, timeout=10) as r:
        totals = json.load(r).get("totals") or {}
    return {k: int(totals.get(k) or 0) for k in ("requests", "output_tokens")}


def start_services(tmp: Path) -> tuple[list, int, int]:
    """The collector (as bench.py runs it) and the mock provider; returns the
    processes and their ports."""
    up_port, coll_port = bench.free_port(), bench.free_port()
    collector = bench.spawn([str(bench.COLLECTOR)], tmp / "collector.log", {
        "AISPEND_LISTEN": f"127.0.0.1:{coll_port}", "AISPEND_DATABASE_URL": f"sqlite://{tmp}/aispend.db",
        "AISPEND_INGEST_TOKEN": "demo-ingest-token", "AISPEND_READ_TOKEN": "demo-read-token",
        "AISPEND_ADMIN_TOKEN": "demo-admin-token"})
    mock = bench.spawn([sys.executable, "-m", "mock_provider", "--port", str(up_port)], tmp / "mock.log",
                       {"PYTHONPATH": str(bench.ROOT / "tests")})
    procs = [collector, mock]
    try:
        bench.wait_ok(f"http://127.0.0.1:{coll_port}/healthz", collector, tmp / "collector.log")
        bench.wait_ok(f"http://127.0.0.1:{up_port}/__mock/requests", mock, tmp / "mock.log")
    except BaseException:
        for p in procs:
            bench.stop(p)
        raise
    return procs, up_port, coll_port


def report(results: dict) -> bool:
    """Print the table and the checks; False when a stream was not passed
    through as it arrived (the timing target is reported, not enforced)."""
    print(f"\nstreaming TTFB: 1 Envoy worker, 1 keep-alive connection, {REQUESTS} requests x {ROUNDS} round(s) "
          f"per variant, {EVENTS} SSE events {EVENT_DELAY_MS} ms apart (first one after {EVENT_DELAY_MS} ms); "
          f"median over rounds, ms")
    print(f"{'variant':<16}{'hdr p50':>9}{'1st p50':>9}{'1st p90':>9}{'1st p99':>9}{'end p50':>9}{'end p99':>9}")
    for name, r in results.items():
        h, f, e = r["headers"], r["first"], r["end"]
        cells = (h["p50"], f["p50"], f["p90"], f["p99"], e["p50"], e["p99"])
        print(f"{name:<16}" + "".join(f"{v:>9.3f}" for v in cells))
    b, c = results["b) no-op wasm"], results["c) aispend"]
    diff = c["first"]["p50"] - b["first"]["p50"]
    verdict = "OK" if diff <= TARGET_MS else "MISS"
    print(f"\nTTFB p50 (c)-(b): {diff:+.3f} ms   (target <= {TARGET_MS:.0f} ms)  {verdict}")
    print(f"headers p50 (c)-(b): {c['headers']['p50'] - b['headers']['p50']:+.3f} ms")
    if EVENT_DELAY_MS == 0:
        print("streaming not checked: TTFB_EVENT_DELAY_MS=0 leaves no gap between first byte and end")
        return False
    for name, r in results.items():
        late = r["late_first_byte"]
        ratio = r["first"]["p50"] / r["end"]["p50"]
        print(f"{name}: first byte at {ratio:.0%} of the stream (p50); requests whose first byte came within "
              f"half a stream of the end: {late}/{REQUESTS * ROUNDS}  {'OK (streamed)' if late == 0 else 'MISS'}")
    return all(r["late_first_byte"] == 0 for r in results.values())


def main() -> int:
    for f in (bench.ENVOY, bench.WASM, bench.NOOP, bench.COLLECTOR):
        if not f.exists():
            sys.exit(f"ttfb: {f} missing; run `make venv wasm collector`")
    tmp = Path(tempfile.mkdtemp(prefix="aispend-ttfb-"))
    procs, up_port, coll_port = start_services(tmp)
    rounds: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    try:
        for rnd in range(ROUNDS):
            order = list(VARIANTS) if rnd % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                print(f"ttfb: round {rnd + 1}/{ROUNDS}: {name} ...", file=sys.stderr, flush=True)
                with envoy(name.split()[0].rstrip(")"), VARIANTS[name], up_port, coll_port, tmp) as port:
                    rounds[name].append(summarize(run_requests(name, port)))
                    if VARIANTS[name] == bench.WASM:
                        time.sleep(FLUSH_WAIT_S)  # let the filter ship its last batch
        recorded = recorded_usage(coll_port)
    finally:
        for p in procs:
            bench.stop(p)
    results = {name: median_summary(r) for name, r in rounds.items()}
    streamed = report(results)
    calls = ROUNDS * (WARMUP + REQUESTS)
    ok = recorded["requests"] == calls and recorded["output_tokens"] == calls * TOKENS
    print(f"collector recorded {recorded['requests']} aispend calls with {recorded['output_tokens']} output tokens "
          f"(sent {calls} streamed calls x {TOKENS} tokens)  {'OK' if ok else 'MISS'}")
    (tmp / "results.json").write_text(json.dumps({"median": results, "rounds": rounds}, indent=2))
    print(f"raw results and logs: {tmp}")
    return 0 if streamed and ok else 1


if __name__ == "__main__":
    sys.exit(main())
