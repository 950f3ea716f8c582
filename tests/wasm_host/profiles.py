"""What differs between the Envoy and the Kong (ngx_wasm_module) proxy-wasm
hosts, in one place. Every Kong rule cites where ngx_wasm_module documents it
(Kong/ngx_wasm_module at commit 9136e463, which Kong 3.9.0-3.9.3 pin; what
the engine does beyond its docs is summarised in kong/README.md, "How Kong's
host differs"; request header edits are modelled in headers.py).

A profile only *decides*; the VM (vm.py) applies the decision. Breaking a rule
is either a trap (HostTrap: the VM dies, as on the real host) or a recorded
violation (the test fails at the end of the exchange with the reason)."""

import ipaddress
import re
import struct

from .abi import Phase, Status, StreamType


class HostTrap(Exception):
    """The host trapped: the filter's VM is dead (its worker serves no more
    requests through the filter). Tests see it raised from the driver."""


REQUEST_PHASES = {Phase.REQUEST_HEADERS, Phase.REQUEST_BODY}

# Proxy-wasm properties Envoy has and ngx_wasm_module does not
# (docs/PROXY_WASM.md "Supported Properties": plugin_vm_id NYI; node,
# cluster_*, listener_*, route_*, upstream_host_metadata "Not supported";
# response.grpc_status/trailers NYI, response.code_details/flags "Not
# supported"). `metadata` (dynamic metadata, e.g. jwt_authn's payload) is an
# Envoy concept nginx has no equivalent of.
KONG_MISSING_PROPERTIES = {
    "node",
    "cluster_name",
    "cluster_metadata",
    "listener_direction",
    "listener_metadata",
    "route_name",
    "route_metadata",
    "upstream_host_metadata",
    "plugin_vm_id",
    "metadata",
    "xds",
    "response.grpc_status",
    "response.trailers",
    "response.code_details",
    "response.flags",
}

_HOSTNAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$")


def _dotted(path):
    return ".".join(path)


class Profile:
    name = "abstract"
    # Hostcalls whose *call* traps (importing them is fine).
    trapping_hostcalls = frozenset()
    # Whether a metric's value is per worker (Kong) or gateway-wide (Envoy).
    metrics_per_worker = False

    def headers_end_of_stream(self, real_eos):
        return real_eos

    def pause_allowed(self, phase):
        return True

    def check_dispatch_phase(self, phase):
        """Raise HostTrap when a dispatch is not allowed in this phase."""

    def resolve_dispatch(self, target, host):
        """-> (address, sync_status, async_failure). address is (host, port)."""
        raise NotImplementedError

    def dispatch_failure_headers(self, reason):
        return []

    def cas_matches(self, existing_cas, cas):
        raise NotImplementedError

    def shared_zone(self, key, zones):
        return "*"

    def encode_property(self, value):
        raise NotImplementedError

    def property_visible(self, path):
        return True

    def set_property_status(self, path):
        return Status.OK

    def metric_name(self, name, filter_name):
        return name

    def check_continue_stream(self, stream_type):
        """Raise HostTrap when resuming this stream is not supported."""

    def check_tick_period(self, in_root_context, already_set):
        """Raise HostTrap when the tick period may not be set here."""

    def register_queue_status(self, name, declared_queues):
        return Status.OK


class EnvoyProfile(Profile):
    """Envoy 1.40 (V8): the reference host the SDK is written against."""

    name = "envoy"

    def resolve_dispatch(self, target, host):
        # The upstream is a cluster name from the bootstrap; an unknown one
        # is refused synchronously with BadArgument.
        address = host.clusters.get(target)
        if address is None:
            return None, Status.BAD_ARGUMENT, None
        return _split_host_port(address), None, None

    def cas_matches(self, existing_cas, cas):
        # cas == 0 writes unconditionally; a cas on a missing key is ignored.
        return cas == 0 or existing_cas is None or cas == existing_cas

    def encode_property(self, value):
        # Envoy serialises typed attributes: ints as 8-byte little endian,
        # bools as one byte, strings as their bytes.
        if isinstance(value, bool):
            return b"\x01" if value else b"\x00"
        if isinstance(value, int):
            return struct.pack("<q", value)
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        return str(value).encode()


class KongProfile(Profile):
    """Kong Gateway 3.9: ngx_wasm_module + Wasmtime."""

    name = "kong"
    # docs/METRICS.md: values are per worker.
    metrics_per_worker = True
    # docs/PROXY_WASM.md "Supported Host ABI": these are :x: and *calling*
    # them traps with "host trap (function not yet implemented)".
    trapping_hostcalls = frozenset(
        {
            "proxy_get_log_level",
            "proxy_done",
            "proxy_resume_downstream",
            "proxy_resume_upstream",
            "proxy_close_stream",
            "proxy_continue_response",
            "proxy_grpc_call",
            "proxy_grpc_stream",
            "proxy_grpc_send",
            "proxy_grpc_cancel",
            "proxy_grpc_close",
            "proxy_get_status",
            "proxy_resolve_shared_queue",
            "proxy_call_foreign_function",
        }
    )

    def headers_end_of_stream(self, real_eos):
        # kong/README.md "Callbacks": end_of_stream is always false in
        # on_request_headers and on_response_headers.
        return False

    def pause_allowed(self, phase):
        # docs/PROXY_WASM.md "Current Limitations" 1 (+ response body, where
        # prerelease-0.6.0 turns Pause into buffering): Pause only in
        # request headers/body, response body and on_http_call_response.
        return phase in REQUEST_PHASES | {Phase.RESPONSE_BODY, Phase.HTTP_CALL_RESPONSE}

    def check_dispatch_phase(self, phase):
        # ngx_proxy_wasm_hfuncs dispatch_http_call; t/03-proxy_wasm/hfuncs
        # context checks: 'can only send HTTP dispatch during
        # "on_request_headers", "on_request_body", "on_dispatch_response",
        # "on_tick"'.
        if phase == Phase.HTTP_CALL_RESPONSE:
            # kong/README.md: allowed by the docs, but under load the worker
            # dies (signal 11, a null pool in
            # ngx_http_proxy_wasm_dispatch_request reached from the dispatch
            # resume handler) and takes its buffered records with it. Seen
            # on 9136e463 and prerelease-0.6.0; fatal here every time.
            raise HostTrap(
                "worker exited on signal 11: dispatch_http_call from on_http_call_response "
                "(null pool in ngx_http_proxy_wasm_dispatch_request)"
            )
        if phase not in REQUEST_PHASES | {Phase.TICK}:
            raise HostTrap(
                "host trap (bad usage): can only send HTTP dispatch during "
                '"on_request_headers", "on_request_body", "on_dispatch_response", '
                f'"on_tick" (called in {phase.value})'
            )

    def resolve_dispatch(self, target, host):
        # kong/README.md "dispatch_http_call": the target is an IP or hostname
        # with optional port, resolved by nginx's resolver; there are no
        # clusters. A name nginx cannot resolve fails the call afterwards
        # (the response carries :dispatch_status), it is not refused.
        parsed = _parse_host_port(target)
        if parsed is None:
            return None, Status.BAD_ARGUMENT, None
        name, port = parsed
        if _is_ip(name):
            return (name, port), None, None
        resolved = host.resolver.get(name)
        if resolved is None:
            return None, None, "resolver failure"
        return (resolved, port), None, None

    def dispatch_failure_headers(self, reason):
        # kong/README.md: failures show as a `:dispatch_status` pseudo-header.
        return [(":dispatch_status", reason)]

    def cas_matches(self, existing_cas, cas):
        # src/common/shm/ngx_wa_shm_kv.c: a set must carry the key's current
        # cas, and a missing key's cas is 0. So cas = 0 means "create only
        # if absent" (CAS_MISMATCH on an existing key), unlike Envoy.
        return cas == (existing_cas or 0)

    def shared_zone(self, key, zones):
        # docs/DIRECTIVES.md shm_kv: keys are "<zone>/<key>" or live in the
        # "*" zone; without a usable zone, get/set trap.
        zone, sep, _ = key.partition("/")
        if sep and zone in zones:
            return zone
        if "*" in zones:
            return "*"
        raise HostTrap(f'host trap: no shm_kv zone for key "{key}" (declare shm_kv * or {zone})')

    def encode_property(self, value):
        # docs/PROXY_WASM.md: "All properties' values are strings. Properties
        # whose value carries a boolean meaning return "true" or "false"."
        if isinstance(value, bool):
            return b"true" if value else b"false"
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        return str(value).encode()

    def property_visible(self, path):
        dotted = _dotted(path)
        return not any(
            dotted == missing or dotted.startswith(missing + ".")
            for missing in KONG_MISSING_PROPERTIES
        )

    def set_property_status(self, path):
        # docs/PROXY_WASM.md: only request.query (and wasmx.* host
        # properties) are writable; writing an immutable ngx variable traps.
        dotted = _dotted(path)
        if dotted == "request.query" or dotted.startswith("wasmx."):
            return Status.OK
        # Kong's template declares `set $upstream_uri ''`: changeable.
        if dotted == "ngx.upstream_uri":
            return Status.OK
        if dotted.startswith("ngx."):
            raise HostTrap(f"host trap: variable {dotted} is not changeable")
        return Status.BAD_ARGUMENT

    def metric_name(self, name, filter_name):
        # docs/METRICS.md: names are prefixed "pw:{filter_name}:".
        return f"pw:{filter_name}:{name}"

    def check_continue_stream(self, stream_type):
        # docs/PROXY_WASM.md: proxy_continue_response traps ("Yielding not
        # supported in response phases"); ABI 0.2.1 spells it
        # proxy_continue_stream(HttpResponse), treated the same here.
        if stream_type != StreamType.HTTP_REQUEST:
            raise HostTrap(
                "host trap (function not yet implemented): proxy_continue_stream "
                f"({StreamType(stream_type).name})"
            )

    def check_tick_period(self, in_root_context, already_set):
        # kong/README.md "Timers": the tick period is set from the root
        # context, once (ngx_proxy_wasm_host.c).
        if not in_root_context:
            raise HostTrap("host trap (bad usage): can only set tick_period in root context")
        if already_set:
            raise HostTrap("host trap (bad usage): tick_period already set")

    def register_queue_status(self, name, declared_queues):
        # kong/README.md "Shared queues": each queue must be declared with
        # shm_queue; none is by default.
        return Status.OK if name in declared_queues else Status.NOT_FOUND


PROFILES = {"envoy": EnvoyProfile, "kong": KongProfile}


def get(name):
    try:
        return PROFILES[name]()
    except KeyError:
        raise ValueError(f"unknown profile {name!r} (expected one of {sorted(PROFILES)})") from None


def _is_ip(name):
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _parse_host_port(target):
    """'host', 'host:port', '[v6]:port' -> (host, port) or None."""
    if target.startswith("["):
        end = target.find("]")
        if end < 0:
            return None
        name, rest = target[1:end], target[end + 1 :]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:] or "80"
    else:
        name, sep, port = target.partition(":")
        port = port if sep else "80"
    if not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if not (_is_ip(name) or _HOSTNAME.match(name)):
        return None
    return name, int(port)


def _split_host_port(address):
    parsed = _parse_host_port(address)
    if parsed is None:
        raise ValueError(f"cluster address must be host:port, got {address!r}")
    return parsed
