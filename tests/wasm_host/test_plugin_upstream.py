"""What the provider receives through each engine: the Kong profile applies
header edits as ngx_wasm_module 9136e463 does (headers.py), so a removal
that leaks, a map write that stops at `:scheme` or a dispatch from a call
response fails here as it did in the real engine."""

import json

import pytest

from wasm_host import Host, Reply
from wasm_host.plugin_configs import DEMO_KEY, clusters, plugin_config

from wasm_host.test_plugin import CHAT, CHAT_BODY, gateway, ingest_calls, openai_reply, shipped

CANONICAL = {"x-aispend-org": "acme", "x-aispend-team": "search", "x-aispend-project": "ranking",
             "x-aispend-cost-center": "CC-1001", "x-aispend-environment": "prod",
             "x-aispend-key-id": "demo-search"}


def _aispend_headers(upstream):
    return [(n, v) for n, v in upstream.headers if n.startswith("x-aispend-")]


def _call(vm, headers, path=CHAT, body=CHAT_BODY, reply=openai_reply):
    return vm.http_request(path=path, headers=headers, body=body, upstream=reply)


def test_spoofed_call_reaches_the_provider_with_only_what_the_filter_set(profile, plugin_wasm):
    vm = gateway(profile, plugin_wasm)
    ex = _call(vm, [("authorization", f"Bearer {DEMO_KEY}"), ("x-aispend-team", "evil"),
                    ("x-aispend-key-id", "forged"), ("x-aispend-extra", "sneaky"),
                    ("cookie", f"k={DEMO_KEY}"), ("content-type", "application/json")])
    up = ex.upstream
    assert up is not None, ex.client
    assert not any(DEMO_KEY in v for _, v in up.headers), up.headers
    request_id = up.header("x-aispend-request-id")
    allowed = {**CANONICAL, "x-aispend-request-id": request_id}
    for name, value in _aispend_headers(up):
        # Kong: the one header the filter cannot remove is blanked in place.
        assert value == allowed.get(name, ""), (name, value)
        if profile == "envoy":
            assert name in allowed, name
    for name, value in CANONICAL.items():
        assert up.values(name) == [value], name
    if profile == "kong":
        assert len(up.values("host")) == 1, "Host is left to nginx"
    assert ex.client.status == 200


def test_clean_call_carries_each_tag_once(profile, plugin_wasm):
    vm = gateway(profile, plugin_wasm)
    up = _call(vm, [("authorization", f"Bearer {DEMO_KEY}")]).upstream
    names = [n for n, _ in _aispend_headers(up)]
    assert sorted(names) == sorted([*CANONICAL, "x-aispend-request-id"])
    assert up.values("authorization") == ([] if profile == "envoy" else [""])


def test_provider_credential_replaces_the_virtual_key(profile, plugin_wasm):
    config = plugin_config(profile)
    config["providers"] = {"openai": {"credential": {"header": "authorization",
                                                     "value": "Bearer sk-provider"}}}
    vm = Host(profile, plugin_wasm, config, clusters=clusters())
    up = _call(vm, [("authorization", f"Bearer {DEMO_KEY}")]).upstream
    assert up.values("authorization") == ["Bearer sk-provider"]


def test_a_repeated_tag_header_is_refused_on_kong_only(profile, plugin_wasm):
    vm = gateway(profile, plugin_wasm)
    ex = _call(vm, [("authorization", f"Bearer {DEMO_KEY}"), ("x-aispend-team", "evil"),
                    ("x-aispend-team", "evil2")])
    if profile == "kong":
        assert ex.client.status == 400 and ex.upstream is None
        assert ex.client.json()["error"]["code"] == "duplicate_header"
    else:
        assert ex.upstream.values("x-aispend-team") == ["search"]


@pytest.mark.parametrize("param", ["key", "KEY", "api_key"])
def test_query_key_never_reaches_the_provider(profile, plugin_wasm, param):
    vm = gateway(profile, plugin_wasm)
    path = f"/v1beta/models/gemini-2.0-flash:generateContent?{param}={DEMO_KEY}&alt=json"
    reply = Reply(200, [("content-type", "application/json")],
                  json.dumps({"usageMetadata": {"promptTokenCount": 3,
                                                "candidatesTokenCount": 2}}).encode())
    ex = _call(vm, [], path=path, body=json.dumps({"contents": []}), reply=lambda _r: reply)
    assert ex.upstream is not None, ex.client
    assert ex.upstream.header(":path") == "/v1beta/models/gemini-2.0-flash:generateContent?alt=json"


def test_backlog_drains_from_the_tick_on_kong(profile, plugin_wasm):
    config = plugin_config(profile, max_batch=2)
    vm = Host(profile, plugin_wasm, config, clusters=clusters())
    for _ in range(5):
        _call(vm, [("authorization", f"Bearer {DEMO_KEY}")])
    vm.tick()
    [first] = ingest_calls(vm)
    assert len(shipped(first)) == 2
    vm.respond(first, 200, b'{"accepted":2,"duplicates":0,"rejected":[]}')
    if profile == "kong":
        assert ingest_calls(vm) == [], "no dispatch from inside a call response on Kong"
        vm.tick()
    [second] = ingest_calls(vm)
    assert len(shipped(second)) == 2


def test_shutdown_ships_what_is_buffered_where_the_host_waits(profile, plugin_wasm):
    config = plugin_config(profile, flush_interval_ms=60000, max_backoff_ms=60000)
    vm = Host(profile, plugin_wasm, config, clusters=clusters())
    ids = {_call(vm, [("authorization", f"Bearer {DEMO_KEY}")]).upstream.header("x-aispend-request-id")
           for _ in range(3)}
    finished = vm.shutdown()
    if profile == "kong":
        # proxy_done traps in Kong's engine, and no dispatch is allowed in
        # on_done: the filter cannot ask to wait (README: drain first).
        # What it still holds is lost, but counted: emitted = stored + dropped.
        assert finished and vm.calls == []
        assert vm.metric("aispend_records_emitted") == 3
        assert vm.metric("aispend_records_dropped") == 3
        return
    assert not finished, "Envoy is asked to wait for proxy_done"
    [call] = ingest_calls(vm)
    assert {r["id"] for r in shipped(call)} == ids
    assert not vm.workers[0].done_called
    vm.respond(call, 200, b'{"accepted":3,"duplicates":0,"rejected":[]}')
    assert vm.workers[0].done_called, "proxy_done once everything shipped"


SIGNING_SECRET = "0123456789abcdef0123456789abcdef-wasm-host"


def _readme_python_verifier():
    import re
    from pathlib import Path
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("\n## Signed tags\n", 1)[1].split("\n## ", 1)[0]
    scope: dict = {}
    exec(re.findall(r"```python\n(.*?)```", section, re.S)[0], scope)
    return scope["verify_aispend"]


def test_signed_tags_verify_on_the_upstream_side(profile, plugin_wasm):
    """The README's verifier accepts what each engine really forwards: on Kong
    a stripped client header arrives blanked in place, and the client's
    signature is overwritten in place."""
    config = plugin_config(profile)
    config["signing"] = {"keys": [{"id": "k1", "secret": SIGNING_SECRET}]}
    vm = Host(profile, plugin_wasm, config, clusters=clusters())
    ex = _call(vm, [("authorization", f"Bearer {DEMO_KEY}"), ("x-aispend-team", "evil"),
                    ("x-aispend-signature", "t=1,kid=k1,v1=" + "0" * 64),
                    ("x-aispend-extra", "sneaky")])
    up = ex.upstream
    assert up is not None and ex.client.status == 200, ex.client
    assert len(up.values("x-aispend-signature")) == 1
    if profile == "kong":
        assert up.values("x-aispend-extra") == [""], "blanked in place, outside the signature"
    headers = {n.lower(): v for n, v in up.headers}
    sig = headers["x-aispend-signature"]
    t = int(sig.split(",")[0].removeprefix("t="))
    verify = _readme_python_verifier()
    tags = verify(headers, {"k1": SIGNING_SECRET}, now=t)
    assert {k: v for k, v in tags.items() if k != "x-aispend-request-id"} == CANONICAL
    with pytest.raises(ValueError):
        verify({**headers, "x-aispend-team": "evil"}, {"k1": SIGNING_SECRET}, now=t)


SPOOF_FORMS = [
    [("X-AISPEND-TEAM", "evil")],
    [("x_aispend_team", "evil")],
    [("X_AISPEND_COST_CENTER", "evil")],
    [("x-aispend_project", "evil")],
    [("x.aispend.team", "evil")],
    [("X_Aispend_Key_Id", "evil")],
    [("x-aispend-environment", "  evil  ")],
    [("x-aispend-signature", "evil")],
    [("x_aispend_team", "evil"), ("X_AISPEND_TEAM", "evil2")],
]


@pytest.mark.parametrize("spoof", SPOOF_FORMS, ids=[",".join(n for n, _ in f) for f in SPOOF_FORMS])
def test_every_spelling_of_a_tag_is_kept_from_the_provider(profile, plugin_wasm, spoof):
    """Case, `_` or `.` for `-`, padding, repetition: what a framework behind
    the gateway would read as an aispend header never carries the client's
    value; Kong refuses a repeated one it cannot clear."""
    vm = gateway(profile, plugin_wasm)
    ex = _call(vm, [("authorization", f"Bearer {DEMO_KEY}"), *spoof])
    repeated = len({n.lower() for n, _ in spoof}) < len(spoof)
    if profile == "kong" and repeated:
        assert ex.client.status == 400 and ex.upstream is None
        assert ex.client.json()["error"]["code"] == "duplicate_header"
        return
    up = ex.upstream
    assert up is not None and ex.client.status == 200, ex.client
    assert not [(n, v) for n, v in up.headers if "evil" in v], up.headers
    request_id = up.header("x-aispend-request-id")
    allowed = {**CANONICAL, "x-aispend-request-id": request_id}
    for name, value in up.headers:
        folded = name.lower().replace("_", "-").replace(".", "-")
        if folded.startswith("x-aispend-"):
            # Envoy removes it; Kong blanks it in place (an empty value).
            expected = allowed.get(name, None if profile == "envoy" else "")
            assert value == expected, (name, value)
    for name, value in CANONICAL.items():
        assert up.values(name) == [value], name


def test_reject_mode_refuses_every_spelling(profile, plugin_wasm):
    config = plugin_config(profile)
    config["tags"] = {"on_conflict": "reject"}
    vm = Host(profile, plugin_wasm, config, clusters=clusters())
    for name in ["X-AISPEND-TEAM", "x_aispend_team", "x.aispend.org", "X_Aispend_Key_Id"]:
        ex = _call(vm, [("authorization", f"Bearer {DEMO_KEY}"), (name, "evil")])
        assert ex.client.status == 400 and ex.upstream is None, name
        assert ex.client.json()["error"]["code"] == "tag_conflict"
