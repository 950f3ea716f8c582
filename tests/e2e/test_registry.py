"""Issue 16, virtual keys as data through real Envoy (two workers) and the
real collector: a key issued over the API passes within one registry poll,
a revoked one is refused within one poll, a rotated key's old and new
secrets both pass until the grace ends, limits changed live apply at the
new limit, tag-less issuance is refused, and with the collector stopped an
expired key is refused while valid keys keep working."""
from __future__ import annotations

import datetime as dt
import json
import time

from helpers import SEARCH_KEY, chat_body, filter_config
from procs import ADMIN_TOKEN, call, wait_until

POLL_MS = 500
# One poll, plus the tick that takes a version in on the other worker and
# the time a request takes: what "within one poll" may cost here.
WITHIN_S = POLL_MS / 1000 + 1.0
TAGS = {"org": "acme", "team": "platform", "cost_center": "CC-4004", "environment": "dev"}
CALLS = 8  # enough calls that both workers answer some


def registry_config() -> dict:
    return filter_config(identity={"registry": {"poll_ms": POLL_MS}})


def api(s, method: str, path: str, body=None):
    status, _, raw = call(method, s.collector.port, path, body,
                          {"authorization": f"Bearer {ADMIN_TOKEN}"})
    return status, (json.loads(raw) if raw else None)


def issue(s, **extra) -> dict:
    status, doc = api(s, "POST", "/v1/keys", {"tags": TAGS, **extra})
    assert status == 201, doc
    assert doc["key"].startswith("sk-aispend-"), doc
    return doc


def statuses(s, key: str, n: int = CALLS) -> set[int]:
    return {s.chat(key, chat_body(1))[0] for _ in range(n)}


def within_one_poll(s, key: str, want: int, what: str) -> float:
    """Seconds until every one of CALLS calls with `key` answers `want`."""
    start = time.monotonic()
    wait_until(lambda: statuses(s, key) == {want}, WITHIN_S, what, interval=0.05)
    return time.monotonic() - start


def test_issue_revoke_rotate_and_live_limits(stack_factory):
    s = stack_factory(registry_config(), concurrency=2)
    # Issuance refuses a key without the required tags.
    status, doc = api(s, "POST", "/v1/keys", {"tags": {"org": "acme", "team": "platform"}})
    assert status == 400, doc
    assert doc["error"]["code"] == "missing_tag", doc
    assert "cost_center" in doc["error"]["message"], doc

    created = issue(s)
    key, key_id = created["key"], created["key_id"]
    took = within_one_poll(s, key, 200, "an issued key passes on both workers")
    print(f"issued key usable after {took * 1000:.0f} ms (poll {POLL_MS} ms)")
    status, headers, _ = s.chat(key, chat_body(1))
    assert status == 200
    forwarded = s.mock.requests()[-1]["headers"]
    assert forwarded.get("x-aispend-key-id") == key_id, forwarded
    assert forwarded.get("x-aispend-team") == "platform", forwarded
    assert key not in json.dumps(forwarded), "the virtual key never reaches the provider"
    assert s.chat(SEARCH_KEY, chat_body(1))[0] == 200, "static keys keep working"

    # Limits changed live: 3 a minute from the next poll on.
    status, doc = api(s, "PATCH", f"/v1/keys/{key_id}",
                      {"limits": {"requests_per_minute": 3, "tokens_per_minute": None}})
    assert status == 200, doc
    time.sleep(2 * WITHIN_S)
    got = [s.chat(key, chat_body(1))[0] for _ in range(4)]
    assert got == [200, 200, 200, 429], got

    # Rotation with a grace period: both secrets pass, then the old one is 401.
    other = issue(s)
    within_one_poll(s, other["key"], 200, "a second issued key passes")
    grace_s = 4
    status, doc = api(s, "POST", f"/v1/keys/{other['key_id']}/rotate", {"grace_seconds": grace_s})
    assert status == 200, doc
    rotated_at = time.monotonic()
    new_secret = doc["key"]
    assert new_secret != other["key"]
    within_one_poll(s, new_secret, 200, "the new secret passes")
    assert statuses(s, other["key"]) == {200}, "the old secret still passes in its grace"
    wait_until(lambda: statuses(s, other["key"]) == {401}, grace_s + WITHIN_S,
               "the old secret refused once the grace ended")
    assert time.monotonic() - rotated_at >= grace_s - 1.0, "refused no earlier than the grace"
    assert statuses(s, new_secret) == {200}

    # Revocation: 401 within one poll on both workers.
    status, doc = api(s, "DELETE", f"/v1/keys/{other['key_id']}")
    assert status == 200 and doc["status"] == "revoked", doc
    took = within_one_poll(s, new_secret, 401, "a revoked key is refused on both workers")
    print(f"revoked key refused after {took * 1000:.0f} ms (poll {POLL_MS} ms)")
    _, _, body = s.chat(new_secret, chat_body(1))
    assert json.loads(body)["error"]["type"] == "invalid_api_key"

    stats = s.envoy.stats()
    assert sum(v for k, v in stats.items() if k.endswith("aispend_registry_updates")) >= 4
    assert sum(v for k, v in stats.items() if k.endswith("aispend_registry_rejected")) == 0


def test_collector_down_keeps_valid_keys_and_refuses_expired_ones(stack_factory):
    s = stack_factory(registry_config(), concurrency=2)
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=6)
    short = issue(s, expires_at=expires.strftime("%Y-%m-%dT%H:%M:%SZ"))
    lasting = issue(s)
    within_one_poll(s, short["key"], 200, "the short-lived key passes")
    within_one_poll(s, lasting["key"], 200, "the lasting key passes")

    s.collector.stop()
    wait_until(lambda: dt.datetime.now(dt.timezone.utc) > expires + dt.timedelta(seconds=0.2),
               10, "the short-lived key's expiry")
    assert statuses(s, short["key"]) == {401}, "expired, with the registry out of reach"
    _, _, body = s.chat(short["key"], chat_body(1))
    assert "expired" in json.loads(body)["error"]["message"]
    assert statuses(s, lasting["key"]) == {200}, "a collector that is down locks no key out"
    stats = s.envoy.stats()
    assert sum(v for k, v in stats.items() if k.endswith("aispend_registry_stale")) >= 1

    # The collector back: nothing was lost, polling resumes.
    s.collector.start()
    time.sleep(2 * WITHIN_S)
    assert statuses(s, lasting["key"]) == {200}
    assert statuses(s, short["key"]) == {401}


def test_a_10000_key_registry_through_envoys_dispatch(stack_factory):
    """10,000 keys (3.3 MB, the collector's shape) arrive through Envoy's
    dispatch_http_call and every worker serves them; static keys unaffected."""
    import hashlib

    n = 10_000
    keys = [{"sha256": hashlib.sha256(f"sk-aispend-scale-{i:05d}".encode()).hexdigest(),
             "key_id": f"scale-{i:05d}", "tags": {**TAGS, "project": f"p-{i % 2000}"},
             "limits": {"requests_per_minute": 600, "tokens_per_minute": 200000},
             "status": "active", "not_after": None} for i in range(n)]
    s = stack_factory(registry_config(), concurrency=2, sink=True)
    s.sink.registry = json.dumps({"version": "scale-1", "keys": keys},
                                 separators=(",", ":")).encode()
    assert len(s.sink.registry) > 3_000_000
    start = time.monotonic()
    for i in (0, 4_999, n - 1):
        wait_until(lambda i=i: statuses(s, f"sk-aispend-scale-{i:05d}") == {200}, 10,
                   f"registry key {i} of {n} passes on both workers")
    print(f"{n} keys usable after {(time.monotonic() - start) * 1000:.0f} ms")
    assert statuses(s, "sk-aispend-scale-99999") == {401}
    assert statuses(s, SEARCH_KEY) == {200}
    stats = s.envoy.stats()
    assert sum(v for k, v in stats.items() if k.endswith("aispend_registry_rejected")) == 0
