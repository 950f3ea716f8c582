"""Issue 18, strict budgets through real Envoy and the real collector: leases
per gateway host, reservations before a call leaves, output limits lowered to
what fits (x-aispend-clamped-max-tokens, and the provider sees the lowered
limit), 402 when not even a short answer fits, settlement and release, two
Envoy processes (two hosts, separate shared data) sharing one budget, and a
collector restarted mid-lease. The spend the collector records for a strict
budget never passes its hard threshold."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import SEARCH_KEY, auth, chat_body, filter_config
from procs import ADMIN_TOKEN, READ_TOKEN, Collector, Envoy, call, wait_until

POLL_MS, FLUSH_MS = 200, 200
CLAMPED = "x-aispend-clamped-max-tokens"
# gpt-4o-mini in the embedded price table (USD per token).
IN_PRICE, OUT_PRICE = 1.5e-7, 6e-7


def strict_config(**caps) -> dict:
    cfg = filter_config(caps={"poll_interval_ms": POLL_MS, "stale_after_ms": 3000,
                              "strict": {"models": ["openai:gpt-4o-mini"]}, **caps})
    cfg["collector"]["flush_interval_ms"] = FLUSH_MS
    return cfg


class Hosts:
    """One collector and N Envoy processes (each its own host: its own
    shared data, its own lease)."""

    def __init__(self, mock, tmp_path, n: int, lease_env: dict, caps: dict | None = None):
        self.mock, self.tmp, self.env = mock, tmp_path, lease_env
        self.collector = Collector(tmp_path, env=lease_env).start()
        self.envoys = []
        for i in range(n):
            e = Envoy(tmp_path, upstream=mock.url, collector_port=self.collector.port,
                      filter_config=strict_config(**(caps or {})), concurrency=2, name=f"envoy-{i}")
            self.envoys.append(e.start())
        mock.clear()

    def stop(self):
        for p in [*self.envoys, self.collector]:
            p.stop()
            p.proc.forget()

    def restart_collector(self):
        self.collector.stop()
        self.collector.proc.forget()
        self.collector = Collector(self.tmp, port=self.collector.port, env=self.env).start()

    def budget(self, amount: float, **extra) -> None:
        doc = {"id": "b-strict", "scope": {"team": "search"}, "period": "month",
               "amount_usd": amount, "enforce": "strict", **extra}
        status, _, body = call("POST", self.collector.port, "/v1/budgets", doc,
                               {"authorization": f"Bearer {ADMIN_TOKEN}"})
        assert status == 201, body

    def spend(self) -> float:
        status, _, body = call("GET", self.collector.port, "/v1/budgets/b-strict",
                               headers={"authorization": f"Bearer {READ_TOKEN}"})
        assert status == 200, body
        return json.loads(body)["spend_usd"]

    def leases(self) -> list[dict]:
        """Where the budget's cap is held: one lease per gateway host."""
        status, _, body = call("GET", self.collector.port, "/v1/budgets/b-strict/leases",
                               headers={"authorization": f"Bearer {READ_TOKEN}"})
        assert status == 200, body
        return json.loads(body)["leases"]

    def chat(self, envoy: Envoy, body: dict, headers: dict | None = None):
        return envoy.request("POST", "/v1/chat/completions", body, {**auth(SEARCH_KEY), **(headers or {})})

    def leased(self, envoy: Envoy) -> bool:
        """This host holds a lease (a probe call is reserved, not passed unenforced)."""
        return any(k.endswith("aispend_caps_polls") and v >= 2 for k, v in envoy.stats().items())


@pytest.fixture
def hosts(mock, tmp_path):
    made = []

    def make(n: int, lease_env: dict, caps: dict | None = None) -> Hosts:
        h = Hosts(mock, tmp_path, n, lease_env, caps)
        made.append(h)
        return h

    yield make
    for h in made:
        h.stop()


def worst_case(body: dict, max_tokens: int) -> float:
    """The filter's bound for a gpt-4o-mini chat body (controls/strict.rs)."""
    size = len(json.dumps(body, separators=(", ", ": ")).encode())
    return (size + 64) * IN_PRICE + max_tokens * OUT_PRICE


def wait_for_leases(h: Hosts):
    # A plain poll learns strict budgets exist, the next ones hold a lease:
    # exactly one per Envoy process (its workers share one host id).
    wait_until(lambda: len(h.leases()) >= len(h.envoys), 15, "a lease per host")
    time.sleep(2 * POLL_MS / 1000)
    assert_one_lease_per_host(h)


def assert_one_lease_per_host(h: Hosts):
    held = h.leases()
    assert len(held) == len(h.envoys), f"a lease per gateway host, no other holder: {held}"


def settle_records(h: Hosts, expected_requests: int):
    def flushed():
        totals = h.collector.usage(**{"filter.team": "search"})["totals"]
        return totals["requests"] >= expected_requests
    wait_until(flushed, 15, f"{expected_requests} records at the collector")


def test_two_hosts_and_a_burst_of_50_never_pass_the_cap(hosts, mock):
    # Each grant is half of the room the other host does not hold: idle,
    # both hosts settle at a third of the budget each (2 calls' worth here).
    h = hosts(2, {"AISPEND_LEASE_FLOOR_SHARE": "0.5", "AISPEND_LEASE_TTL_MS": "5000"})
    body = chat_body(5, max_tokens=2000)
    per_call = worst_case(body, 2000)
    amount = 6 * per_call  # room for about 6 calls at their worst case
    h.budget(amount)
    wait_for_leases(h)
    mock.clear()

    def one(i):
        envoy = h.envoys[i % 2]
        return h.chat(envoy, body)
    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(one, range(50)))
    statuses = [a[0] for a in answers]
    ok = [a for a in answers if a[0] == 200]
    assert set(statuses) <= {200, 402}, statuses
    assert len(ok) >= 3, statuses
    for status, _, raw in answers:
        if status == 402:
            assert json.loads(raw)["error"]["type"] == "budget_exceeded"
    clamped = [a for a in ok if CLAMPED in a[1]]
    assert clamped, "the last call that fit each lease was clamped"
    # A refusal from the body resets the upstream request before any of its
    # body is sent: the provider gets no complete call (the mock logs such
    # an aborted request with an empty body).
    chats = [r for r in mock.requests() if r["path"] == "/v1/chat/completions"]
    seen = {r["headers"].get("x-aispend-request-id"): json.loads(r["body"]) for r in chats
            if r["body"]}
    for _, headers, _ in clamped:
        n = int(headers[CLAMPED])
        assert 16 <= n < 2000
        upstream = seen[headers["x-aispend-request-id"]]
        assert upstream["max_tokens"] == n, "the provider saw the lowered limit"
    assert len(seen) == len(ok), "only admitted calls reached the provider whole"

    # Two more bursts once the hosts renewed their leases with their demand:
    # the rest of the room is used, never more.
    total_ok = len(ok)
    for _ in range(2):
        time.sleep(3 * POLL_MS / 1000)
        with ThreadPoolExecutor(50) as pool:
            more = list(pool.map(one, range(50)))
        assert {a[0] for a in more} <= {200, 402}
        total_ok += sum(1 for a in more if a[0] == 200)
        print("burst:", sum(1 for a in more if a[0] == 200), "answered")
    settle_records(h, total_ok)
    spend = h.spend()
    print(f"budget ${amount:.6f}: {total_ok} calls answered, recorded spend ${spend:.6f}")
    assert spend <= amount + 1e-12, f"spend {spend} passed the hard cap {amount}"
    assert_one_lease_per_host(h)
    assert spend >= 0.5 * amount, f"most of the budget was usable; leases: {h.leases()}"


def test_settlement_and_release_let_the_next_call_fit(hosts, mock):
    # One host holding all the room; a long prompt makes the input bound
    # (bytes) ten times the real input (words), so only a settled call frees
    # room for the next one.
    h = hosts(1, {"AISPEND_LEASE_FLOOR_SHARE": "1.0"})
    body = chat_body(1500, max_tokens=50)
    per_call = worst_case(body, 50)
    real = 1500 * IN_PRICE + 50 * OUT_PRICE
    assert real < per_call / 5
    h.budget(1.5 * per_call)
    wait_for_leases(h)
    envoy = h.envoys[0]
    # Four calls in a row, each alone reserving two thirds of the budget:
    # JSON, a stream, a failed upstream call, JSON again.
    status, headers, _ = h.chat(envoy, body)
    assert status == 200 and CLAMPED not in headers
    status, headers, raw = h.chat(envoy, {**body, "stream": True})
    assert status == 200 and CLAMPED not in headers
    assert b"[DONE]" in raw
    status, _, _ = h.chat(envoy, body, {"x-mock-status": "500"})
    assert status == 500, "the upstream's failure reaches the client"
    status, headers, _ = h.chat(envoy, body)
    assert status == 200 and CLAMPED not in headers, "released and settled room is usable again"
    settle_records(h, 4)
    assert h.spend() <= 1.5 * per_call + 1e-12


def test_nothing_fits_is_402_and_a_restarted_collector_does_not_overshoot(hosts, mock):
    h = hosts(1, {"AISPEND_LEASE_FLOOR_SHARE": "1.0", "AISPEND_LEASE_TTL_MS": "2000"},
              caps={"failure_mode": "fail_closed"})
    envoy = h.envoys[0]
    body = chat_body(5, max_tokens=1000)
    per_call = worst_case(body, 1000)
    amount = 3 * per_call
    h.budget(amount)
    wait_for_leases(h)
    status, _, raw = h.chat(envoy, body)
    assert status == 200, f"{raw!r}; leases: {h.leases()}"
    # The collector goes away; the host keeps spending only its lease.
    h.collector.stop()
    statuses = [h.chat(envoy, body)[0] for _ in range(6)]
    assert statuses.count(200) <= 3, statuses  # the lease holds the whole room
    assert 402 in statuses, statuses
    # The lease expires unrenewed: fail_closed refuses even a small call.
    time.sleep(2.5)
    status, _, raw = h.chat(envoy, chat_body(1, max_tokens=16))
    assert status == 402, raw
    h.restart_collector()
    wait_until(lambda: h.leased(envoy), 5, "polls after the restart")
    time.sleep(4 * POLL_MS / 1000)
    for _ in range(4):
        h.chat(envoy, body)
    # Not even 16 output tokens fit now.
    status, _, raw = h.chat(envoy, chat_body(5, max_tokens=4096))
    assert status == 402, raw
    assert "budget_exceeded" in raw.decode()
    time.sleep(1)
    usage = h.collector.usage(**{"filter.team": "search"})
    spend = h.spend()
    print(f"after the restart: {usage['totals']['requests']} records, spend ${spend:.6f} of ${amount:.6f}")
    assert spend <= amount + 1e-12
    assert_one_lease_per_host(h)


def clamped_to(h: Hosts, mock, path: str, body, limit_key: str) -> tuple[int, dict]:
    """Send one strict call that must be clamped; the limit it was lowered
    to, checked against what the provider saw, and the provider's body."""
    mock.clear()
    status, headers, raw = h.envoys[0].request("POST", path, body, auth(SEARCH_KEY))
    assert status == 200, raw
    assert CLAMPED in headers, "the output limit was lowered"
    n = int(headers[CLAMPED])
    sent = json.loads([r for r in mock.requests() if r["path"] == path][-1]["body"])
    assert sent[limit_key] == n, "the provider saw the lowered limit"
    return n, sent


def test_a_media_part_reserves_its_allowance_however_its_key_is_spelled(hosts, mock):
    # `im\u0061ge_url` is what OpenAI's parser reads as `image_url`: the part
    # costs its media allowance, so the output limit is lowered to what is left.
    h = hosts(1, {"AISPEND_LEASE_FLOOR_SHARE": "1.0"},
              caps={"strict": {"models": ["openai:gpt-4o-mini"], "media_tokens": 1000}})
    raw = ('{"model":"gpt-4o-mini","max_tokens":1000,"messages":[{"role":"user","content":['
           '{"type":"text","text":"what is this?"},'
           '{"im\\u0061ge_url":{"url":"https://x/a.png"}}]}]}').encode()
    assert json.loads(raw)["messages"][0]["content"][1]["image_url"]
    # Room for the bytes' bound and 1010 output tokens: 1000 media tokens
    # cost what 250 output tokens cost.
    h.budget((len(raw) + 64) * IN_PRICE + 1010 * OUT_PRICE)
    wait_for_leases(h)
    n, _ = clamped_to(h, mock, "/v1/chat/completions", raw, "max_tokens")
    assert 740 <= n <= 760, n


def test_each_answer_asked_for_reserves_the_whole_limit(hosts, mock):
    # `n` answers of up to max_tokens each, all billed: the room for 1010
    # output tokens is shared by the four answers (252 each).
    h = hosts(1, {"AISPEND_LEASE_FLOOR_SHARE": "1.0"})
    body = chat_body(5, max_tokens=1000, n=4)
    h.budget(worst_case(body, 1010))
    wait_for_leases(h)
    n, sent = clamped_to(h, mock, "/v1/chat/completions", body, "max_tokens")
    assert 245 <= n <= 252, n
    assert sent["n"] == 4


def test_context_the_provider_keeps_reserves_its_allowance(hosts, mock):
    # A follow-up on the Responses API: the earlier turns are billed as input
    # but are not in the body; the call counts `context_tokens` for them.
    h = hosts(1, {"AISPEND_LEASE_FLOOR_SHARE": "1.0"},
              caps={"strict": {"models": ["openai:gpt-4o-mini"], "context_tokens": 1000}})
    body = {"model": "gpt-4o-mini", "max_output_tokens": 1000,
            "previous_response_id": "resp_1", "input": "and then?"}
    h.budget(worst_case(body, 1010))
    wait_for_leases(h)
    n, _ = clamped_to(h, mock, "/v1/responses", body, "max_output_tokens")
    assert 740 <= n <= 760, n
