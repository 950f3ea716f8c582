"""Start, wait for and stop the real processes of the end-to-end tests
(collector binary, Envoy) and keep their logs for failure reports."""
from __future__ import annotations

import http.client as httpclient
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VENV_ENVOY = ROOT / ".venv" / "bin" / "envoy"
# Overridable so a developer can test binaries from another target dir.
WASM = Path(os.environ.get("AISPEND_WASM", ROOT / "target/wasm32-wasip1/release/aispend_plugin.wasm"))
COLLECTOR_BIN = Path(os.environ.get("AISPEND_COLLECTOR_BIN", ROOT / "target/release/aispend-collector"))

INGEST_TOKEN, READ_TOKEN, ADMIN_TOKEN = "demo-ingest-token", "demo-read-token", "demo-admin-token"

# An API token secret as the collector issues it (CONTRACTS §9).
API_TOKEN_SECRET = re.compile(r"ast-[0-9a-f]{48}")
# Secrets that are generated during a test and so cannot be listed: API
# token secrets, and any virtual key (issued, demo or made up: only the masked
# `sk-aispend-…1234` form may be logged).
GENERATED_SECRETS = (API_TOKEN_SECRET, re.compile(r"sk-aispend-[0-9A-Za-z][0-9A-Za-z_-]{3,}"))
# Every secret a test hands to a process (tokens, virtual keys, provider
# credentials, webhook and signing secrets), through `secret()`; the session
# fails if any is in a log a collector or Envoy wrote (conftest.py).
SECRETS: set[str] = {INGEST_TOKEN, READ_TOKEN, ADMIN_TOKEN}
# The log file of every collector and Envoy the suite started.
LOGS: list[Path] = []


def secret(value: str) -> str:
    """Registers a test secret for the end-of-session log scan; returns it."""
    SECRETS.add(value)
    return value


def secrets_in_logs(paths: list[Path] | None = None) -> list[str]:
    """`path: what` for each registered or generated secret found in a log."""
    found = []
    for path in dict.fromkeys(LOGS if paths is None else paths):
        text = path.read_text(errors="replace") if path.exists() else ""
        for s in sorted(SECRETS):
            if s in text:
                found.append(f"{path}: a registered secret ({s[:6]}…)")
        for pattern in GENERATED_SECRETS:
            m = pattern.search(text)
            if m:
                found.append(f"{path}: a generated secret ({m.group(0)[:13]}…)")
    return found


def assert_no_secrets(log: str, extra: list[str] | tuple[str, ...] = ()) -> None:
    """Fails when a log holds a bootstrap token, an API token secret or any of `extra`."""
    for secret in (INGEST_TOKEN, READ_TOKEN, ADMIN_TOKEN, *extra):
        assert secret not in log, f"a secret ({secret[:6]}…) is in a log"
    found = API_TOKEN_SECRET.search(log)
    assert not found, f"an API token secret ({found.group(0)[:8]}…) is in a log"


# Every process started by a test, so a failing test can print their logs.
LIVE: list["Proc"] = []


# Ports handed out by `free_port` in this run (never twice).
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A port for a process a test starts. Below the kernel's ephemeral range
    (/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 here), so a port
    the kernel gives to a `bind(0)` (the mock provider, the receivers) or to
    an outgoing connection between this call and the process's own bind can
    never be it; never the same one twice in a run; free when handed out."""
    import random
    low, high = 20000, 32767
    try:
        first = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        high = min(high, first - 1)
    except (OSError, ValueError, IndexError):
        pass
    for _ in range(1000 if high > low else 0):
        port = random.randint(low, high)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method: str, port: int, path: str, body=None, headers: dict | None = None, timeout: float = 10):
    """One HTTP/1.1 call to 127.0.0.1:port -> (status, headers dict lowercased, body bytes)."""
    conn = httpclient.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
        hdrs = {"content-type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def wait_until(check, timeout: float, what: str, interval: float = 0.1):
    """Poll `check()` until it returns a truthy value; fail with `what` on timeout."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (OSError, httpclient.HTTPException, ValueError) as e:
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


class Proc:
    """A child process whose stdout+stderr go to a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict | None = None):
        self.name, self.argv, self.log, self.env = name, argv, log, env
        self.popen: subprocess.Popen | None = None
        LOGS.append(log)

    def start(self) -> "Proc":
        out = open(self.log, "ab")
        self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                      env={**os.environ, **(self.env or {})}, start_new_session=True)
        out.close()
        if self not in LIVE:
            LIVE.append(self)
        return self

    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def forget(self) -> None:
        if self in LIVE:
            LIVE.remove(self)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


class Collector:
    """The real aispend-collector binary on a free port with SQLite in `workdir`."""

    def __init__(self, workdir: Path, port: int | None = None, env: dict | None = None):
        self.port = port or free_port()
        self.workdir = workdir
        env = {
            "AISPEND_LISTEN": f"127.0.0.1:{self.port}",
            "AISPEND_DATABASE_URL": f"sqlite://{workdir}/aispend.db",
            "AISPEND_INGEST_TOKEN": INGEST_TOKEN,
            "AISPEND_READ_TOKEN": READ_TOKEN,
            "AISPEND_ADMIN_TOKEN": ADMIN_TOKEN,
            "RUST_LOG": os.environ.get("RUST_LOG", "info"),
            **(env or {}),
        }
        self.proc = Proc("collector", [str(COLLECTOR_BIN)], workdir / "collector.log", env)

    def start(self) -> "Collector":
        assert COLLECTOR_BIN.exists(), f"{COLLECTOR_BIN} missing: run `make collector`"
        self.proc.start()
        wait_until(self._healthy, 20, f"collector /healthz on port {self.port}")
        return self

    def _healthy(self) -> bool:
        if not self.proc.running():
            raise AssertionError(f"collector exited:\n{self.proc.tail()}")
        return call("GET", self.port, "/healthz", timeout=1)[0] == 200

    def stop(self) -> None:
        self.proc.stop()

    def usage(self, **params) -> dict:
        from urllib.parse import urlencode
        status, _, body = call("GET", self.port, "/v1/usage?" + urlencode(params),
                               headers={"authorization": f"Bearer {READ_TOKEN}"})
        assert status == 200, f"/v1/usage answered {status}: {body[:500]!r}"
        return json.loads(body)


class Envoy:
    """Real Envoy 1.40 (from .venv) rendered from envoy/envoy.yaml.tmpl."""

    def __init__(self, workdir: Path, *, upstream: str, collector_port: int, filter_config: dict | str | None,
                 wasm: Path | None = WASM, concurrency: int = 1, jwks: str | None = None, name: str = "envoy"):
        import sys
        sys.path.insert(0, str(ROOT / "envoy"))
        import render  # envoy/render.py

        self.port, self.admin_port = free_port(), free_port()
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(render.render(
            listen_port=self.port, admin_port=self.admin_port, collector_port=collector_port,
            upstream=upstream, wasm_path=str(wasm) if wasm else None,
            filter_config=filter_config, jwks=jwks))
        self.proc = Proc(name, [str(VENV_ENVOY), "-c", str(self.config_path), "--concurrency", str(concurrency),
                                "--disable-hot-restart", "--log-level", "warn",
                                "--component-log-level", "wasm:info"], workdir / f"{name}.log")

    def start(self, wait: bool = True) -> "Envoy":
        assert VENV_ENVOY.exists(), f"{VENV_ENVOY} missing: run `make venv`"
        if self.config_path.read_text().count(".wasm") and not WASM.exists():
            raise AssertionError(f"{WASM} missing: run `make wasm`")
        self.proc.start()
        if wait:
            wait_until(self._ready, 30, f"envoy ready on port {self.port}")
        return self

    def _ready(self) -> bool:
        if not self.proc.running():
            raise AssertionError(f"envoy exited:\n{self.proc.tail()}")
        return call("GET", self.admin_port, "/ready", timeout=1)[0] == 200

    def stop(self) -> None:
        self.proc.stop()

    def request(self, method: str, path: str, body=None, headers: dict | None = None, timeout: float = 15):
        return call(method, self.port, path, body, headers, timeout)

    def stats(self, contains: str = "aispend") -> dict[str, int]:
        """Admin counters and gauges whose name contains `contains`."""
        _, _, body = call("GET", self.admin_port, "/stats?usedonly", timeout=5)
        out = {}
        for line in body.decode().splitlines():
            name, _, value = line.partition(": ")
            if contains in name and value.strip().lstrip("-").isdigit():
                out[name] = int(value)
        return out
