"""The key registry (SPEC §8) through the compiled filter, under the Envoy
and Kong profiles with two workers sharing one shared-data store: keys
issued over the collector's API are polled, taken in by both workers,
revoked, limited and expired without a reconfigure, and a collector that
cannot answer never locks out a key that was valid. The Kong profile's
strict host fails the test if the filter dispatches from a call's response."""

import json

from wasm_host.plugin_configs import DEMO_KEY, clusters, plugin_config, sha256
from wasm_host import Host, Reply

CHAT = "/v1/chat/completions"
CHAT_BODY = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
NEW_KEY = "sk-aispend-issued-over-the-api"
POLL_MS = 1000


def openai_reply(_request):
    body = {"id": "c1", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2,
                                     "total_tokens": 5}}
    return Reply(200, [("content-type", "application/json")], json.dumps(body).encode())


class Collector:
    """Answers the filter's calls: the registry (with ETag / 304), caps and
    records; `down` makes every call fail."""

    def __init__(self):
        self.version, self.keys, self.down, self.raw = 0, [], False, None
        self.registry_calls = []

    def publish(self, *keys):
        self.version += 1
        self.keys = list(keys)

    def __call__(self, call):
        if self.down:
            return None
        if call.path.startswith("/v1/keys/registry"):
            self.registry_calls.append(call)
            if self.raw is not None:
                return Reply(200, [("content-type", "application/json")], self.raw)
            etag = f'"v{self.version}"'
            if call.header("if-none-match") == etag:
                return Reply(304, [("etag", etag)])
            body = json.dumps({"version": f"v{self.version}", "keys": self.keys}).encode()
            return Reply(200, [("content-type", "application/json"), ("etag", etag)], body)
        if call.path.startswith("/v1/caps"):
            return Reply(200, [], b'{"version":"c","caps":[]}')
        return Reply(200, [], b'{"accepted":1,"duplicates":0,"rejected":[]}')


def key(secret, key_id, status="active", not_after=None, rpm=None):
    return {"sha256": sha256(secret), "key_id": key_id,
            "tags": {"org": "acme", "team": "platform", "cost_center": "CC-7",
                     "environment": "prod"},
            "limits": {"requests_per_minute": rpm, "tokens_per_minute": None},
            "status": status, "not_after": not_after}


def gateway(profile, plugin_wasm, collector):
    config = plugin_config(profile)
    config["identity"]["registry"] = {"poll_ms": POLL_MS}
    return Host(profile, plugin_wasm, config, clusters=clusters(), workers=2,
                dispatch=collector)


def chat(vm, secret, worker):
    exchange = vm.http_request(path=CHAT, headers=[("authorization", f"Bearer {secret}"),
                                                   ("content-type", "application/json")],
                               body=CHAT_BODY, upstream=openai_reply, worker=worker)
    return exchange.client.status, exchange


def one_poll(vm):
    """Let one poll interval pass (Kong ticks every 100 ms)."""
    start = vm.clock.now_ms()
    while vm.clock.now_ms() - start < POLL_MS:
        vm.tick()


def test_issued_keys_reach_both_workers_within_one_poll(profile, plugin_wasm):
    col = Collector()
    vm = gateway(profile, plugin_wasm, col)
    assert [chat(vm, NEW_KEY, w)[0] for w in (0, 1)] == [401, 401]
    col.publish(key(NEW_KEY, "api-key-1"))
    one_poll(vm)
    for w in (0, 1):
        status, exchange = chat(vm, NEW_KEY, w)
        assert status == 200, vm.log_text()
        assert exchange.upstream.header("x-aispend-key-id") == "api-key-1"
        assert exchange.upstream.header("x-aispend-team") == "platform"
        assert exchange.upstream.header("authorization") != f"Bearer {NEW_KEY}"
    # Static config keys keep working beside the registry.
    assert chat(vm, DEMO_KEY, 0)[0] == 200
    # Unchanged registry: the polls carry the version and get 304s.
    one_poll(vm)
    assert col.registry_calls[-1].header("if-none-match") == f'"v{col.version}"'
    assert vm.metric("aispend_registry_updates") == 1
    # Workers share the poll: about one per interval, not one per worker.
    assert len(col.registry_calls) <= 3 * 2, len(col.registry_calls)


def test_revocation_and_live_limits_apply_within_one_poll(profile, plugin_wasm):
    col = Collector()
    col.publish(key(NEW_KEY, "api-key-1"))
    vm = gateway(profile, plugin_wasm, col)
    one_poll(vm)
    assert chat(vm, NEW_KEY, 1)[0] == 200
    col.publish(key(NEW_KEY, "api-key-1", rpm=2))
    one_poll(vm)
    assert [chat(vm, NEW_KEY, w)[0] for w in (0, 1, 0)] == [200, 200, 429]
    col.publish(key(NEW_KEY, "api-key-1", status="revoked"))
    one_poll(vm)
    for w in (0, 1):
        status, exchange = chat(vm, NEW_KEY, w)
        assert status == 401
        assert "revoked" in exchange.client.body.decode()


def test_a_collector_that_cannot_answer_locks_no_key_out_but_expiry_holds(profile, plugin_wasm):
    col = Collector()
    vm = gateway(profile, plugin_wasm, col)
    vm_now_s = vm.clock.now_ms() // 1000
    expires_s = vm_now_s + 5
    col.publish(key(NEW_KEY, "api-key-1"), key("sk-aispend-short-lived", "short",
                                               not_after=expires_s))
    one_poll(vm)
    assert chat(vm, "sk-aispend-short-lived", 0)[0] == 200
    col.down = True
    for _ in range(6):
        one_poll(vm)
    assert vm.clock.now_ms() >= expires_s * 1000
    for w in (0, 1):
        assert chat(vm, NEW_KEY, w)[0] == 200, "valid keys keep working"
        status, exchange = chat(vm, "sk-aispend-short-lived", w)
        assert status == 401
        assert "expired" in exchange.client.body.decode()
    assert vm.metric("aispend_registry_stale") >= 6
    assert vm.metric("aispend_registry_poll_failures") >= 6
    # A malformed snapshot is refused whole; the last good one stays.
    col.down, col.raw = False, b'{"version":"v9","keys":[{"sha256":"nope"}]}'
    one_poll(vm)
    assert vm.metric("aispend_registry_rejected") >= 1
    assert chat(vm, NEW_KEY, 1)[0] == 200
