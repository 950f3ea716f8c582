#!/usr/bin/env python3
"""`make run`: the collector, the mock provider and Envoy with aispend, in the
foreground until Ctrl-C (CONTRACTS §7).

Environment: AISPEND_PORT (10000), AISPEND_ADMIN_PORT (9901),
AISPEND_COLLECTOR_PORT (9090), AISPEND_UPSTREAM (http://host:port or
https://host; replaces the mock). With a real upstream, OPENAI_API_KEY /
ANTHROPIC_API_KEY / GEMINI_API_KEY become the provider credentials the
gateway sets after removing the virtual key; OPENAI_API_KEY_ID /
ANTHROPIC_API_KEY_ID / GEMINI_API_KEY_ID, the provider's id of that key
(or project), are recorded with each call for reconciliation.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "envoy"))
sys.path.insert(0, str(ROOT / "tests"))
import render  # noqa: E402  envoy/render.py

DATA = Path(os.environ.get("AISPEND_DATA_DIR") or ROOT / "data")
MOCK_PORT = int(os.environ.get("AISPEND_MOCK_PORT") or 18080)
TOKENS = {"ingest": "demo-ingest-token", "read": "demo-read-token", "admin": "demo-admin-token"}
DEMO_KEYS = [("sk-aispend-demo-search", "demo-search", "acme / search / ranking / CC-1001 / prod"),
             ("sk-aispend-demo-growth", "demo-growth", "acme / growth / chatbot / CC-2002 / dev"),
             ("sk-aispend-demo-limited", "demo-limited",
              "acme / research / evals / CC-3003 / dev, 3 requests/min")]
CREDENTIALS = {  # env var -> (provider, header, value format)
    "OPENAI_API_KEY": ("openai", "authorization", "Bearer {}"),
    "ANTHROPIC_API_KEY": ("anthropic", "x-api-key", "{}"),
    "GEMINI_API_KEY": ("gemini", "x-goog-api-key", "{}"),
}


def env_port(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def wait_http(url: str, what: str, procs: list, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, p in procs:
            if p.poll() is not None:
                sys.exit(f"run: {name} exited with {p.returncode} while starting; see {DATA}/{name}.log")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"run: {what} not ready after {timeout}s ({url})")


def filter_config(real_upstream: bool) -> str:
    cfg = json.loads((ROOT / "envoy" / "demo-filter-config.json").read_text())
    # Keys issued over the collector's API (POST /v1/keys) reach the gateway
    # within one poll: the registry is fetched every 2 s from the collector
    # cluster with the ingest token (collector.token, the gateway role).
    cfg["identity"]["registry"] = {"poll_ms": 2000}
    if real_upstream:
        for var, (provider, header, fmt) in CREDENTIALS.items():
            if os.environ.get(var):
                credential = {"header": header, "value": fmt.format(os.environ[var])}
                if os.environ.get(f"{var}_ID"):
                    credential["id"] = os.environ[f"{var}_ID"]
                cfg.setdefault("providers", {})[provider] = {"credential": credential}
    return json.dumps(cfg)


def start(name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
    log = open(DATA / f"{name}.log", "ab")
    # Own session: Ctrl-C reaches only this script, which then stops the
    # children in order instead of racing them.
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                            start_new_session=True, cwd=ROOT)


def banner(port: int, admin: int, collector: int, upstream: str) -> str:
    keys = "\n".join(f"    {k}  -> key_id {kid:<12} ({tags})" for k, kid, tags in DEMO_KEYS)
    return f"""
aispend is running (Ctrl-C stops everything)
  gateway    http://127.0.0.1:{port}      (Envoy + aispend filter; admin http://127.0.0.1:{admin})
  collector  http://127.0.0.1:{collector}       (SQLite: data/aispend.db)
  upstream   {upstream}
  logs       data/envoy.log, data/collector.log{", data/mock.log" if str(MOCK_PORT) in upstream else ""}

  demo virtual keys:
{keys}
  collector tokens: ingest {TOKENS['ingest']}, read {TOKENS['read']}, admin {TOKENS['admin']}
  (demo values: change them outside a demo)

  try:
    curl -s http://127.0.0.1:{port}/v1/chat/completions \\
      -H 'authorization: Bearer sk-aispend-demo-search' -H 'content-type: application/json' \\
      -d '{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hello from search"}}]}}'
    curl -s 'http://127.0.0.1:{collector}/v1/usage?group_by=team,model' \\
      -H 'authorization: Bearer {TOKENS['read']}'
"""


def drain_envoy(admin_port: int, running: bool, wait_s: float = 1.5) -> None:
    """POST /drain_listeners?graceful, then one flush interval (1 s in the
    demo) and the collector's answer, so every record ships before SIGTERM."""
    if not running:
        return
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{admin_port}/drain_listeners?graceful",
                                     method="POST")
        urllib.request.urlopen(req, timeout=2).read()
        time.sleep(wait_s)
    except OSError:
        pass


def main() -> int:
    port = env_port("AISPEND_PORT", 10000)
    admin = env_port("AISPEND_ADMIN_PORT", 9901)
    collector_port = env_port("AISPEND_COLLECTOR_PORT", 9090)
    upstream = os.environ.get("AISPEND_UPSTREAM") or f"http://127.0.0.1:{MOCK_PORT}"
    real_upstream = bool(os.environ.get("AISPEND_UPSTREAM"))
    wasm = Path(os.environ.get("AISPEND_WASM", ROOT / "target/wasm32-wasip1/release/aispend_plugin.wasm"))
    collector_bin = Path(os.environ.get("AISPEND_COLLECTOR_BIN", ROOT / "target/release/aispend-collector"))
    envoy_bin = ROOT / ".venv" / "bin" / "envoy"
    for f, how in ((wasm, "make wasm"), (collector_bin, "make collector"), (envoy_bin, "make venv")):
        if not f.exists():
            sys.exit(f"run: {f} is missing; run `{how}` (or just `make run`)")

    DATA.mkdir(exist_ok=True)
    envoy_yaml = DATA / "envoy.yaml"
    envoy_yaml.touch(mode=0o600)  # may hold provider credentials
    envoy_yaml.write_text(render.render(listen_port=port, admin_port=admin, collector_port=collector_port,
                                        upstream=upstream, wasm_path=str(wasm),
                                        filter_config=filter_config(real_upstream)))

    children: list[tuple[str, subprocess.Popen]] = []
    stopping = False

    def stop_all(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    try:
        children.append(("collector", start("collector", [str(collector_bin)], {
            "AISPEND_LISTEN": f"127.0.0.1:{collector_port}",
            "AISPEND_DATABASE_URL": f"sqlite://{DATA}/aispend.db",
            "AISPEND_INGEST_TOKEN": TOKENS["ingest"], "AISPEND_READ_TOKEN": TOKENS["read"],
            "AISPEND_ADMIN_TOKEN": TOKENS["admin"]})))
        if not real_upstream:
            children.append(("mock", start("mock", [sys.executable, "-m", "mock_provider", "--port", str(MOCK_PORT)],
                                           {"PYTHONPATH": str(ROOT / "tests")})))
        children.append(("envoy", start("envoy", [str(envoy_bin), "-c", str(envoy_yaml), "--concurrency", "2",
                                                  "--disable-hot-restart"])))
        wait_http(f"http://127.0.0.1:{collector_port}/healthz", "collector", children)
        wait_http(f"http://127.0.0.1:{admin}/ready", "envoy", children)
        print(banner(port, admin, collector_port, upstream), flush=True)
        while not stopping:
            for name, p in children:
                if p.poll() is not None:
                    print(f"run: {name} exited with {p.returncode}; see data/{name}.log", file=sys.stderr)
                    stopping = True
            time.sleep(0.2)
    finally:
        # Envoy first, drained: its listeners stop taking calls while the
        # filter's tick still ships what is buffered (a plain SIGTERM stops
        # Envoy's event loop before a record can leave; see the README).
        drain_envoy(admin, any(name == "envoy" for name, _ in children))
        for name, p in reversed(children):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        print("run: stopped collector, mock provider and Envoy", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
