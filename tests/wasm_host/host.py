"""The test driver: a gateway with N workers running one filter module.

    vm = Host(profile="kong", wasm=path, config={...})
    ex = vm.http_request(path="/v1/chat/completions", headers=[...], body=b"...",
                         upstream=lambda req: Reply(200, [...], b"..."))
    ex.upstream.header("x-aispend-team"); ex.client.status; vm.tick()

Each worker is its own instance of the module (its own root context, ticks
and memory) and all share one SharedData, as workers of one Envoy or one
nginx do. Profile rule breaks that are not traps are collected as
violations; with strict=True (default) the driver raises ProfileViolation at
the end of the operation that caused them."""

import dataclasses
import json
import os
import pathlib

import wasmtime

from . import profiles
from .abi import Action
from .dispatch import Call, Reply, perform_live
from .shared import Clock, Metrics, SharedData
from .vm import ROOT_CONTEXT_ID, VmTrapped, Worker

__all__ = ["Host", "Reply", "Call", "ProfileViolation", "VmTrapped", "ConfigRejected"]


class ProfileViolation(AssertionError):
    """The filter did something the profile's host does not support."""


class ConfigRejected(Exception):
    """on_vm_start / on_configure returned false: the host refuses the filter."""


_ENGINE = wasmtime.Engine()
_MODULES = {}


def load_module(path):
    """Compile once per file version (compiling is the slow part)."""
    path = pathlib.Path(path)
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    if key not in _MODULES:
        if path.suffix == ".wat":
            _MODULES[key] = wasmtime.Module(_ENGINE, path.read_text())
        else:
            _MODULES[key] = wasmtime.Module.from_file(_ENGINE, str(path))
    return _MODULES[key]


@dataclasses.dataclass
class UpstreamRequest:
    """What the upstream (provider) received."""

    headers: list
    body: bytes

    def header(self, name):
        return _header(self.headers, name)

    def values(self, name):
        """Every value of `name` the upstream received, in order."""
        return [v for n, v in self.headers if n == name]

    def header_names(self):
        return [n for n, _ in self.headers]


@dataclasses.dataclass
class ClientResponse:
    """What the client received."""

    status: int
    headers: list
    body: bytes
    local: bool = False  # answered by the filter, not the upstream

    def header(self, name):
        return _header(self.headers, name)

    def json(self):
        return json.loads(self.body)


@dataclasses.dataclass
class Exchange:
    upstream: UpstreamRequest  # None when the filter answered locally
    client: ClientResponse
    worker: int


def default_upstream(_request):
    return Reply(200, [("content-type", "application/json")], b'{"ok":true}')


class Host:
    def __init__(self, profile, wasm, config, workers=2, vm_config=b"", clusters=None,
                 resolver=None, dispatch="record", filter_name="aispend", shm_zones=("*",),
                 queues=(), strict=True, log_level=0, properties=None):
        self.profile = profiles.get(profile) if isinstance(profile, str) else profile
        self.engine = _ENGINE
        self.plugin_config = _bytes(config)
        self.vm_config = _bytes(vm_config)
        self.clusters = dict(clusters or {})
        self.resolver = {"localhost": "127.0.0.1", **(resolver or {})}
        self.dispatch_mode = dispatch
        self.filter_name = filter_name
        self.strict = strict
        self.log_level = log_level
        self.clock = Clock()
        self.shared = SharedData(self.profile, shm_zones)
        self.metrics = Metrics()
        self.queues = set(queues)
        self.queue_ids, self.queue_data = {}, {}
        self.root_properties = dict(properties or {})
        self.calls, self.refused_calls, self.violations = [], [], []
        self._reported = 0
        module = load_module(wasm)
        self.workers = [Worker(self, i, module) for i in range(workers)]
        for w in self.workers:
            if not w.start(self.vm_config, self.plugin_config):
                raise ConfigRejected(
                    f"worker {w.index}: filter refused its configuration: "
                    + "; ".join(msg for _, msg in w.logs)
                )
        self._settle()

    # --- driver ------------------------------------------------------------
    def http_request(self, method="POST", path="/", headers=(), body=b"", upstream=None,
                     worker=0, authority="gateway.local", chunks=None, properties=None):
        """Run one exchange through worker `worker`. `chunks` splits the
        request body into several on_request_body calls; the upstream may
        return Reply(body=...) or Reply with `chunks` in a list body."""
        w = self.workers[worker]
        request_headers = [(":method", method), (":path", path), (":authority", authority),
                           (":scheme", "http")] + [(n.lower(), v) for n, v in headers]
        stream = w.new_stream([(n, _bytes(v)) for n, v in request_headers],
                              dict(properties or {}))
        body_chunks = list(chunks) if chunks is not None else ([body] if body else [])
        exchange = self._run(w, stream, body_chunks, upstream or default_upstream)
        self._report()
        return exchange

    def tick(self, worker=None):
        """One tick period passes: the clock moves by the longest period and
        every worker (or just `worker`) whose root set one gets on_tick."""
        chosen = self.workers if worker is None else [self.workers[worker]]
        periods = [w.tick_period_ms for w in chosen if w.tick_period_ms]
        if periods:
            self.clock.advance(max(periods))
        for w in chosen:
            if w.tick_period_ms and w.dead is None:
                w.on_tick()
                self._settle()
        self._report()

    def shutdown(self, worker=0):
        """The host stops worker `worker`'s VM (Envoy: SIGTERM, a filter
        removed by a config update). Returns whether the filter finished at
        once; if not, the test answers its calls and reads `done_called`."""
        w = self.workers[worker]
        finished = w.shutdown()
        self._settle()
        self._report()
        return finished

    def advance(self, ms):
        self.clock.advance(ms)

    # --- dispatched calls ----------------------------------------------------
    def pending_calls(self):
        return [c for c in self.calls if not c.answered]

    def respond(self, call, status=200, body=b"", headers=()):
        self._deliver(call, Reply(status, list(headers), _bytes(body)))
        self._settle()
        self._report()

    def fail(self, call, reason="connection refused"):
        self._deliver(call, None, reason)
        self._settle()
        self._report()

    def _deliver(self, call, reply, reason=None):
        call.answered = True
        w = self.workers[call.worker]
        if w.dead is not None:
            return
        if reply is None:
            headers, body = self.profile.dispatch_failure_headers(reason or "failed"), b""
        else:
            headers = [(":status", str(reply.status).encode())] + [
                (n.lower(), _bytes(v)) for n, v in reply.headers
            ]
            body = reply.body
        w.deliver(call, [(n, _bytes(v)) for n, v in headers], body)

    def _answer(self, call):
        if call.async_failure:
            return None, call.async_failure
        try:
            if self.dispatch_mode == "live":
                return perform_live(call), None
            reply = self.dispatch_mode(call)
            return reply, (None if reply is not None else "no reply")
        except OSError as e:
            return None, f"{type(e).__name__}: {e}"

    def _settle(self):
        """Answer pending calls unless the test answers them itself."""
        if self.dispatch_mode == "record":
            return
        for _ in range(1000):
            pending = self.pending_calls()
            if not pending:
                return
            for call in pending:
                reply, reason = self._answer(call)
                self._deliver(call, reply, reason)
        raise RuntimeError("the filter kept dispatching calls (1000 rounds)")

    # --- one exchange ----------------------------------------------------------
    def _run(self, w, stream, body_chunks, upstream):
        action = w.on_request_headers(stream, end_of_stream=not body_chunks)
        self._settle()
        if stream.local_response:
            return self._local(w, stream)
        if action == Action.PAUSE and not stream.resumed:
            # Neither host feeds the body to a filter that paused its request
            # headers: Envoy's proxy-wasm host turns the pause into
            # StopAllIterationAndWatermark (proxy-wasm-cpp-host,
            # `convertVmCallResultToFilterHeadersStatus`; a chat call paused
            # there never reached the body callbacks in Envoy 1.40), and nginx
            # yields the request; both wait for proxy_continue_stream or a
            # dispatch response.
            return self._stalled(w, stream, "request headers")
        forwarded = bytearray()
        for i, chunk in enumerate(body_chunks):
            stream.request_body += _bytes(chunk)
            stream.resumed = False
            action = w.on_request_body(stream, len(stream.request_body),
                                       end_of_stream=i == len(body_chunks) - 1)
            self._settle()
            if stream.local_response:
                return self._local(w, stream)
            if action == Action.CONTINUE or stream.resumed:
                forwarded += stream.request_body
                stream.request_body.clear()
        if stream.request_body:
            return self._stalled(w, stream, "request body")

        upstream_headers, problems = stream.request_headers.upstream()
        for problem in problems:
            self.violation(f"worker {w.index}: {problem}")
        sent = UpstreamRequest([(n, v.decode("utf-8", "replace")) for n, v in
                                upstream_headers], bytes(forwarded))
        reply = upstream(sent)
        response_chunks = reply.body if isinstance(reply.body, list) else (
            [reply.body] if reply.body else [])
        stream.response_headers[:] = [(":status", str(reply.status).encode())] + [
            (n.lower(), _bytes(v)) for n, v in reply.headers]
        w.on_response_headers(stream, end_of_stream=not response_chunks)
        self._settle()
        stream.response_started = True
        client_body = bytearray()
        for i, chunk in enumerate(response_chunks):
            stream.response_body += _bytes(chunk)
            action = w.on_response_body(stream, len(stream.response_body),
                                        end_of_stream=i == len(response_chunks) - 1)
            self._settle()
            if action == Action.CONTINUE:
                client_body += stream.response_body
                stream.response_body.clear()
        if stream.response_body:
            self.violation(f"worker {w.index}: response body held back at end of stream")
            client_body += stream.response_body
        status, headers = _split_status(stream.response_headers)
        w.finish_stream(stream)
        self._settle()
        return Exchange(sent, ClientResponse(status, headers, bytes(client_body)), w.index)

    def _local(self, w, stream):
        status, headers, body, _details = stream.local_response
        w.finish_stream(stream)
        self._settle()
        decoded = [(n, v.decode("utf-8", "replace")) for n, v in headers]
        return Exchange(None, ClientResponse(status, decoded, body, local=True), w.index)

    def _stalled(self, w, stream, where):
        self.violation(f"worker {w.index}: request stalled, paused in {where} and never resumed")
        w.finish_stream(stream)
        return Exchange(None, ClientResponse(504, [], b"stalled", local=True), w.index)

    # --- properties ------------------------------------------------------------
    def property(self, path, stream, worker):
        """Host attributes by path (values are typed; the profile encodes)."""
        key = tuple(path)
        if stream is not None and key in stream.properties:
            return stream.properties[key]
        if key in self.root_properties:
            return self.root_properties[key]
        dotted = ".".join(path)
        fixed = {
            "plugin_name": self.filter_name,
            "plugin_root_id": self.filter_name,
            "plugin_vm_id": "",
            "cluster_name": "gateway",
            "node": "gateway-node",
            "listener_direction": 1,
            "route_name": "llm",
            "source.address": "127.0.0.1:50000",
            "source.port": 50000,
            "wasmx.worker": str(worker.index),
        }
        if dotted in fixed:
            return fixed[dotted]
        if stream is None:
            return None
        if dotted == "ngx.upstream_uri" and self.profile.name == "kong":
            return stream.request_headers.upstream_uri
        request = {}
        for n, v in stream.request_headers.pairs():
            request.setdefault(n, v.decode("utf-8", "replace"))
        if dotted.startswith("request.headers."):
            return request.get(dotted.removeprefix("request.headers."))
        if dotted.startswith("response.headers."):
            response = {n: v.decode() for n, v in stream.response_headers}
            return response.get(dotted.removeprefix("response.headers."))
        full_path = request.get(":path", "/")
        by_name = {
            "request.path": full_path,
            "request.url_path": full_path.split("?", 1)[0],
            "request.query": full_path.split("?", 1)[1] if "?" in full_path else "",
            "request.method": request.get(":method"),
            "request.host": request.get(":authority"),
            "request.scheme": request.get(":scheme"),
            "request.protocol": "HTTP/1.1",
            "request.id": request.get("x-request-id"),
            "response.code": int(dict(stream.response_headers).get(":status", b"0") or 0)
            if stream.response_headers else None,
        }
        return by_name.get(dotted)

    # --- reporting ---------------------------------------------------------------
    def violation(self, message):
        self.violations.append(message)

    def _report(self):
        new = self.violations[self._reported:]
        self._reported = len(self.violations)
        if new and self.strict:
            raise ProfileViolation(f"{self.profile.name} host: " + "; ".join(new))

    def logs(self, worker=None):
        chosen = self.workers if worker is None else [self.workers[worker]]
        return [(w.index, lvl, msg) for w in chosen for lvl, msg in w.logs]

    def log_text(self):
        return "\n".join(f"[w{i} {lvl}] {msg}" for i, lvl, msg in self.logs())

    def metric(self, name, worker=None):
        return self.metrics.value(self.profile.metric_name(name, self.filter_name), worker)


def _header(headers, name):
    for n, v in headers:
        if n == name:
            return v
    return None


def _split_status(headers):
    status, rest = 0, []
    for n, v in headers:
        if n == ":status":
            status = int(v)
        else:
            rest.append((n, v.decode("utf-8", "replace")))
    return status, rest


def _bytes(value):
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value).encode()
    return str(value).encode()


def wasm_dir():
    """Where the tests find the .wasm files ($AISPEND_WASM_DIR)."""
    default = pathlib.Path(__file__).resolve().parents[2] / "target/wasm32-wasip1/release"
    return pathlib.Path(os.environ.get("AISPEND_WASM_DIR", default))
