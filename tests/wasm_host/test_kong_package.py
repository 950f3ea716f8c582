"""kong/: the filter's config_schema (JSON Schema draft 4, what Kong 3.9
validates filter configs with) against the documented configs, and the same
configs against the real filter's on_configure, so the schema and the plugin
cannot drift apart unnoticed."""

import copy
import json
import pathlib
import re

import jsonschema
import pytest
import yaml

from wasm_host import ConfigRejected, Host
from wasm_host.plugin_configs import DEMO_KEY, sha256

ROOT = pathlib.Path(__file__).resolve().parents[2]
KONG = ROOT / "kong"
META = json.loads((KONG / "aispend_plugin.meta.json").read_text())
SCHEMA = META["config_schema"]
VALIDATOR = jsonschema.Draft4Validator(SCHEMA)


def config_md_blocks():
    """The config examples of plugin/CONFIG.md (json blocks with a collector).
    Its sha256 placeholders are filled with a real digest."""
    text = (ROOT / "plugin" / "CONFIG.md").read_text()
    blocks = []
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        block = re.sub(r'"<64 hex chars[^"]*>"', f'"{sha256(DEMO_KEY)}"', block)
        doc = json.loads(block)
        if "collector" in doc:
            blocks.append(doc)
    return blocks


def envoy_configs():
    found = []
    demo = ROOT / "envoy" / "demo-filter-config.json"
    if demo.exists():
        found.append(("envoy/demo-filter-config.json", json.loads(demo.read_text())))
    for path in sorted((ROOT / "envoy" / "examples").glob("*.yaml")):
        for i, value in enumerate(_string_values(yaml.safe_load(path.read_text()))):
            try:
                doc = json.loads(value)
            except ValueError:
                continue
            if isinstance(doc, dict) and "collector" in doc:
                found.append((f"envoy/examples/{path.name}#{i}", doc))
    return found


def kong_configs():
    found = []
    for path in sorted((KONG / "examples").glob("*.kong.yml")):
        doc = yaml.safe_load(path.read_text())
        for i, node in enumerate(_dicts(doc)):
            if node.get("name") == "aispend_plugin" and "config" in node:
                found.append((f"kong/examples/{path.name}#{i}", node["config"]))
    return found


def _dicts(node):
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _dicts(value)
    elif isinstance(node, list):
        for value in node:
            yield from _dicts(value)


def _string_values(node):
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _string_values(value)
    elif isinstance(node, list):
        for value in node:
            yield from _string_values(value)


DOCUMENTED = (
    [(f"plugin/CONFIG.md#{i}", c) for i, c in enumerate(config_md_blocks())]
    + envoy_configs()
    + kong_configs()
)


def test_meta_json_is_a_draft4_schema():
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-04/schema#"
    jsonschema.Draft4Validator.check_schema(SCHEMA)
    assert set(META) == {"config_schema"}, "Kong reads only config_schema from .meta.json"


def test_every_kind_of_documented_config_was_found():
    sources = {name.split("#")[0].split("/")[0] for name, _ in DOCUMENTED}
    assert {"plugin", "kong"} <= sources
    assert len(kong_configs()) == 2


@pytest.mark.parametrize("name,config", DOCUMENTED, ids=[n for n, _ in DOCUMENTED])
def test_schema_accepts_documented_configs(name, config):
    errors = [e.message for e in VALIDATOR.iter_errors(config)]
    assert errors == [], f"{name}: {errors}"


@pytest.mark.parametrize("name,config", DOCUMENTED, ids=[n for n, _ in DOCUMENTED])
def test_the_filter_accepts_documented_configs(name, config, plugin_wasm):
    profile = config.get("gateway", "envoy")
    # A real on_configure, one worker: the schema and the filter agree.
    Host(profile, plugin_wasm, config, workers=1)


def _base():
    """The filter-chain example: it has keys, tags and labels to break."""
    [config] = [c for name, c in kong_configs() if "filter-chain" in name]
    return copy.deepcopy(config)


def _set(path, value):
    config = _base()
    node = config
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return config


BAD = [
    ("unknown top-level field", _set(["colector"], {}), "Additional properties"),
    ("typo inside collector", _set(["collector", "tokn"], "x"), "Additional properties"),
    ("missing collector", {"gateway": "kong"}, "'collector' is a required property"),
    ("gateway not a host", _set(["gateway"], "nginx"), "is not one of"),
    ("short sha256", _set(["identity", "keys", 0, "sha256"], "abc123"), "does not match"),
    ("bad tag value", _set(["identity", "keys", 0, "tags", "team"], "search team"),
     "does not match"),
    ("bad key status", _set(["identity", "keys", 0, "status"], "disabled"), "is not one of"),
    ("flush too fast", _set(["collector", "flush_interval_ms"], 5), "less than the minimum"),
    ("batch too big", _set(["collector", "max_batch"], 20000), "greater than the maximum"),
    ("relative ingest path", _set(["collector", "path"], "v1/records"), "does not match"),
    ("label outside x-aispend-label-", _set(["tags", "labels", "allow"], ["x-feature"]),
     "does not match"),
    ("unknown identity source", _set(["identity", "sources"], ["password"]), "is not one of"),
    ("on_conflict typo", _set(["tags", "on_conflict"], "drop"), "is not one of"),
    ("registry poll too fast", _set(["identity", "registry", "poll_ms"], 10),
     "less than the minimum"),
    ("registry path relative", _set(["identity", "registry", "path"], "v1/keys/registry"),
     "does not match"),
    ("registry field typo", _set(["identity", "registry", "poll_interval_ms"], 2000),
     "Additional properties"),
]


@pytest.mark.parametrize("what,config,message", BAD, ids=[b[0] for b in BAD])
def test_schema_rejects_bad_configs_with_a_clear_error(what, config, message):
    errors = list(VALIDATOR.iter_errors(config))
    assert errors, f"{what}: accepted"
    best = jsonschema.exceptions.best_match(errors)
    assert message in best.message, f"{what}: {best.message}"


@pytest.mark.parametrize("what,config,message", BAD, ids=[b[0] for b in BAD])
def test_the_filter_rejects_them_too(what, config, message, plugin_wasm):
    with pytest.raises(ConfigRejected, match="invalid config"):
        Host("kong", plugin_wasm, config, workers=1)


@pytest.mark.parametrize("name", ["filter-chain.kong.yml", "filter-as-plugin.kong.yml"])
def test_kong_example_enforces_a_hard_cap_as_shipped(name, plugin_wasm):
    """Issue 25: each Kong example, as shipped, polls caps with its token and
    answers 402 once the collector says the team is at its hard cap."""
    import json as _json
    from wasm_host import Reply
    doc = yaml.safe_load((KONG / "examples" / name).read_text())
    configs = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("name") == "aispend_plugin" and "config" in node:
                configs.append(node["config"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(doc)
    [config] = configs
    assert config["caps"]["token"], "the example sets caps.token"
    vm = Host("kong", plugin_wasm, config, workers=1,
              resolver={"aispend-collector.internal": "127.0.0.1"})
    vm.tick()
    [poll] = [c for c in vm.pending_calls() if c.path.startswith("/v1/caps")]
    assert poll.header("authorization") == f"Bearer {config['caps']['token']}"
    vm.respond(poll, 200, _json.dumps({"version": "v1", "caps": [
        {"budget_id": "b1", "scope": {"team": "search"}, "state": "hard"}]}).encode())
    vm.tick()
    if config["identity"].get("sources") == ["kong_consumer"]:
        headers = [("x-consumer-username", "alice"), ("x-api-key", "alice-virtual-key")]
        path = "/v1/messages"
    else:
        headers = [("authorization", f"Bearer {DEMO_KEY}")]
        path = "/v1/chat/completions"
    ex = vm.http_request(path=path, headers=headers, body=b'{"model":"m","messages":[]}',
                         upstream=lambda r: Reply(200, [], b"{}"))
    assert ex.client.status == 402, ex.client
    assert ex.client.json()["error"]["code"] == "budget_exceeded"
