"""Issue 23: signed tags. The README's verifiers (Python, Node, Go where `go`
is installed) are read from the README itself and run against a request the
filter signed in real Envoy, as the mock provider received it."""
import json
import re
import shutil
import subprocess
import time

import pytest

import procs
from helpers import SEARCH_KEY, SEARCH_TAGS, Stack, chat_body, filter_config
from procs import ROOT

SECRET = procs.secret("6f1d2c0b9a8e7d6c5b4a39281706f5e4d3c2b1a0")
OLD_SECRET = procs.secret("retired-secret-retired-secret-retired-secret")
SIGNING = {"keys": [{"id": "2026-12", "secret": SECRET}, {"id": "2026-11", "secret": OLD_SECRET}]}
SECRETS = {"2026-12": SECRET, "2026-11": OLD_SECRET}


def readme_block(lang: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Signed tags\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(rf"```{lang}\n(.*?)```", section, re.S)
    assert len(blocks) == 1, f"one {lang} verifier in README 'Signed tags'"
    return blocks[0]


@pytest.fixture(scope="module")
def signed(mock, tmp_path_factory):
    """One call through Envoy with signing on, spoofing tags and a signature."""
    tmp = tmp_path_factory.mktemp("signing")
    collector = procs.Collector(tmp)
    collector.start()
    envoy = procs.Envoy(tmp, upstream=mock.url, collector_port=collector.port,
                        filter_config=filter_config(signing=SIGNING))
    try:
        envoy.start()
        mock.clear()
        s = Stack(mock, collector, envoy)
        status, _, body = s.chat(SEARCH_KEY, chat_body(3), {
            "x-aispend-signature": "t=1,kid=2026-12,v1=" + "0" * 64,
            "x-aispend-team": "evil", "X-Aispend-Org": "evil", "x_aispend_project": "evil",
            "x-aispend-label-feature": "summarize"})
        assert status == 200, body
        seen = mock.requests()
        assert len(seen) == 1
        yield seen[0]
    finally:
        envoy.stop()
        collector.stop()


def test_the_filter_signs_and_the_python_verifier_accepts_it(signed):
    headers = signed["headers"]
    names = [n.lower() for n, _ in signed["header_list"]]
    assert names.count("x-aispend-signature") == 1, "the client's copy is gone"
    sig = headers["x-aispend-signature"]
    assert re.fullmatch(r"t=\d+,kid=2026-12,v1=[0-9a-f]{64}", sig), sig
    assert abs(int(sig.split(",")[0][2:]) - time.time()) < 60

    scope: dict = {}
    exec(readme_block("python"), scope)
    verify = scope["verify_aispend"]
    tags = verify(headers, SECRETS)
    assert tags["x-aispend-team"] == SEARCH_TAGS["team"]
    assert tags["x-aispend-org"] == SEARCH_TAGS["org"]
    assert tags["x-aispend-key-id"] == "demo-search"
    assert re.fullmatch(r"[0-9a-f]{32}", tags["x-aispend-request-id"])
    assert "x-aispend-label-feature" not in tags and headers["x-aispend-label-feature"] == "summarize"

    # Whatever a hop changes after the gateway, verification fails.
    t = int(sig.split(",")[0][2:])
    bad = [
        {**headers, "x-aispend-team": "growth"},
        {**headers, "x-aispend-environment-extra": "x"},
        {k: v for k, v in headers.items() if k != "x-aispend-project"},
        {**headers, "x-aispend-signature": sig.replace("kid=2026-12", "kid=2026-11")},
        {**headers, "x-aispend-signature": sig.replace(f"t={t}", f"t={t + 1}")},
    ]
    for h in bad:
        with pytest.raises(ValueError):
            verify(h, SECRETS)
    with pytest.raises(ValueError):
        verify(headers, {"2026-12": OLD_SECRET})
    with pytest.raises(ValueError, match="stale"):
        verify(headers, SECRETS, now=t + 301)
    with pytest.raises(ValueError):
        verify({k: v for k, v in headers.items() if k != "x-aispend-signature"}, SECRETS)


def test_the_node_verifier_accepts_it(signed, tmp_path):
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    (tmp_path / "verify.js").write_text(readme_block("js"))
    (tmp_path / "run.js").write_text(
        "const { verifyAispend } = require('./verify.js');\n"
        "const { headers, secrets } = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
        "try { console.log(JSON.stringify(verifyAispend(headers, secrets))); }\n"
        "catch (e) { console.log('ERROR ' + e.message); }\n")

    def run(headers):
        out = subprocess.run([node, str(tmp_path / "run.js")], input=json.dumps(
            {"headers": headers, "secrets": SECRETS}), capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    headers = signed["headers"]
    ok = json.loads(run(headers))
    assert ok["x-aispend-team"] == SEARCH_TAGS["team"] and ok["x-aispend-key-id"] == "demo-search"
    assert run({**headers, "x-aispend-team": "growth"}) == "ERROR bad signature"
    assert run({**headers, "x-aispend-signature": "t=1,kid=nope,v1=00"}).startswith("ERROR missing")


def test_the_go_verifier_accepts_it(signed, tmp_path):
    go = shutil.which("go")
    if not go:
        pytest.skip("go is not installed")
    mod = tmp_path / "aispend"
    mod.mkdir()
    (mod / "go.mod").write_text("module aispend\n\ngo 1.18\n")
    (mod / "verify.go").write_text(readme_block("go"))
    headers = signed["headers"]
    tampered = {**headers, "x-aispend-team": "growth"}
    (mod / "verify_test.go").write_text(f"""package aispend

import ("net/http"; "testing"; "time")

func header(m map[string]string) http.Header {{
	h := http.Header{{}}
	for k, v := range m {{ h.Set(k, v) }}
	return h
}}

func TestSigned(t *testing.T) {{
	secrets := map[string]string{{"2026-12": {json.dumps(SECRET)}}}
	got, err := Verify(header({_go_map(headers)}), secrets, 5*time.Minute)
	if err != nil || got["x-aispend-team"] != {json.dumps(SEARCH_TAGS["team"])} {{ t.Fatalf("%v %v", got, err) }}
	if _, err := Verify(header({_go_map(tampered)}), secrets, 5*time.Minute); err == nil {{ t.Fatal("tampered passed") }}
}}
""")
    out = subprocess.run([go, "test", "./..."], cwd=mod, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def _go_map(d: dict) -> str:
    return "map[string]string{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in d.items()) + "}"
