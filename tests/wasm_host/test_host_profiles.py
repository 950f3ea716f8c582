"""The Envoy and Kong profiles, exercised through the probe module
(probe/probe.wat: one export per hostcall), so each rule is checked at the
ABI, independent of what aispend happens to call."""

import struct

import pytest

from wasm_host import Host, ProfileViolation, Reply, VmTrapped
from wasm_host.abi import MetricType, Phase, Status, StreamType, serialize_map
from wasm_host.vm import ROOT_CONTEXT_ID


class Probe:
    """Drives one worker of a probe-module host: writes arguments into a
    scratch area of guest memory and calls the probe's exports."""

    def __init__(self, vm, worker=0):
        self.vm, self.w, self._next = vm, vm.workers[worker], 0x1000

    def put(self, data):
        data = data.encode() if isinstance(data, str) else data
        ptr = self._next
        self.w.write_memory(ptr, data)
        self._next += (len(data) + 8) & ~7
        return ptr, len(data)

    def call(self, export, *args, phase=Phase.REQUEST_HEADERS, ctx=ROOT_CONTEXT_ID):
        return self.w.call(export, *args, phase=phase, context_id=ctx)

    def u32(self, address):
        return struct.unpack("<I", self.w.read_memory(address, 4))[0]

    def returned(self):
        """Bytes the last hostcall handed back through (0x100, 0x104)."""
        return self.w.read_memory(self.u32(0x100), self.u32(0x104))

    def set_shared(self, key, value, cas):
        return self.call("probe_set_shared", *self.put(key), *self.put(value), cas)

    def get_shared(self, key):
        status = self.call("probe_get_shared", *self.put(key))
        if status != Status.OK:
            return status, None, None
        return status, self.returned(), self.u32(0x108)

    def stream(self, headers=(("x-a", "1"),)):
        return self.w.new_stream([(n, v.encode()) for n, v in headers], {})


def probe_host(profile, probe_wat, **kw):
    return Host(profile, probe_wat, "", **kw)


# --- shared data: one store for all workers, CAS per profile -------------------
def test_envoy_cas_zero_writes_unconditionally_across_workers(probe_wat):
    vm = probe_host("envoy", probe_wat, workers=2)
    w0, w1 = Probe(vm, 0), Probe(vm, 1)
    assert w0.set_shared("k", "a", 0) == Status.OK
    assert w1.set_shared("k", "b", 0) == Status.OK
    status, value, cas = w0.get_shared("k")
    assert (status, value) == (Status.OK, b"b"), "worker 0 sees worker 1's write"
    assert w1.set_shared("k", "c", cas) == Status.OK
    assert w0.set_shared("k", "d", cas) == Status.CAS_MISMATCH, "stale cas loses"
    assert vm.shared.snapshot() == {"k": b"c"}


def test_kong_cas_zero_only_creates_and_stale_cas_loses(probe_wat):
    vm = probe_host("kong", probe_wat, workers=2)
    w0, w1 = Probe(vm, 0), Probe(vm, 1)
    assert w0.get_shared("k")[0] == Status.NOT_FOUND
    assert w0.set_shared("k", "a", 0) == Status.OK
    assert w1.set_shared("k", "b", 0) == Status.CAS_MISMATCH, "cas 0 on an existing key"
    status, value, cas = w1.get_shared("k")
    assert (status, value) == (Status.OK, b"a")
    assert w1.set_shared("k", "b", cas) == Status.OK
    assert w0.set_shared("k", "x", cas) == Status.CAS_MISMATCH
    assert w0.set_shared("missing", "x", 12345) == Status.CAS_MISMATCH
    assert vm.shared.snapshot() == {"k": b"b"}


def test_kong_shared_data_needs_a_zone(probe_wat):
    vm = probe_host("kong", probe_wat, shm_zones=("counters",))
    probe = Probe(vm)
    assert probe.set_shared("counters/rpm", "1", 0) == Status.OK
    with pytest.raises(VmTrapped, match="no shm_kv zone"):
        probe.get_shared("rpm")
    with pytest.raises(VmTrapped, match="VM is dead"):
        probe.get_shared("counters/rpm")


def test_envoy_has_no_zones(probe_wat):
    vm = probe_host("envoy", probe_wat, shm_zones=())
    assert Probe(vm).set_shared("rpm", "1", 0) == Status.OK


# --- hostcalls that trap in Kong (docs/PROXY_WASM.md "Supported Host ABI") ------
TRAPPING = [
    ("probe_get_log_level", ()),
    ("probe_done", ()),
    ("probe_close_stream", (StreamType.HTTP_REQUEST,)),
    ("probe_continue_stream", (StreamType.HTTP_RESPONSE,)),
    ("probe_get_status", ()),
    ("probe_grpc_call", ()),
]


@pytest.mark.parametrize("export,args", TRAPPING, ids=[t[0] for t in TRAPPING])
def test_kong_traps_unimplemented_hostcalls_and_the_vm_dies(probe_wat, export, args):
    vm = probe_host("kong", probe_wat)
    probe = Probe(vm)
    ctx = probe.stream().id
    with pytest.raises(VmTrapped, match="function not yet implemented"):
        probe.call(export, *args, ctx=ctx)
    assert vm.workers[0].dead is not None
    with pytest.raises(VmTrapped):
        vm.http_request()


@pytest.mark.parametrize("export,args", TRAPPING, ids=[t[0] for t in TRAPPING])
def test_envoy_implements_the_same_hostcalls(probe_wat, export, args):
    vm = probe_host("envoy", probe_wat)
    probe = Probe(vm)
    ctx = probe.stream().id
    assert probe.call(export, *args, ctx=ctx) in (Status.OK, Status.BAD_ARGUMENT)
    assert vm.workers[0].dead is None


def test_kong_resolve_shared_queue_traps_and_queues_must_be_declared(probe_wat):
    vm = probe_host("kong", probe_wat, queues=("declared",))
    probe = Probe(vm)
    assert probe.call("probe_register_queue", *probe.put("undeclared")) == Status.NOT_FOUND
    assert probe.call("probe_register_queue", *probe.put("declared")) == Status.OK
    with pytest.raises(VmTrapped):
        probe.call("probe_resolve_queue", *probe.put("declared"))


def test_envoy_queues_need_no_declaration(probe_wat):
    probe = Probe(probe_host("envoy", probe_wat))
    assert probe.call("probe_register_queue", *probe.put("q")) == Status.OK
    assert probe.call("probe_resolve_queue", *probe.put("q")) == Status.OK


# --- dispatch_http_call ------------------------------------------------------
def _dispatch(probe, target, phase, ctx=ROOT_CONTEXT_ID):
    headers = serialize_map([(":method", "POST"), (":path", "/v1/records"),
                             (":authority", "collector")])
    return probe.call("probe_http_call", *probe.put(target), *probe.put(headers),
                      *probe.put(b"{}"), 1000, phase=phase, ctx=ctx)


def test_envoy_dispatches_to_clusters_only(probe_wat):
    vm = probe_host("envoy", probe_wat, clusters={"aispend_collector": "127.0.0.1:9090"})
    probe = Probe(vm)
    assert _dispatch(probe, "aispend_collector", Phase.TICK) == Status.OK
    assert vm.calls[-1].address == ("127.0.0.1", 9090)
    assert _dispatch(probe, "127.0.0.1:9090", Phase.TICK) == Status.BAD_ARGUMENT
    assert vm.refused_calls == [("127.0.0.1:9090", Status.BAD_ARGUMENT)]


def test_kong_dispatches_to_host_port_and_refuses_cluster_names(probe_wat):
    vm = probe_host("kong", probe_wat, resolver={"collector.internal": "10.0.0.7"})
    probe = Probe(vm)
    assert _dispatch(probe, "127.0.0.1:9090", Phase.TICK) == Status.OK
    assert vm.calls[-1].address == ("127.0.0.1", 9090)
    assert _dispatch(probe, "collector.internal:9090", Phase.TICK) == Status.OK
    assert vm.calls[-1].address == ("10.0.0.7", 9090)
    assert _dispatch(probe, "aispend_collector", Phase.TICK) == Status.BAD_ARGUMENT
    # A name the resolver does not know fails later, as a :dispatch_status.
    assert _dispatch(probe, "nowhere.example:80", Phase.TICK) == Status.OK
    assert vm.calls[-1].async_failure == "resolver failure"


@pytest.mark.parametrize("phase", [Phase.RESPONSE_HEADERS, Phase.RESPONSE_BODY, Phase.LOG,
                                   Phase.CONFIGURE])
def test_kong_dispatch_outside_request_tick_and_call_response_traps(probe_wat, phase):
    probe = Probe(probe_host("kong", probe_wat))
    ctx = probe.stream().id if phase != Phase.CONFIGURE else ROOT_CONTEXT_ID
    with pytest.raises(VmTrapped, match="can only send HTTP dispatch"):
        _dispatch(probe, "127.0.0.1:9090", phase, ctx)


@pytest.mark.parametrize("phase", [Phase.REQUEST_HEADERS, Phase.REQUEST_BODY, Phase.TICK])
def test_kong_dispatch_allowed_phases(probe_wat, phase):
    probe = Probe(probe_host("kong", probe_wat))
    ctx = probe.stream().id if phase in (Phase.REQUEST_HEADERS, Phase.REQUEST_BODY) \
        else ROOT_CONTEXT_ID
    assert _dispatch(probe, "127.0.0.1:9090", phase, ctx) == Status.OK


def test_kong_dispatch_from_a_call_response_kills_the_worker(probe_wat):
    # The docs allow it; the engine crashes under load (kong/README.md).
    probe = Probe(probe_host("kong", probe_wat))
    with pytest.raises(VmTrapped, match="signal 11"):
        _dispatch(probe, "127.0.0.1:9090", Phase.HTTP_CALL_RESPONSE)
    envoy = Probe(probe_host("envoy", probe_wat, clusters={"c": "127.0.0.1:1"}))
    assert _dispatch(envoy, "c", Phase.HTTP_CALL_RESPONSE) == Status.OK


def test_envoy_dispatch_from_on_log_is_fine(probe_wat):
    vm = probe_host("envoy", probe_wat, clusters={"c": "127.0.0.1:1"})
    probe = Probe(vm)
    assert _dispatch(probe, "c", Phase.LOG, probe.stream().id) == Status.OK


def test_failed_call_shape_differs(probe_wat):
    seen = {}
    for profile, target in (("envoy", "c"), ("kong", "127.0.0.1:1")):
        vm = probe_host(profile, probe_wat, clusters={"c": "127.0.0.1:1"})
        _dispatch(Probe(vm), target, Phase.TICK)
        worker = vm.workers[0]
        worker.deliver = lambda call, headers, body, p=profile: seen.__setitem__(p, headers)
        vm.fail(vm.pending_calls()[0], "connection refused")
    assert seen["envoy"] == []
    assert seen["kong"] == [(":dispatch_status", b"connection refused")]


def test_live_dispatch_reaches_a_real_server(probe_wat, http_sink):
    port, received = http_sink
    vm = probe_host("kong", probe_wat, dispatch="live")
    _dispatch(Probe(vm), f"127.0.0.1:{port}", Phase.TICK)
    vm._settle()
    assert received and received[0]["path"] == "/v1/records"
    assert received[0]["body"] == b"{}"
    assert received[0]["host"] == "collector"


# --- properties -----------------------------------------------------------
def _prop(probe, path, ctx):
    status = probe.call("probe_get_property", *probe.put("\0".join(path)), ctx=ctx)
    return probe.returned() if status == Status.OK else status


def test_properties_are_typed_in_envoy_and_strings_in_kong(probe_wat):
    envoy, kong = Probe(probe_host("envoy", probe_wat)), Probe(probe_host("kong", probe_wat))
    e_ctx, k_ctx = envoy.stream().id, kong.stream().id
    assert _prop(envoy, ["source", "port"], e_ctx) == struct.pack("<q", 50000)
    assert _prop(kong, ["source", "port"], k_ctx) == b"50000"
    assert _prop(envoy, ["plugin_name"], e_ctx) == b"aispend"
    assert _prop(kong, ["plugin_name"], k_ctx) == b"aispend"


@pytest.mark.parametrize("path", [["node"], ["cluster_name"], ["route_name"], ["plugin_vm_id"],
                                  ["listener_direction"]])
def test_kong_lacks_envoy_only_properties(probe_wat, path):
    envoy, kong = Probe(probe_host("envoy", probe_wat)), Probe(probe_host("kong", probe_wat))
    assert _prop(envoy, path, envoy.stream().id) != Status.NOT_FOUND
    assert _prop(kong, path, kong.stream().id) == Status.NOT_FOUND


def test_kong_jwt_metadata_is_absent_even_when_set(probe_wat):
    path = ("metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "jwt_payload", "team")
    for profile, expected in (("envoy", b"search"), ("kong", Status.NOT_FOUND)):
        probe = Probe(probe_host(profile, probe_wat, properties={path: "search"}))
        assert _prop(probe, list(path), probe.stream().id) == expected


def test_kong_only_request_query_is_writable(probe_wat):
    kong = Probe(probe_host("kong", probe_wat))
    ctx = kong.stream().id
    assert kong.call("probe_set_property", *kong.put("request\0query"), *kong.put("a=1"),
                     ctx=ctx) == Status.OK
    assert kong.call("probe_set_property", *kong.put("request\0path"), *kong.put("/x"),
                     ctx=ctx) == Status.BAD_ARGUMENT
    envoy = Probe(probe_host("envoy", probe_wat))
    assert envoy.call("probe_set_property", *envoy.put("anything"), *envoy.put("v"),
                      ctx=envoy.stream().id) == Status.OK


# --- metrics --------------------------------------------------------------------
def test_metric_names_and_per_worker_values(probe_wat):
    for profile, name, w0_reads in (("envoy", "hits", 5), ("kong", "pw:aispend:hits", 2)):
        vm = probe_host(profile, probe_wat, workers=2)
        w0, w1 = Probe(vm, 0), Probe(vm, 1)
        for probe, n in ((w0, 2), (w1, 3)):
            assert probe.call("probe_define_metric", MetricType.COUNTER, *probe.put("hits")) == 0
            assert probe.call("probe_increment_metric", probe.u32(0x108), n) == Status.OK
        assert vm.metrics.names() == [name]
        assert vm.metric("hits") == 5
        assert w0.call("probe_get_metric", w0.u32(0x108)) == Status.OK
        assert struct.unpack("<Q", w0.w.read_memory(0x100, 8))[0] == w0_reads


# --- ticks -----------------------------------------------------------------------
def test_kong_tick_period_only_from_root_and_once(probe_wat):
    probe = Probe(probe_host("kong", probe_wat))
    assert probe.call("probe_set_tick", 500, phase=Phase.CONFIGURE) == Status.OK
    with pytest.raises(VmTrapped, match="already set"):
        probe.call("probe_set_tick", 500, phase=Phase.CONFIGURE)
    other = Probe(probe_host("kong", probe_wat))
    with pytest.raises(VmTrapped, match="root context"):
        other.call("probe_set_tick", 500, ctx=other.stream().id)


def test_envoy_tick_period_can_change(probe_wat):
    vm = probe_host("envoy", probe_wat)
    probe = Probe(vm)
    assert probe.call("probe_set_tick", 500, phase=Phase.CONFIGURE) == Status.OK
    assert probe.call("probe_set_tick", 200, phase=Phase.CONFIGURE) == Status.OK
    before = vm.clock.now_ms()
    vm.tick()
    assert vm.clock.now_ms() - before == 200


# --- callbacks: end_of_stream and Pause ----------------------------------------
@pytest.mark.parametrize("profile,with_body,expected", [
    ("envoy", False, 1), ("envoy", True, 0), ("kong", False, 0), ("kong", True, 0)])
def test_end_of_stream_in_headers_callbacks(probe_wat, profile, with_body, expected):
    vm = probe_host(profile, probe_wat)
    probe = Probe(vm)
    vm.http_request(body=b"x" if with_body else b"",
                    upstream=lambda r: Reply(200, [], b"y" if with_body else b""))
    assert probe.u32(0x10C) == expected, "request headers end_of_stream"
    assert probe.u32(0x114) == expected, "response headers end_of_stream"


def test_pause_in_response_headers_is_a_kong_violation(probe_wat):
    for profile in ("envoy", "kong"):
        vm = probe_host(profile, probe_wat)
        vm.workers[0].write_memory(0x118, struct.pack("<I", 1))
        if profile == "kong":
            with pytest.raises(ProfileViolation, match="Pause returned from on_response_headers"):
                vm.http_request()
        else:
            assert vm.http_request().client.status == 200


def test_pause_in_request_headers_stalls_without_resume(probe_wat):
    # Both hosts hold the body of a request whose headers paused (Envoy's
    # proxy-wasm host makes the pause StopAllIterationAndWatermark): without
    # a resume the request never goes on, with or without a body.
    for profile in ("envoy", "kong"):
        for body in (b"body", b""):
            vm = probe_host(profile, probe_wat, strict=False)
            vm.workers[0].write_memory(0x110, struct.pack("<I", 1))
            ex = vm.http_request(body=body)
            assert ex.client.status == 504, (profile, body)
            assert vm.violations, (profile, body)
