"""Issue 25: every curl example of the README works against `make run` as
pasted. The examples are read from the README itself, so the docs and the
product cannot drift apart. Ports are moved to free ones (the README's
defaults may be taken on this machine); blocks with a `<placeholder>` are
templates, not commands, and are skipped."""
import os
import re
import subprocess
import sys

from procs import ROOT, call, free_port, wait_until

README = ROOT / "README.md"
DEFAULT_PORTS = {"10000": "AISPEND_PORT", "9090": "AISPEND_COLLECTOR_PORT",
                 "9901": "AISPEND_ADMIN_PORT", "18080": "AISPEND_MOCK_PORT"}


def runnable_blocks():
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.S)
    return [b for b in blocks if "127.0.0.1:" in b and not re.search(r"<[a-z][^>]*>", b)]


def test_every_readme_curl_works_against_make_run(tmp_path):
    ports = {name: str(free_port()) for name in DEFAULT_PORTS.values()}
    env = {**os.environ, **ports, "AISPEND_DATA_DIR": str(tmp_path / "data")}
    run = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "run.py")], env=env,
                           stdout=open(tmp_path / "run.log", "wb"), stderr=subprocess.STDOUT,
                           start_new_session=True)
    try:
        port = int(ports["AISPEND_PORT"])
        wait_until(lambda: call("GET", int(ports["AISPEND_ADMIN_PORT"]), "/ready")[0] == 200, 60,
                   "make run's Envoy ready")
        wait_until(lambda: call("GET", int(ports["AISPEND_COLLECTOR_PORT"]), "/healthz")[0] == 200,
                   30, "make run's collector ready")
        assert port
        outputs = []
        blocks = runnable_blocks()
        assert len(blocks) >= 4, "the README lost its examples"
        for block in blocks:
            script = block
            for default, name in DEFAULT_PORTS.items():
                script = re.sub(rf"127\.0\.0\.1:{default}\b", f"127.0.0.1:{ports[name]}", script)
            out = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], capture_output=True,
                                 text=True, timeout=120)
            assert out.returncode == 0, f"{block}\n--- stdout\n{out.stdout}\n--- stderr\n{out.stderr}"
            assert "curl:" not in out.stderr, out.stderr
            outputs.append(out.stdout)
        text = "\n".join(outputs)
        assert '"object":"chat.completion"' in text.replace(" ", "")
        assert re.search(r"HTTP/1.1 429", text), "the rate-limit example reaches 429"
        assert re.search(r"x-ratelimit-remaining-requests", text, re.I)
        assert "\n402" in text, "the budget walk-through reaches 402"
        assert '"rows"' in text, "the usage query answers"
        assert re.search(r"\n\S+ \d+ tokens\n", text), "a key issued over the API works in the SDK"
        # Security section: a scoped viewer is refused another team; the runbook's override
        # becomes active and is in the audit log.
        assert re.search(r"403$", text, re.M), "the scoped viewer example reaches 403 out_of_scope"
        assert '"state":"active"' in text.replace(" ", ""), "the runbook's override is active"
        assert '"action":"override.approve"' in text.replace(" ", "")
        assert '"token":"ast-' in text.replace(" ", ""), "the token example shows a secret once"
        # Alerts section: every tier reached the receiver with a valid signature.
        assert text.count(' valid {"') >= 4 and " INVALID " not in text, "signed webhook deliveries"
        assert '"state":"acked"' in text.replace(" ", ""), "the alert ack example"
        assert '"key":"sk-aispend-' in text and '"missing_tag"' in text, "the key API answers"
        assert '"revoked":0' in text, "the bulk revocation answers"
        # FinOps (issue 20): showback, chargeback with the GL account just set,
        # a closed previous month, FOCUS, coverage.
        assert re.search(r'"teams":\[\{"team":"(search|growth)"', text), "showback answers teams"
        assert re.search(r"\n\d{4}-\d{2},CC-1001,6120-AI,search,ranking,\d+,", text), \
            "the chargeback line of CC-1001 carries its GL account"
        assert '"closed_months":[{"month":' in text, "the previous month is closed"
        assert "\nAvailabilityZone,BilledCost," in text, "the FOCUS export answers"
        assert '"coverage":1.0' in text and "aispend_tag_coverage_ratio 1" in text
        # Reconciliation (issue 21): every export imported, the report's totals,
        # a price change stored and read back in effect, a recompute.
        flat = text.replace(" ", "")
        for source in ("openai.usage", "openai.costs", "anthropic.cost", "gemini.billing"):
            assert f'"source":"{source}"' in flat, f"the {source} import answers"
        assert '"unattributed_usd":' in flat and '"non_token_usd":' in flat, "the report's totals"
        assert '"input_cost_per_token":1.2e-07' in flat, "the price change is in effect"
        assert '"price_version":"rc-' in flat, "the recompute answers"
    finally:
        import signal
        os.killpg(run.pid, signal.SIGTERM)
        try:
            run.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(run.pid, signal.SIGKILL)
