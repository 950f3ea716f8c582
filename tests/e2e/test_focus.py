"""Issue 20: the FOCUS export (SPEC §11) of traffic carried by a real Envoy
passes the FinOps Foundation's validator (`focus-validator` 1.0.0, rule set
1.0, no --transitional, no override file), and its BilledCost sums to
/v1/usage's total.

Why rule set 1.0 for a 1.2 file, and why four columns are copied under other
names before validating: see README, "FOCUS export".
"""
from __future__ import annotations

import csv
import io
import json
import subprocess
from pathlib import Path

import pytest

import procs
from helpers import GROWTH_KEY, SEARCH_KEY, chat_body, wait_for_requests, usage_window_start

FOCUS_VENV = procs.ROOT / ".venv" / "focus"
VALIDATOR = FOCUS_VENV / "bin" / "focus-validator"

# focus-validator 1.0.0's "1.0" rule set still uses the pre-release column
# names; FOCUS 1.0 GA (and 1.2) renamed them. The validator reads a copy of
# the export with each value also under the name its rules check.
VALIDATOR_NAMES = {
    "ProviderName": "Provider",
    "PublisherName": "Publisher",
    "InvoiceIssuerName": "InvoiceIssuer",
    "ResourceId": "ResourceID",
    # SkuPriceId_Nullable's SQL still reads ChargeType (ChargeCategory in 1.0).
    "ChargeCategory": "ChargeType",
}


def site_packages() -> Path:
    """The validator reads focus_validator/utils/currency_codes.csv relative to
    its working directory: run it from its site-packages."""
    out = subprocess.run([str(FOCUS_VENV / "bin" / "python"), "-c",
                          "import focus_validator, os; "
                          "print(os.path.dirname(os.path.dirname(focus_validator.__file__)))"],
                         check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def validate(export: str, tmp: Path) -> tuple[bool, str]:
    """Runs the validator on `export` (the CSV text); (passed, its output)."""
    assert VALIDATOR.exists(), f"{VALIDATOR} missing: run `make venv`"
    rows = list(csv.reader(io.StringIO(export)))
    header = rows[0]
    copies = [(header.index(src), dst) for src, dst in VALIDATOR_NAMES.items()]
    path = tmp / "focus-for-validator.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header + [dst for _, dst in copies])
        for row in rows[1:]:
            w.writerow(row + [row[i] for i, _ in copies])
    run = subprocess.run([str(VALIDATOR), "--data-file", str(path), "--validate-version", "1.0"],
                         cwd=site_packages(), capture_output=True, text=True, timeout=300)
    output = run.stdout + run.stderr
    # The validator exits 0 either way; its verdict is the last line.
    return "Validation succeeded." in output and "failed" not in output, output


def export(collector: procs.Collector, month: str) -> str:
    status, headers, body = procs.call("GET", collector.port, f"/v1/export/focus?month={month}",
                                       headers={"authorization": f"Bearer {procs.ADMIN_TOKEN}"})
    assert status == 200, body[:500]
    assert headers["content-type"].startswith("text/csv")
    return body.decode()


def total(collector: procs.Collector, month: str) -> float:
    y, m = map(int, month.split("-"))
    end = f"{y + m // 12}-{m % 12 + 1:02d}"
    return collector.usage(**{"from": f"{month}-01T00:00:00Z", "to": f"{end}-01T00:00:00Z"})["totals"]["cost_usd"]


def synthetic(month: str) -> list[dict]:
    """Records the demo gateway does not produce: other providers, prompt-cache
    writes, a model without a price, no model at all, missing tags, many days."""
    recs = []
    for i in range(120):
        tags = {"org": "acme", "team": ["search", "growth", "ads"][i % 3], "environment": "prod"}
        if i % 4:
            tags["cost_center"] = ["CC-1001", "CC-2002"][i % 2]
        provider, model = [("openai", "gpt-4o"), ("anthropic", "claude-3-5-haiku-20241022"),
                           ("openai", "unpriced-model"), ("openai", None)][i % 4]
        recs.append({"id": f"focus-{month}-{i}", "ts": f"{month}-{1 + i % 28:02d}T{i % 24:02d}:30:00Z",
                     "gateway": "envoy", "key_id": f"key-{i % 3}", "tags": tags,
                     "labels": {"workflow": "triage"}, "provider": provider, "operation": "chat",
                     "model": model, "status": 200 if model else 401,
                     "error": None if model else "invalid_api_key",
                     "input_tokens": 100 * i, "cached_input_tokens": 10 * i,
                     "cache_write_input_tokens": 5 * i if provider == "anthropic" else 0,
                     "output_tokens": 30 * i, "reasoning_tokens": 0})
    return recs


def test_focus_export_passes_the_validator_and_sums_to_usage(stack_factory, tmp_path):
    s = stack_factory()
    since = usage_window_start()
    calls = [(SEARCH_KEY, chat_body(20, "gpt-4o-mini"), {"x-mock-cached-tokens": "8"}),
             (SEARCH_KEY, chat_body(9, "gpt-4o"), {}),
             (GROWTH_KEY, chat_body(5, "gpt-4o-mini"), {})]
    for key, body, headers in calls:
        status, _, resp = s.chat(key, body, headers)
        assert status == 200, resp
    this_month = wait_for_requests(s.collector, since, len(calls))["from"][:7]
    status, _, body = procs.call("POST", s.collector.port, "/v1/records",
                                 {"records": synthetic("2025-11")},
                                 headers={"authorization": f"Bearer {procs.INGEST_TOKEN}"})
    assert status == 200 and json.loads(body)["rejected"] == [], body

    for month in (this_month, "2025-11"):
        text = export(s.collector, month)
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows, f"no FOCUS rows for {month}"
        want = total(s.collector, month)
        got = sum(float(r["BilledCost"]) for r in rows)
        assert abs(got - want) <= 1e-9 * max(abs(want), 1e-12), (month, got, want)
        assert {r["ServiceProviderName"] for r in rows} >= {"openai"}
        assert all(json.loads(r["Tags"]).get("org") == "acme" for r in rows)
        passed, output = validate(text, tmp_path)
        assert passed, f"FOCUS export of {month} fails the validator:\n{output}"
    # The gateway's own traffic is attributed to its key's tags.
    rows = list(csv.DictReader(io.StringIO(export(s.collector, this_month))))
    teams = {json.loads(r["Tags"])["team"] for r in rows}
    assert teams == {"search", "growth"}, teams
    assert {r["SkuMeter"] for r in rows} >= {"Input Tokens", "Cached Input Tokens", "Output Tokens"}


@pytest.mark.parametrize("column,value", [("BillingCurrency", "usd"), ("ChargeFrequency", "Sometimes"),
                                          ("BilledCost", "lots"), ("Tags", "[1]"),
                                          ("ServiceCategory", "LLM")])
def test_the_validator_catches_a_broken_export(stack_factory, tmp_path, column, value):
    """The check above can fail: one bad column makes the same export fail."""
    s = stack_factory()
    status, _, body = procs.call("POST", s.collector.port, "/v1/records",
                                 {"records": synthetic("2025-11")[:20]},
                                 headers={"authorization": f"Bearer {procs.INGEST_TOKEN}"})
    assert status == 200, body
    rows = list(csv.reader(io.StringIO(export(s.collector, "2025-11"))))
    i = rows[0].index(column)
    rows[1][i] = value
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    passed, output = validate(out.getvalue(), tmp_path)
    assert not passed, f"a {column} of {value!r} should fail:\n{output}"
    assert column in output
