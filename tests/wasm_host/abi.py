"""Proxy-wasm ABI v0.2.1 constants and wire formats (what proxy-wasm-rust-sdk
0.2.x speaks). Plain Python: no wasmtime here, so it is easy to read."""

import enum
import struct


class Status(enum.IntEnum):
    OK = 0
    NOT_FOUND = 1
    BAD_ARGUMENT = 2
    SERIALIZATION_FAILURE = 3
    PARSE_FAILURE = 4
    EMPTY = 7
    CAS_MISMATCH = 8
    INTERNAL_FAILURE = 10
    UNIMPLEMENTED = 12


class MapType(enum.IntEnum):
    HTTP_REQUEST_HEADERS = 0
    HTTP_REQUEST_TRAILERS = 1
    HTTP_RESPONSE_HEADERS = 2
    HTTP_RESPONSE_TRAILERS = 3
    GRPC_RECEIVE_INITIAL_METADATA = 4
    GRPC_RECEIVE_TRAILING_METADATA = 5
    HTTP_CALL_RESPONSE_HEADERS = 6
    HTTP_CALL_RESPONSE_TRAILERS = 7


class BufferType(enum.IntEnum):
    HTTP_REQUEST_BODY = 0
    HTTP_RESPONSE_BODY = 1
    DOWNSTREAM_DATA = 2
    UPSTREAM_DATA = 3
    HTTP_CALL_RESPONSE_BODY = 4
    GRPC_RECEIVE_BUFFER = 5
    VM_CONFIGURATION = 6
    PLUGIN_CONFIGURATION = 7


class StreamType(enum.IntEnum):
    HTTP_REQUEST = 0
    HTTP_RESPONSE = 1
    DOWNSTREAM = 2
    UPSTREAM = 3


class MetricType(enum.IntEnum):
    COUNTER = 0
    GAUGE = 1
    HISTOGRAM = 2


class Action(enum.IntEnum):
    CONTINUE = 0
    PAUSE = 1


LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "critical"]


class Phase(str, enum.Enum):
    """Which callback the VM is in; profiles decide what is allowed where."""

    START = "on_vm_start"
    CONFIGURE = "on_configure"
    TICK = "on_tick"
    REQUEST_HEADERS = "on_request_headers"
    REQUEST_BODY = "on_request_body"
    RESPONSE_HEADERS = "on_response_headers"
    RESPONSE_BODY = "on_response_body"
    HTTP_CALL_RESPONSE = "on_http_call_response"
    LOG = "on_log"
    DONE = "on_done"
    DELETE = "on_delete"
    CONTEXT_CREATE = "on_context_create"
    NONE = "none"


def serialize_map(pairs):
    """The SDK's header-map format: u32 count, (u32 name_len, u32 value_len)
    per pair, then each name and value followed by a NUL byte."""
    encoded = [(_b(n), _b(v)) for n, v in pairs]
    out = bytearray(struct.pack("<I", len(encoded)))
    for name, value in encoded:
        out += struct.pack("<II", len(name), len(value))
    for name, value in encoded:
        out += name + b"\0" + value + b"\0"
    return bytes(out)


def deserialize_map(data):
    """Inverse of serialize_map; raises ValueError on a malformed buffer."""
    if len(data) < 4:
        if not data:
            return []
        raise ValueError("header map shorter than its count")
    (count,) = struct.unpack_from("<I", data, 0)
    sizes_end = 4 + 8 * count
    if sizes_end > len(data):
        raise ValueError("header map sizes overrun the buffer")
    pos = sizes_end
    pairs = []
    for i in range(count):
        name_len, value_len = struct.unpack_from("<II", data, 4 + 8 * i)
        name = data[pos : pos + name_len]
        pos += name_len + 1
        value = data[pos : pos + value_len]
        pos += value_len + 1
        if pos > len(data):
            raise ValueError("header map strings overrun the buffer")
        pairs.append((name.decode("utf-8", "replace"), bytes(value)))
    return pairs


def split_property_path(data):
    """Property paths arrive as parts separated by NUL bytes."""
    return [p.decode("utf-8", "replace") for p in bytes(data).split(b"\0") if p]


def _b(value):
    return value if isinstance(value, (bytes, bytearray)) else str(value).encode()
