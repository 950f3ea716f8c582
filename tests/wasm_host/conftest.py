"""Fixtures for the wasm host tests. The .wasm files come from
$AISPEND_WASM_DIR (default target/wasm32-wasip1/release); build them with
`cargo build --release --target wasm32-wasip1 -p noop-filter -p aispend-plugin`."""

import pathlib
import sys

import pytest

# `import wasm_host` from the tests/ directory, however pytest was started.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from wasm_host import wasm_dir  # noqa: E402

PROBE = pathlib.Path(__file__).resolve().parent / "probe" / "probe.wat"


def _wasm(name):
    path = wasm_dir() / name
    if not path.exists():
        pytest.fail(
            f"{path} is missing: run `cargo build --release --target wasm32-wasip1 "
            f"-p noop-filter -p aispend-plugin` (or set AISPEND_WASM_DIR)"
        )
    return path


@pytest.fixture(scope="session")
def noop_wasm():
    return _wasm("noop_filter.wasm")


@pytest.fixture(scope="session")
def plugin_wasm():
    return _wasm("aispend_plugin.wasm")


@pytest.fixture(scope="session")
def probe_wat():
    return PROBE


@pytest.fixture(params=["envoy", "kong"])
def profile(request):
    return request.param


@pytest.fixture
def http_sink():
    """A real HTTP server on 127.0.0.1 that records what it receives and
    answers 200 {"accepted": n} — a stand-in collector for live dispatch."""
    import http.server
    import json
    import threading

    received = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append({"path": self.path, "host": self.headers.get("host"),
                             "authorization": self.headers.get("authorization"),
                             "body": body})
            try:
                count = len(json.loads(body).get("records", []))
            except (ValueError, AttributeError):
                count = 0
            answer = json.dumps({"accepted": count, "duplicates": 0, "rejected": []}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *_args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], received
    server.shutdown()
    server.server_close()
