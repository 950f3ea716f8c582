"""The mock LLM provider: an HTTP/1.1 server speaking the OpenAI, Azure OpenAI,
Anthropic and Gemini wire formats with deterministic usage (see usage.py).

Test controls (request headers, never forwarded anywhere):
- `x-mock-status: 500` (or model `error-500`): answer that status with the
  provider's error body;
- `x-mock-delay-ms: 200`: sleep that long before each SSE event;
- `x-mock-split: 1`: write every SSE event in two TCP writes split mid-event;
- `x-mock-corpus: <provider>/<case>`: replay the recorded response of
  tests/corpus/<provider>/<case>.expect.json (status, content type, body file);
- `x-mock-cached-tokens`, `x-mock-cache-write-tokens`, `x-mock-reasoning-tokens`;
- `x-mock-ratelimit: 1`: a JSON answer carries the organization's
  `x-ratelimit-*` headers, as OpenAI sends on every answer (`PROVIDER_RATELIMIT`).

Every request is recorded; `GET /__mock/requests` lists them (method, path,
headers, body) and `DELETE /__mock/requests` clears the list.
"""
from __future__ import annotations

import json
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from . import anthropic, gemini, openai
from .reply import Json, Sse

CORPUS_DIR = Path(__file__).resolve().parent.parent / "corpus"
GEMINI_PATH = re.compile(r"^/(v1beta|v1)/models/([^/:]+):(generateContent|streamGenerateContent)$")
AZURE_PATH = re.compile(r"^/openai/deployments/([^/]+)/(chat/completions|embeddings)$")


# What OpenAI sends on each answer: the organization's standing, not a key's.
PROVIDER_RATELIMIT = {
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "30000000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "29999990",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "0s",
}


class Recorder:
    def __init__(self):
        self._lock = threading.Lock()
        self._items: list[dict] = []

    def add(self, item: dict) -> None:
        with self._lock:
            self._items.append(item)

    def list(self) -> list[dict]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


def _provider_of(path: str) -> str:
    if path.startswith("/v1/messages"):
        return "anthropic"
    if GEMINI_PATH.match(path):
        return "gemini"
    return "openai"


def forced_status(headers: dict, body: dict) -> int | None:
    raw = headers.get("x-mock-status")
    model = body.get("model") if isinstance(body, dict) else None
    if raw is None and isinstance(model, str) and model.startswith("error-"):
        raw = model[len("error-"):]
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def route(method: str, path: str, query: dict, headers: dict, body: dict) -> Json | Sse:
    """Pick the provider reply for one request."""
    provider = _provider_of(path)
    status = forced_status(headers, body)
    if status is not None and status >= 400:
        return {"openai": openai.error, "anthropic": anthropic.error, "gemini": gemini.error}[provider](
            status, f"mock provider forced status {status}")
    if method == "GET" and (path == "/v1/models" or path.startswith("/v1/models/")):
        return openai.models(path.removeprefix("/v1/models").strip("/") or None)
    if method != "POST":
        return openai.error(404, f"mock provider: no route for {method} {path}")
    if path == "/v1/chat/completions":
        return openai.chat(body, headers)
    if path == "/v1/responses":
        return openai.responses(body, headers)
    if path == "/v1/embeddings":
        return openai.embeddings(body, headers)
    if path == "/v1/messages":
        return anthropic.messages(body, headers)
    m = AZURE_PATH.match(path)
    if m:
        deployment, op = m.groups()
        return openai.chat(body, headers, deployment) if op == "chat/completions" else openai.embeddings(body, headers)
    m = GEMINI_PATH.match(path)
    if m:
        stream = m.group(3) == "streamGenerateContent"
        return gemini.generate(m.group(2), body, headers, stream)
    return openai.error(404, f"mock provider: no route for {method} {path}")


def corpus_reply(name: str) -> tuple[int, str, bytes] | None:
    """(status, content type, body) of a corpus case `<provider>/<case>`, as
    described by tests/corpus/<provider>/<case>.expect.json (`response`)."""
    provider, _, case = name.partition("/")
    if not case or "/" in case or ".." in name:
        return None
    expect_file = CORPUS_DIR / provider / f"{case}.expect.json"
    if not expect_file.is_file():
        return None
    response = json.loads(expect_file.read_text()).get("response", {})
    body_file = CORPUS_DIR / provider / response.get("body_file", "")
    if not body_file.is_file():
        return None
    return int(response.get("status", 200)), response.get("content_type", "application/json"), body_file.read_bytes()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "aispend-mock-provider"
    recorder: Recorder  # set by make_server

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else b""

    def _send_json(self, status: int, obj, extra: dict | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _send_stream(self, status: int, content_type: str, pieces: list[bytes], delay_s: float, split: bool):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        for piece in pieces:
            if delay_s:
                time.sleep(delay_s)
            parts = [piece[: len(piece) // 2], piece[len(piece) // 2:]] if split and len(piece) > 1 else [piece]
            for part in parts:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
                if split:
                    time.sleep(0.005)
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _handle(self):
        url = urlsplit(self.path)
        raw = self._read_body()
        headers = {k.lower(): v for k, v in self.headers.items()}
        if url.path == "/__mock/requests":
            if self.command == "DELETE":
                self.recorder.clear()
                return self._send_json(200, {"cleared": True})
            return self._send_json(200, self.recorder.list())
        self.recorder.add({
            "method": self.command, "path": self.path, "headers": headers,
            "header_list": [[k.lower(), v] for k, v in self.headers.items()],
            "body": raw.decode("utf-8", "replace"),
        })
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            # A body that is not JSON usually means a wrong content-length: the
            # rest of it would poison the next request on this connection.
            self.close_connection = True
            return self._send_json(400, {"error": {"message": "mock provider: body is not JSON",
                                                   "type": "invalid_request_error"}})
        delay_s = int(headers.get("x-mock-delay-ms", "0") or 0) / 1000
        split = headers.get("x-mock-split") == "1"
        if "x-mock-corpus" in headers:
            found = corpus_reply(headers["x-mock-corpus"])
            if found is None:
                return self._send_json(404, {"error": {"message": "unknown corpus case", "type": "mock"}})
            status, kind, data = found
            if kind.startswith("text/event-stream"):
                # Line by line, so the gateway sees the stream arrive in pieces.
                return self._send_stream(status, kind, data.splitlines(keepends=True), delay_s, split)
            return self._send_bytes(status, kind, data)
        reply = route(self.command, url.path, parse_qs(url.query), headers, body if isinstance(body, dict) else {})
        if isinstance(reply, Sse):
            return self._send_stream(reply.status, "text/event-stream",
                                     [e.encode() for e in reply.events], delay_s, split)
        extra = dict(reply.headers)
        if headers.get("x-mock-ratelimit") == "1":
            extra.update(PROVIDER_RATELIMIT)
        return self._send_json(reply.status, reply.body, extra)

    def _send_bytes(self, status: int, content_type: str, data: bytes):
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _handle


class _NoDelayServer(ThreadingHTTPServer):
    """Sends each write at once (TCP_NODELAY), as real providers stream: without
    it a small SSE event written after an unacknowledged one waits for the
    peer's delayed ACK (Nagle), ~40 ms, which hides what the gateway adds."""

    def get_request(self):
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr


class MockProvider:
    """The mock server on a background thread (used in-process by the tests)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.recorder = Recorder()
        handler = type("BoundHandler", (Handler,), {"recorder": self.recorder})
        self.httpd = _NoDelayServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "MockProvider":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def requests(self) -> list[dict]:
        return self.recorder.list()

    def clear(self) -> None:
        self.recorder.clear()
