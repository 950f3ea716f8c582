"""Request header edits as each engine applies them, at the ABI (the probe
module), with the upstream's view next to the filter's. The Kong rules are
ngx_wasm_module 9136e463's (headers.py cites the source of each)."""

import pytest

from wasm_host import ProfileViolation
from wasm_host.abi import Phase, Status, deserialize_map, serialize_map

from wasm_host.test_host_profiles import Probe, probe_host

CLIENT = (("authorization", "Bearer sk-virtual"), ("x-aispend-team", "evil"),
          ("content-type", "application/json"))


def _stream(profile, probe_wat, headers=CLIENT, path="/v1/chat/completions", **kw):
    vm = probe_host(profile, probe_wat, **kw)
    probe = Probe(vm)
    stream = probe.stream(((":method", "POST"), (":path", path),
                           (":authority", "gw.local"), (":scheme", "http"), *headers))
    return vm, probe, stream


def _call(probe, stream, export, *args):
    return probe.call(export, *args, phase=Phase.REQUEST_HEADERS, ctx=stream.id)


def _filter_view(probe, stream):
    assert _call(probe, stream, "probe_get_request_map") == Status.OK
    return [(n, v.decode()) for n, v in deserialize_map(probe.returned())]


def _upstream(stream):
    headers, _problems = stream.request_headers.upstream()
    return [(n, v.decode()) for n, v in headers]


def _values(pairs, name):
    return [v for n, v in pairs if n == name]


def test_kong_removed_header_still_reaches_the_upstream(probe_wat):
    _vm, probe, stream = _stream("kong", probe_wat)
    for name in ("x-aispend-team", "authorization"):
        assert _call(probe, stream, "probe_remove_request_header",
                     *probe.put(name)) == Status.OK
        assert _values(_filter_view(probe, stream), name) == [], "gone from the filter's view"
    up = _upstream(stream)
    assert _values(up, "x-aispend-team") == ["evil"], "nginx proxy_pass forwards hash=0 headers"
    assert _values(up, "authorization") == ["Bearer sk-virtual"]


def test_envoy_removed_header_is_gone_upstream(probe_wat):
    _vm, probe, stream = _stream("envoy", probe_wat)
    assert _call(probe, stream, "probe_remove_request_header",
                 *probe.put("authorization")) == Status.OK
    assert _values(_upstream(stream), "authorization") == []


def test_kong_overwrite_in_place_and_add_reach_the_upstream(probe_wat):
    _vm, probe, stream = _stream("kong", probe_wat)
    assert _call(probe, stream, "probe_replace_request_header", *probe.put("authorization"),
                 *probe.put("Bearer sk-provider")) == Status.OK
    assert _call(probe, stream, "probe_replace_request_header", *probe.put("x-aispend-team"),
                 *probe.put("")) == Status.OK
    assert _call(probe, stream, "probe_replace_request_header", *probe.put("x-aispend-org"),
                 *probe.put("acme")) == Status.OK
    up = _upstream(stream)
    assert _values(up, "authorization") == ["Bearer sk-provider"]
    assert _values(up, "x-aispend-team") == [""], "blanked in place: the forged value is gone"
    assert _values(up, "x-aispend-org") == ["acme"], "a new header is appended"


def test_kong_set_leaks_a_second_copy(probe_wat):
    headers = (("x-aispend-team", "evil"), ("x-aispend-team", "evil2"))
    _vm, probe, stream = _stream("kong", probe_wat, headers=headers)
    _call(probe, stream, "probe_replace_request_header", *probe.put("x-aispend-team"),
          *probe.put("search"))
    assert _values(_filter_view(probe, stream), "x-aispend-team") == ["search"]
    assert _values(_upstream(stream), "x-aispend-team") == ["search", "evil2"]


def test_kong_map_write_with_pseudo_headers_stops_at_scheme(probe_wat):
    vm, probe, stream = _stream("kong", probe_wat, strict=False)
    new = serialize_map([(":path", "/v1/chat/completions"), (":method", "POST"),
                         (":scheme", "http"), (":authority", "gw.local"),
                         ("x-aispend-team", "search"), ("authorization", "Bearer sk-provider")])
    assert _call(probe, stream, "probe_set_request_map", *probe.put(new)) == Status.OK
    view = _filter_view(probe, stream)
    assert _values(view, "x-aispend-team") == [] and _values(view, "authorization") == []
    up = _upstream(stream)
    assert _values(up, "x-aispend-team") == ["evil"], "old headers cleared, still forwarded"
    assert _values(up, "authorization") == ["Bearer sk-virtual"]
    assert len(_values(up, "host")) == 2, "a cleared Host goes out beside nginx's own"
    assert any('cannot set read-only ":scheme" header' in m for _, m in vm.workers[0].logs)
    assert vm.violations, "pseudo-headers in a map write are aispend's own violation"


def test_kong_map_write_without_pseudo_headers_duplicates_kept_headers(probe_wat):
    _vm, probe, stream = _stream("kong", probe_wat)
    new = serialize_map([("content-type", "application/json"), ("x-aispend-team", "search")])
    _call(probe, stream, "probe_set_request_map", *probe.put(new))
    up = _upstream(stream)
    assert _values(up, "content-type") == ["application/json", "application/json"]
    assert _values(up, "x-aispend-team") == ["evil", "search"]


def test_envoy_map_write_with_pseudo_headers_is_a_violation(probe_wat):
    _vm, probe, stream = _stream("envoy", probe_wat)
    new = serialize_map([(":path", "/v1/chat/completions"), (":method", "POST")])
    with pytest.raises(ProfileViolation, match="pseudo-headers"):
        _call(probe, stream, "probe_set_request_map", *probe.put(new))
        probe.vm._report()


def test_envoy_map_write_without_pseudo_headers_loses_the_request_line(probe_wat):
    _vm, probe, stream = _stream("envoy", probe_wat)
    _call(probe, stream, "probe_set_request_map", *probe.put(serialize_map([("a", "1")])))
    _headers, problems = stream.request_headers.upstream()
    assert problems, "Envoy's setHeaderMapPairs clears :method and :path too"


def test_kong_request_line_comes_from_upstream_uri(probe_wat):
    path = "/v1beta/models/g:generateContent?key=sk-virtual&alt=sse"
    _vm, probe, stream = _stream("kong", probe_wat, headers=(), path=path)
    _call(probe, stream, "probe_replace_request_header", *probe.put(":path"),
          *probe.put("/v1beta/models/g:generateContent?alt=sse"))
    assert _values(_filter_view(probe, stream), ":path") == [
        "/v1beta/models/g:generateContent?alt=sse"]
    assert _values(_upstream(stream), ":path") == [path], "a :path edit does not reach it"
    assert _call(probe, stream, "probe_set_property", *probe.put("request\0query"),
                 *probe.put("alt=sse")) == Status.OK
    assert _values(_upstream(stream), ":path") == [path], "nor does $args: Kong built it before"
    assert _call(probe, stream, "probe_set_property", *probe.put("ngx\0upstream_uri"),
                 *probe.put("/v1beta/models/g:generateContent?alt=sse")) == Status.OK
    assert _values(_upstream(stream), ":path") == ["/v1beta/models/g:generateContent?alt=sse"]


def test_kong_scheme_and_authority_are_read_only(probe_wat):
    vm, probe, stream = _stream("kong", probe_wat)
    assert _call(probe, stream, "probe_replace_request_header", *probe.put(":scheme"),
                 *probe.put("https")) == Status.OK
    assert _values(_filter_view(probe, stream), ":scheme") == ["http"]
    assert any("read-only" in m for _, m in vm.workers[0].logs)
