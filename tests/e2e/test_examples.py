"""The copy-paste examples in envoy/examples stay valid: Envoy accepts them
and the aispend filter accepts the JSON configuration they carry."""
import json
import re
import subprocess

import pytest

from procs import ROOT, VENV_ENVOY, WASM
from test_jwt import _jwks

EXAMPLES = ROOT / "envoy" / "examples"


def embedded_filter_config(example_text: str) -> dict:
    """The `value: |` block under the wasm filter's `configuration`."""
    lines = example_text.splitlines()
    start = next(i for i, ln in enumerate(lines) if re.search(r"value: \|\s*$", ln))
    indent = len(lines[start + 1]) - len(lines[start + 1].lstrip())
    block = []
    for ln in lines[start + 1:]:
        if ln.strip() and len(ln) - len(ln.lstrip()) < indent:
            break
        block.append(ln)
    return json.loads("\n".join(block))


@pytest.mark.parametrize("name", ["aispend-plain.yaml", "aispend-jwt.yaml"])
def test_example_passes_envoy_validation(name, tmp_path):
    from cryptography.hazmat.primitives.asymmetric import rsa
    jwks = tmp_path / "jwks.json"
    jwks.write_text(_jwks(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    text = (EXAMPLES / name).read_text()
    text = text.replace("/etc/envoy/aispend_plugin.wasm", str(WASM)).replace("/etc/envoy/idp-jwks.json", str(jwks))
    cfg = tmp_path / name
    cfg.write_text(text)
    out = subprocess.run([str(VENV_ENVOY), "--mode", "validate", "-c", str(cfg)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


@pytest.mark.parametrize("name", ["aispend-plain.yaml", "aispend-jwt.yaml"])
def test_example_filter_config_is_accepted_by_the_filter(name, stack_factory):
    cfg = embedded_filter_config((EXAMPLES / name).read_text())
    s = stack_factory(cfg)
    assert s.envoy.proc.running()
    assert "invalid config" not in s.envoy.proc.log_text()


def test_https_upstream_renders_tls_with_sni_and_host_rewrite(tmp_path):
    import sys
    sys.path.insert(0, str(ROOT / "envoy"))
    import render
    text = render.render(upstream="https://api.openai.com", wasm_path=str(WASM),
                         filter_config=(ROOT / "envoy" / "demo-filter-config.json").read_text())
    assert '"sni": "api.openai.com"' in text
    assert '"host_rewrite_literal": "api.openai.com"' in text
    assert "port_value: 443" in text
    cfg = tmp_path / "https.yaml"
    cfg.write_text(text)
    out = subprocess.run([str(VENV_ENVOY), "--mode", "validate", "-c", str(cfg)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def test_render_rejects_a_malformed_upstream():
    import sys
    sys.path.insert(0, str(ROOT / "envoy"))
    import render
    with pytest.raises(ValueError, match="upstream must be"):
        render.render(upstream="api.openai.com:443")


@pytest.mark.parametrize("name", ["aispend-plain.yaml", "aispend-jwt.yaml"])
def test_example_enforces_a_hard_cap_as_shipped(name, stack_factory):
    """Issue 25: a copied example enforces budget caps once its placeholders
    (the two tokens) are filled in: nothing else is changed, the poll and
    flush intervals are the shipped ones."""
    from helpers import SEARCH_KEY, chat_body
    from procs import ADMIN_TOKEN, INGEST_TOKEN, READ_TOKEN, call, wait_until
    text = (EXAMPLES / name).read_text()
    text = text.replace("REPLACE-WITH-YOUR-INGEST-TOKEN", INGEST_TOKEN)
    text = text.replace("REPLACE-WITH-YOUR-READ-TOKEN", READ_TOKEN)
    cfg = embedded_filter_config(text)
    assert cfg["caps"]["token"] == READ_TOKEN, "the example sets caps.token"
    s = stack_factory(cfg)
    status, _, body = call("POST", s.collector.port, "/v1/budgets",
                           {"id": "tiny", "scope": {"team": "search"}, "period": "month",
                            "amount_usd": 0.000001},
                           {"authorization": f"Bearer {ADMIN_TOKEN}"})
    assert status == 201, body
    assert s.chat(SEARCH_KEY, chat_body(3))[0] == 200  # spends past the budget

    def refused():
        status, _, body = s.chat(SEARCH_KEY, chat_body(3))
        return status == 402 and b"budget_exceeded" in body
    wait_until(refused, 20, "a 402 from the example's config")
    assert "caps poll answered Some(401)" not in s.envoy.proc.log_text()
