"""HTTP calls the filter dispatches (`proxy_http_call`).

Every call is recorded as a `Call`. What answers it is the test's choice:
- "record" (default): calls wait in `host.pending_calls()` until the test
  answers them with `host.respond(call, ...)` or `host.fail(call, ...)`;
- "live": the host performs the call for real (http.client) against the
  address the profile resolved (Envoy: the cluster map; Kong: host:port);
- a callable `call -> Reply | None`: None (or an exception) is a failure.
Answers are delivered after the callback that dispatched returns, never
re-entrantly, as real hosts do."""

import dataclasses
import http.client


@dataclasses.dataclass
class Reply:
    status: int = 200
    headers: list = dataclasses.field(default_factory=list)
    body: bytes = b""


@dataclasses.dataclass
class Call:
    token: int
    worker: int
    context_id: int
    phase: str
    target: str
    address: tuple  # (host, port) or None when it cannot be resolved
    headers: list  # [(name, value-bytes)]
    body: bytes
    timeout_ms: int
    async_failure: str = None  # set when the call is doomed (resolver failure)
    answered: bool = False

    def header(self, name):
        for n, v in self.headers:
            if n == name:
                return v.decode("utf-8", "replace")
        return None

    @property
    def method(self):
        return self.header(":method")

    @property
    def path(self):
        return self.header(":path")


def perform_live(call):
    """Make the call over the network. Returns a Reply, or raises OSError."""
    if call.address is None:
        raise OSError(call.async_failure or "unresolved")
    host, port = call.address
    conn = http.client.HTTPConnection(host, port, timeout=max(call.timeout_ms, 1) / 1000)
    try:
        headers = {}
        for name, value in call.headers:
            if name == ":authority":
                headers["Host"] = value.decode()
            elif not name.startswith(":"):
                headers[name] = value.decode()
        conn.request(call.method or "GET", call.path or "/", body=call.body, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        return Reply(resp.status, [(k.lower(), v) for k, v in resp.getheaders()], body)
    finally:
        conn.close()
