"""One worker's VM: an instance of the filter module with the proxy-wasm
hostcalls bound to it, its root context and its HTTP streams. The gateway
(host.py) owns several workers sharing one SharedData; the rules that differ
between Envoy and Kong come from the profile."""

import dataclasses
import itertools

import wasmtime

from . import wasi
from .abi import (
    LOG_LEVELS,
    Action,
    BufferType,
    MapType,
    MetricType,
    Phase,
    Status,
    StreamType,
    deserialize_map,
    serialize_map,
    split_property_path,
)
from .dispatch import Call
from .headers import ReadOnlyHeader, for_profile
from .memory import GuestMemory
from .profiles import HostTrap

ROOT_CONTEXT_ID = 1
_ACTION_CALLBACKS = {"proxy_on_request_headers", "proxy_on_request_body",
                     "proxy_on_response_headers", "proxy_on_response_body"}


def _unsigned_args(func_type, impl):
    """wasm has no unsigned types: an i32 size of usize::MAX arrives as -1.
    Every i32 in this ABI is a pointer, size, id or enum, so read them as u32."""
    i32_positions = [i for i, t in enumerate(func_type.params) if str(t) == "i32"]

    def call(caller, *args):
        args = list(args)
        for i in i32_positions:
            args[i] &= 0xFFFFFFFF
        return impl(caller, *args)

    return call


class VmTrapped(Exception):
    """The filter's VM trapped (a host trap, a panic, proc_exit): like on a
    real gateway the worker's filter is dead from now on."""


@dataclasses.dataclass
class Stream:
    """The host side of one HTTP exchange through the filter."""

    id: int
    request_headers: list
    properties: dict
    request_body: bytearray = dataclasses.field(default_factory=bytearray)
    response_headers: list = dataclasses.field(default_factory=list)
    response_body: bytearray = dataclasses.field(default_factory=bytearray)
    local_response: tuple = None  # (status, headers, body, details)
    resumed: bool = False
    response_started: bool = False


class Worker:
    def __init__(self, host, index, module):
        self.host = host
        self.index = index
        self.profile = host.profile
        self.store = wasmtime.Store(host.engine)
        self.logs = []
        self.dead = None  # the exception that killed the VM
        self.phase = Phase.NONE
        self.effective = ROOT_CONTEXT_ID
        self.streams = {}
        self.tick_period_ms = 0
        self.metric_ids = {}  # id -> full metric name
        self.queues = {}  # id -> list
        self.call_response = ([], b"")  # (headers, body) of the call being answered
        self.done_called = False  # the filter called proxy_done
        self._next_context = itertools.count(ROOT_CONTEXT_ID + 1)
        self._next_id = itertools.count(1)
        linker = wasmtime.Linker(host.engine)
        self.unknown_imports = []
        for imp in module.imports:
            func = _unsigned_args(imp.type, self._import(imp.module, imp.name))
            linker.define(
                self.store,
                imp.module,
                imp.name,
                wasmtime.Func(self.store, imp.type, func, access_caller=True),
            )
        self.instance = linker.instantiate(self.store, module)
        self.exports = self.instance.exports(self.store)

    # --- lifecycle, called by host.py ------------------------------------
    def start(self, vm_config, plugin_config):
        """_initialize/_start, root context, on_vm_start, on_configure."""
        for entry in ("_initialize", "_start"):
            if entry in self.exports:
                self._invoke(entry, Phase.START, ROOT_CONTEXT_ID)
                break
        self._invoke("proxy_on_context_create", Phase.CONTEXT_CREATE, ROOT_CONTEXT_ID,
                     ROOT_CONTEXT_ID, 0)
        ok = self._invoke("proxy_on_vm_start", Phase.START, ROOT_CONTEXT_ID,
                          ROOT_CONTEXT_ID, len(vm_config))
        if not ok:
            return False
        return bool(self._invoke("proxy_on_configure", Phase.CONFIGURE, ROOT_CONTEXT_ID,
                                 ROOT_CONTEXT_ID, len(plugin_config)))

    def new_stream(self, request_headers, properties):
        ctx = next(self._next_context)
        headers = for_profile(self.profile.name, request_headers)
        self.streams[ctx] = Stream(ctx, headers, properties)
        self._invoke("proxy_on_context_create", Phase.CONTEXT_CREATE, ctx, ctx, ROOT_CONTEXT_ID)
        return self.streams[ctx]

    def on_request_headers(self, stream, end_of_stream):
        eos = self.profile.headers_end_of_stream(end_of_stream)
        return self._action(Phase.REQUEST_HEADERS, stream.id, "proxy_on_request_headers",
                            len(stream.request_headers.pairs()), int(eos))

    def on_request_body(self, stream, size, end_of_stream):
        return self._action(Phase.REQUEST_BODY, stream.id, "proxy_on_request_body",
                            size, int(end_of_stream))

    def on_response_headers(self, stream, end_of_stream):
        eos = self.profile.headers_end_of_stream(end_of_stream)
        return self._action(Phase.RESPONSE_HEADERS, stream.id, "proxy_on_response_headers",
                            len(stream.response_headers), int(eos))

    def on_response_body(self, stream, size, end_of_stream):
        return self._action(Phase.RESPONSE_BODY, stream.id, "proxy_on_response_body",
                            size, int(end_of_stream))

    def finish_stream(self, stream):
        self._invoke("proxy_on_log", Phase.LOG, stream.id, stream.id)
        self._invoke("proxy_on_done", Phase.DONE, stream.id, stream.id)
        self._invoke("proxy_on_delete", Phase.DELETE, stream.id, stream.id)
        self.streams.pop(stream.id, None)

    def on_tick(self):
        self._invoke("proxy_on_tick", Phase.TICK, ROOT_CONTEXT_ID, ROOT_CONTEXT_ID)

    def shutdown(self):
        """The host stops the VM: proxy_on_done on the root context. True
        when the filter is done at once; False asks the host to wait for
        proxy_done (see `done_called`)."""
        return bool(self._invoke("proxy_on_done", Phase.DONE, ROOT_CONTEXT_ID, ROOT_CONTEXT_ID))

    def deliver(self, call, headers, body):
        """Answer a dispatched call on the context that made it. A call whose
        stream is gone is dropped, as both hosts cancel them."""
        if call.context_id != ROOT_CONTEXT_ID and call.context_id not in self.streams:
            return
        self.call_response = (headers, body)
        try:
            self._invoke("proxy_on_http_call_response", Phase.HTTP_CALL_RESPONSE,
                         call.context_id, call.context_id, call.token, len(headers),
                         len(body), 0)
        finally:
            self.call_response = ([], b"")

    def call(self, export, *args, phase=Phase.REQUEST_HEADERS, context_id=ROOT_CONTEXT_ID):
        """Call any export as if in `phase` (for probe modules in tests)."""
        return self._invoke(export, phase, context_id, *args)

    def write_memory(self, address, data):
        self.exports["memory"].write(self.store, data, address)

    def read_memory(self, address, size):
        return bytes(self.exports["memory"].read(self.store, address, address + size))

    def log_line(self, level, message):
        self.logs.append((level, message))

    # --- invoking the guest ---------------------------------------------
    def _action(self, phase, context_id, export, *args):
        action = self._invoke(export, phase, context_id, context_id, *args)
        if action == Action.PAUSE and not self.profile.pause_allowed(phase):
            self.host.violation(
                f"worker {self.index}: Action::Pause returned from {phase.value}, "
                f"which the {self.profile.name} host does not support"
            )
        return Action(action) if action in (0, 1) else action

    def _invoke(self, export, phase, context_id, *args):
        if self.dead is not None:
            raise VmTrapped(f"worker {self.index}: VM is dead ({self.dead})")
        func = self.exports[export] if export in self.exports else None
        if func is None:
            # A callback the module does not export: "continue" for the
            # stream callbacks, "true" for on_vm_start/on_configure/on_done.
            return Action.CONTINUE if export in _ACTION_CALLBACKS else 1
        saved = (self.phase, self.effective)
        self.phase, self.effective = phase, context_id
        try:
            return func(self.store, *args)
        except (HostTrap, wasi.ProcExit, wasmtime.Trap, wasmtime.WasmtimeError) as e:
            self.dead = e
            tail = "\n".join(f"  [{lvl}] {msg}" for lvl, msg in self.logs[-5:])
            raise VmTrapped(
                f"worker {self.index}: VM trapped in {phase.value}: {e}\nlast log lines:\n{tail}"
            ) from e
        finally:
            self.phase, self.effective = saved

    # --- imports -----------------------------------------------------------
    def _import(self, module, name):
        if module == "wasi_snapshot_preview1":
            return wasi.functions(self).get(name) or wasi.nosys(name)
        if module == "env" and name in self.profile.trapping_hostcalls:
            return self._trap(name)
        impl = getattr(self, "_h_" + name.removeprefix("proxy_"), None) if module == "env" else None
        if impl is None:
            self.unknown_imports.append(f"{module}.{name}")
            return self._trap(name)
        return impl

    def _trap(self, name):
        def trap(_caller, *_args):
            raise HostTrap(f"host trap (function not yet implemented): {name}")

        return trap

    def _stream(self):
        return self.streams.get(self.effective)

    # --- hostcalls: integration --------------------------------------------
    def _h_log(self, caller, level, ptr, size):
        name = LOG_LEVELS[level] if 0 <= level < len(LOG_LEVELS) else str(level)
        self.log_line(name, GuestMemory(caller).read_str(ptr, size))
        return Status.OK

    def _h_get_log_level(self, caller, out):
        GuestMemory(caller).write_u32(out, self.host.log_level)
        return Status.OK

    def _h_get_current_time_nanoseconds(self, caller, out):
        GuestMemory(caller).write_u64(out, self.host.clock.now_ns())
        return Status.OK

    def _h_set_tick_period_milliseconds(self, _caller, period):
        in_root = self.effective == ROOT_CONTEXT_ID
        self.profile.check_tick_period(in_root, self.tick_period_ms > 0)
        if not in_root:
            return Status.BAD_ARGUMENT
        self.tick_period_ms = period
        return Status.OK

    def _h_set_effective_context(self, _caller, context_id):
        if context_id != ROOT_CONTEXT_ID and context_id not in self.streams:
            return Status.BAD_ARGUMENT
        self.effective = context_id
        return Status.OK

    def _h_done(self, _caller):
        self.done_called = True
        return Status.OK

    def _h_call_foreign_function(self, _caller, *_args):
        return Status.NOT_FOUND

    # --- hostcalls: buffers ----------------------------------------------
    def _buffer(self, kind):
        """-> bytearray/bytes of a buffer, or None when it does not exist now."""
        stream = self._stream()
        if kind == BufferType.HTTP_REQUEST_BODY and stream is not None:
            return stream.request_body
        if kind == BufferType.HTTP_RESPONSE_BODY and stream is not None:
            return stream.response_body
        if kind == BufferType.HTTP_CALL_RESPONSE_BODY and self.phase == Phase.HTTP_CALL_RESPONSE:
            return self.call_response[1]
        if kind == BufferType.PLUGIN_CONFIGURATION and self.phase == Phase.CONFIGURE:
            return self.host.plugin_config
        if kind == BufferType.VM_CONFIGURATION and self.phase == Phase.START:
            return self.host.vm_config
        return None

    def _h_get_buffer_bytes(self, caller, kind, start, max_size, ptr_out, size_out):
        data = self._buffer(kind)
        if data is None:
            return Status.NOT_FOUND
        GuestMemory(caller).return_bytes(bytes(data[start : start + max_size]), ptr_out, size_out)
        return Status.OK

    def _h_set_buffer_bytes(self, caller, kind, start, size, ptr, length):
        data = self._buffer(kind)
        if not isinstance(data, bytearray):
            return Status.NOT_FOUND if data is None else Status.BAD_ARGUMENT
        data[start : start + size] = GuestMemory(caller).read(ptr, length)
        return Status.OK

    # --- hostcalls: header maps ------------------------------------------
    def _request_headers(self, kind):
        """The stream's request header store when `kind` names it (its edits
        follow the profile's engine, see headers.py), else None."""
        stream = self._stream()
        if kind == MapType.HTTP_REQUEST_HEADERS and stream is not None:
            return stream.request_headers
        return None

    def _log_error(self, message):
        self.log_line("error", f"[host] {message}")

    def _map(self, kind):
        stream = self._stream()
        if kind == MapType.HTTP_REQUEST_HEADERS and stream is not None:
            return stream.request_headers.pairs()
        if kind == MapType.HTTP_RESPONSE_HEADERS and stream is not None:
            return stream.response_headers
        if kind == MapType.HTTP_CALL_RESPONSE_HEADERS and self.phase == Phase.HTTP_CALL_RESPONSE:
            return self.call_response[0]
        if kind in (MapType.HTTP_REQUEST_TRAILERS, MapType.HTTP_RESPONSE_TRAILERS,
                    MapType.HTTP_CALL_RESPONSE_TRAILERS) and stream is not None:
            return []
        return None

    def _h_get_header_map_pairs(self, caller, kind, ptr_out, size_out):
        pairs = self._map(kind)
        if pairs is None:
            return Status.NOT_FOUND
        GuestMemory(caller).return_bytes(serialize_map(pairs), ptr_out, size_out)
        return Status.OK

    def _h_set_header_map_pairs(self, caller, kind, ptr, size):
        pairs = self._map(kind)
        if pairs is None:
            return Status.NOT_FOUND
        try:
            new = deserialize_map(GuestMemory(caller).read(ptr, size))
        except ValueError:
            return Status.BAD_ARGUMENT
        request = self._request_headers(kind)
        if request is not None:
            pseudo = [n for n, _ in new if n.startswith(":")]
            if pseudo:
                # aispend's own rule on both hosts (kong/README.md): Kong's engine
                # stops at the first read-only pseudo-header of a map write.
                self.host.violation(f"worker {self.index}: request header map write with "
                                    f"pseudo-headers {pseudo}")
            request.set_all(new, self._log_error)
            return Status.OK
        pairs[:] = [(n.lower(), v) for n, v in new]
        return Status.OK

    def _h_get_header_map_value(self, caller, kind, kptr, ksize, ptr_out, size_out):
        pairs = self._map(kind)
        if pairs is None:
            return Status.NOT_FOUND
        name = GuestMemory(caller).read_str(kptr, ksize).lower()
        values = [v for n, v in pairs if n == name]
        if not values:
            return Status.NOT_FOUND
        # Envoy joins repeated headers with ","; so does nginx for most.
        GuestMemory(caller).return_bytes(b",".join(values), ptr_out, size_out)
        return Status.OK

    def _h_replace_header_map_value(self, caller, kind, kptr, ksize, vptr, vsize):
        pairs = self._map(kind)
        if pairs is None:
            return Status.NOT_FOUND
        mem = GuestMemory(caller)
        name, value = mem.read_str(kptr, ksize).lower(), mem.read(vptr, vsize)
        request = self._request_headers(kind)
        if request is not None:
            try:
                request.set(name, value, self._log_error)
            except ReadOnlyHeader:
                pass  # logged; the call itself answers Ok, as ngx_wasm_module's does
            return Status.OK
        pairs[:] = [(n, v) for n, v in pairs if n != name] + [(name, value)]
        return Status.OK

    def _h_add_header_map_value(self, caller, kind, kptr, ksize, vptr, vsize):
        pairs = self._map(kind)
        if pairs is None:
            return Status.NOT_FOUND
        mem = GuestMemory(caller)
        name, value = mem.read_str(kptr, ksize).lower(), mem.read(vptr, vsize)
        request = self._request_headers(kind)
        if request is not None:
            request.add(name, value, self._log_error)
            return Status.OK
        pairs.append((name, value))
        return Status.OK

    def _h_remove_header_map_value(self, caller, kind, kptr, ksize):
        pairs = self._map(kind)
        if pairs is None:
            return Status.NOT_FOUND
        name = GuestMemory(caller).read_str(kptr, ksize).lower()
        request = self._request_headers(kind)
        if request is not None:
            request.remove(name)
            return Status.OK
        pairs[:] = [(n, v) for n, v in pairs if n != name]
        return Status.OK

    # --- hostcalls: properties --------------------------------------------
    def _h_get_property(self, caller, pptr, psize, ptr_out, size_out):
        path = split_property_path(GuestMemory(caller).read(pptr, psize))
        if not path or not self.profile.property_visible(path):
            return Status.NOT_FOUND
        stream = self._stream()
        value = self.host.property(path, stream, self)
        if value is None:
            return Status.NOT_FOUND
        GuestMemory(caller).return_bytes(self.profile.encode_property(value), ptr_out, size_out)
        return Status.OK

    def _h_set_property(self, caller, pptr, psize, vptr, vsize):
        mem = GuestMemory(caller)
        path = split_property_path(mem.read(pptr, psize))
        status = self.profile.set_property_status(path)
        stream = self._stream()
        if status == Status.OK and stream is not None and path == ["request", "query"]:
            stream.request_headers.set_query(mem.read(vptr, vsize))
        if status == Status.OK and stream is not None and path == ["ngx", "upstream_uri"]:
            stream.request_headers.set_upstream_uri(mem.read(vptr, vsize))
        if status == Status.OK:
            target = stream.properties if stream is not None else self.host.root_properties
            target[tuple(path)] = mem.read(vptr, vsize)
        return status

    # --- hostcalls: shared data and queues ---------------------------------
    def _h_get_shared_data(self, caller, kptr, ksize, ptr_out, size_out, cas_out):
        mem = GuestMemory(caller)
        status, value, cas = self.host.shared.get(mem.read_str(kptr, ksize))
        if status == Status.OK:
            mem.return_bytes(value, ptr_out, size_out)
            mem.write_u32(cas_out, cas)
        return status

    def _h_set_shared_data(self, caller, kptr, ksize, vptr, vsize, cas):
        mem = GuestMemory(caller)
        return self.host.shared.set(mem.read_str(kptr, ksize), mem.read(vptr, vsize), cas)

    def _h_register_shared_queue(self, caller, nptr, nsize, id_out):
        mem = GuestMemory(caller)
        name = mem.read_str(nptr, nsize)
        status = self.profile.register_queue_status(name, self.host.queues)
        if status == Status.OK:
            queue_id = self.host.queue_ids.setdefault(name, len(self.host.queue_ids) + 1)
            self.host.queue_data.setdefault(queue_id, [])
            mem.write_u32(id_out, queue_id)
        return status

    def _h_resolve_shared_queue(self, caller, _vptr, _vsize, nptr, nsize, id_out):
        mem = GuestMemory(caller)
        queue_id = self.host.queue_ids.get(mem.read_str(nptr, nsize))
        if queue_id is None:
            return Status.NOT_FOUND
        mem.write_u32(id_out, queue_id)
        return Status.OK

    def _h_enqueue_shared_queue(self, caller, queue_id, vptr, vsize):
        if queue_id not in self.host.queue_data:
            return Status.NOT_FOUND
        self.host.queue_data[queue_id].append(GuestMemory(caller).read(vptr, vsize))
        return Status.OK

    def _h_dequeue_shared_queue(self, caller, queue_id, ptr_out, size_out):
        queue = self.host.queue_data.get(queue_id)
        if queue is None:
            return Status.NOT_FOUND
        if not queue:
            return Status.EMPTY
        GuestMemory(caller).return_bytes(queue.pop(0), ptr_out, size_out)
        return Status.OK

    # --- hostcalls: stream control and local responses ---------------------
    def _h_continue_stream(self, _caller, stream_type):
        self.profile.check_continue_stream(stream_type)
        stream = self._stream()
        if stream is None:
            return Status.NOT_FOUND
        if stream_type == StreamType.HTTP_REQUEST:
            stream.resumed = True
        return Status.OK

    def _h_continue_request(self, caller):
        return self._h_continue_stream(caller, StreamType.HTTP_REQUEST)

    def _h_continue_response(self, caller):
        return self._h_continue_stream(caller, StreamType.HTTP_RESPONSE)

    def _h_close_stream(self, _caller, _stream_type):
        return Status.OK

    def _h_send_local_response(self, caller, status, dptr, dsize, bptr, bsize, hptr, hsize,
                               _grpc_status):
        stream = self._stream()
        if stream is None:
            return Status.NOT_FOUND
        if stream.response_started:
            return Status.BAD_ARGUMENT
        mem = GuestMemory(caller)
        try:
            headers = deserialize_map(mem.read(hptr, hsize))
        except ValueError:
            return Status.BAD_ARGUMENT
        stream.local_response = (status, headers, mem.read(bptr, bsize), mem.read_str(dptr, dsize))
        return Status.OK

    # --- hostcalls: HTTP dispatch --------------------------------------------
    def _h_http_call(self, caller, uptr, usize, hptr, hsize, bptr, bsize, _tptr, _tsize,
                     timeout_ms, token_out):
        self.profile.check_dispatch_phase(self.phase)
        mem = GuestMemory(caller)
        target = mem.read_str(uptr, usize)
        try:
            headers = deserialize_map(mem.read(hptr, hsize))
        except ValueError:
            return Status.BAD_ARGUMENT
        names = {n for n, _ in headers}
        if not {":method", ":path"} <= names or not ({":authority", "host"} & names):
            return Status.BAD_ARGUMENT  # both hosts need :method, :path, :authority
        address, sync_status, async_failure = self.profile.resolve_dispatch(target, self.host)
        if sync_status is not None:
            self.host.refused_calls.append((target, sync_status))
            return sync_status
        call = Call(
            token=next(self._next_id),
            worker=self.index,
            context_id=self.effective,
            phase=self.phase.value,
            target=target,
            address=address,
            headers=headers,
            body=mem.read(bptr, bsize),
            timeout_ms=timeout_ms,
            async_failure=async_failure,
        )
        self.host.calls.append(call)
        mem.write_u32(token_out, call.token)
        return Status.OK

    # --- hostcalls: metrics --------------------------------------------------
    def _h_define_metric(self, caller, kind, nptr, nsize, id_out):
        mem = GuestMemory(caller)
        if kind not in tuple(MetricType):
            return Status.BAD_ARGUMENT
        name = self.profile.metric_name(mem.read_str(nptr, nsize), self.host.filter_name)
        if not self.host.metrics.define(kind, name):
            return Status.BAD_ARGUMENT
        metric_id = next((i for i, n in self.metric_ids.items() if n == name), None)
        if metric_id is None:
            metric_id = len(self.metric_ids) + 1
            self.metric_ids[metric_id] = name
        mem.write_u32(id_out, metric_id)
        return Status.OK

    def _h_increment_metric(self, _caller, metric_id, delta):
        name = self.metric_ids.get(metric_id)
        if name is None:
            return Status.NOT_FOUND
        self.host.metrics.increment(name, self.index, delta)
        return Status.OK

    def _h_record_metric(self, _caller, metric_id, value):
        name = self.metric_ids.get(metric_id)
        if name is None:
            return Status.NOT_FOUND
        self.host.metrics.record(name, self.index, value)
        return Status.OK

    def _h_get_metric(self, caller, metric_id, out):
        name = self.metric_ids.get(metric_id)
        if name is None:
            return Status.NOT_FOUND
        worker = self.index if self.profile.metrics_per_worker else None
        GuestMemory(caller).write_u64(out, self.host.metrics.value(name, worker))
        return Status.OK

    # --- hostcalls: gRPC (Envoy only; Kong traps, see profiles.py) -----------
    def _h_grpc_call(self, *_args):
        return Status.BAD_ARGUMENT  # no gRPC clusters in this host

    _h_grpc_stream = _h_grpc_call
    _h_grpc_send = _h_grpc_call
    _h_grpc_cancel = _h_grpc_call
    _h_grpc_close = _h_grpc_call

    def _h_get_status(self, caller, code_out, ptr_out, size_out):
        mem = GuestMemory(caller)
        mem.write_u32(code_out, 0)
        mem.return_bytes(b"", ptr_out, size_out)
        return Status.OK
