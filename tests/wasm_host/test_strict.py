"""Strict budgets (issue 18) in the compiled .wasm under the Envoy and Kong
profiles: the caps poll (from the root tick, never from a call response)
carries the host id and brings a lease and prices into shared data; a chat
call reserves against it, its body's output limit is lowered to what fits
(x-aispend-clamped-max-tokens) and the next call that cannot fit 16 output
tokens is refused with 402."""

import json
from urllib.parse import parse_qs, urlsplit

from wasm_host.plugin_configs import DEMO_KEY, clusters, plugin_config
from wasm_host import Host, Reply

CHAT = "/v1/chat/completions"
IN_PRICE, OUT_PRICE = 1.5e-7, 6e-7


def body(max_tokens):
    return json.dumps({"model": "gpt-4o-mini", "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": "hi"}]})


def collector(allowance_usd, polls):
    """Answers the caps poll with one strict lease and the asked prices."""
    def reply(call):
        if call.path.startswith("/v1/caps"):
            query = parse_qs(urlsplit(call.path).query)
            polls.append(query)
            if "host" not in query:
                # A plain poll: strict budgets exist, so the next one names the host.
                return Reply(200, [("content-type", "application/json")],
                             b'{"version":"v0","caps":[],"strict":1}')
            answer = {
                "version": "v", "caps": [], "strict": 1, "host": query["host"][0],
                "price_version": "p1",
                "leases": [{"budget_id": "b1", "scope": {"team": "search"}, "seq": len(polls),
                            "allowance_usd": allowance_usd, "used_usd": 0.0,
                            "expires_in_ms": 60_000, "period_start": "2026-12-01T00:00:00.000Z"}],
                "prices": {m: {"input": IN_PRICE, "cached_input": 7.5e-8, "cache_write": IN_PRICE,
                               "output": OUT_PRICE, "max_output_tokens": None}
                           for m in query.get("model", [])},
            }
            return Reply(200, [("content-type", "application/json")], json.dumps(answer).encode())
        return Reply(200, [("content-type", "application/json")],
                     b'{"accepted":1,"duplicates":0,"rejected":[]}')
    return reply


def upstream(request):
    sent = json.loads(request.body)
    usage = {"prompt_tokens": 3, "completion_tokens": sent["max_tokens"]}
    return Reply(200, [("content-type", "application/json")],
                 json.dumps({"model": "gpt-4o-mini", "choices": [], "usage": usage}).encode())


def chat(vm, max_tokens, worker=0):
    return vm.http_request(path=CHAT, body=body(max_tokens), upstream=upstream, worker=worker,
                           headers=[("authorization", f"Bearer {DEMO_KEY}"),
                                    ("content-type", "application/json")])


def test_a_strict_call_is_clamped_then_refused_on_both_hosts(profile, plugin_wasm):
    config = plugin_config(profile)
    config["caps"] = {"token": "demo-read-token", "poll_interval_ms": 100}
    polls = []
    # Room for the input bound and exactly 300 output tokens.
    size = len(body(100_000).encode())
    allowance = (size + 64) * IN_PRICE + 300 * OUT_PRICE + 1e-12
    vm = Host(profile, plugin_wasm, config, clusters=clusters(), workers=2,
              dispatch=collector(allowance, polls))
    vm.tick()
    assert polls and "host" not in polls[0], "no strict budget known yet: a plain poll"
    for _ in range(3):
        vm.tick()
    named = [q for q in polls if "host" in q]
    assert named and named[0]["host"][0].startswith("gw-"), polls
    # The first call asks for a model price (503, retryable) ...
    first = chat(vm, 100_000)
    assert first.client.status == 503, first.client.body
    for _ in range(3):
        vm.tick()
    assert any("openai:gpt-4o-mini" in q.get("model", []) for q in polls), polls
    named = [q for q in polls if "host" in q]
    assert all(q["host"] == named[0]["host"] for q in named), "one host id for every worker"
    # ... then it is reserved and clamped to the 300 tokens that fit.
    second = chat(vm, 100_000, worker=1)
    assert second.client.status == 200, second.client.body
    assert second.client.header("x-aispend-clamped-max-tokens") == "300"
    assert json.loads(second.upstream.body)["max_tokens"] == 300
    # Settled to its real cost (3 + 300 tokens): too little is left for 16 more.
    third = chat(vm, 4096)
    assert third.client.status == 402, third.client.body
    assert json.loads(third.client.body)["error"]["type"] == "budget_exceeded"
    assert not vm.violations, vm.violations
