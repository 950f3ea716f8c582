"""A recording stand-in for the collector's ingest endpoint, so tests can
assert on the exact records the filter ships (labels, ids, fields) without
going through the collector's aggregation."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RecordSink:
    def __init__(self):
        self.records: list[dict] = []
        self.auth_headers: list[str] = []
        # A key registry body to serve on GET /v1/keys/registry (None: 404).
        self.registry: bytes | None = None
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                batch = json.loads(raw or b"{}").get("records", [])
                with sink._lock:
                    sink.records.extend(batch)
                    sink.auth_headers.append(self.headers.get("authorization", ""))
                out = json.dumps({"accepted": len(batch), "duplicates": 0, "rejected": []}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self):  # /healthz, /v1/caps: answer something harmless
                out = b'{"caps":[]}' if self.path.startswith("/v1/caps") else b"{}"
                if self.path.startswith("/v1/keys/registry"):
                    out = sink.registry
                    if out is None:
                        self.send_response(404)
                        self.send_header("content-length", "0")
                        self.end_headers()
                        return
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.records)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
