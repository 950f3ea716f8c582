"""Issue 23: the collector's API contract. `GET /openapi.json` (public) is
generated from the route table, and schemathesis fuzzes every operation of
it against the real collector (time-boxed): no 5xx, and every answer matches
the documented schema (success bodies, and the error body for the rest)."""
import json
import subprocess
import sys
import time
from pathlib import Path

from procs import ADMIN_TOKEN, Collector, call

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_openapi_document_is_public_and_lists_the_routes(tmp_path):
    c = Collector(tmp_path).start()
    try:
        status, headers, body = call("GET", c.port, "/openapi.json")
        assert status == 200 and headers["content-type"].startswith("application/json")
        doc = json.loads(body)
        assert doc["openapi"].startswith("3.")
        paths = doc["paths"]
        assert {"/healthz", "/openapi.json", "/v1/records", "/v1/usage", "/v1/keys/{key_id}"} <= set(paths)
        assert paths["/healthz"]["get"]["security"] == []
        # Documented as protected, and it is.
        assert "security" not in paths["/v1/usage"]["get"]
        assert call("GET", c.port, "/v1/usage")[0] == 401
    finally:
        c.stop()


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(tmp_path):
    assert SCHEMATHESIS.exists(), f"{SCHEMATHESIS} missing: run `make venv` (tests/requirements.txt)"
    c = Collector(tmp_path).start()
    try:
        started = time.monotonic()
        run = subprocess.run(
            [str(SCHEMATHESIS), "run", f"http://127.0.0.1:{c.port}/openapi.json",
             "--checks", "not_a_server_error,response_schema_conformance",
             "-H", f"Authorization: Bearer {ADMIN_TOKEN}",
             "--max-examples", "10", "--seed", "23", "--no-color", "--request-timeout", "10"],
            capture_output=True, text=True, timeout=170)
        took = time.monotonic() - started
        out = run.stdout + run.stderr
        assert run.returncode == 0, out[-6000:]
        assert "Tested: " in out and " passed" in out, out[-3000:]
        assert took < 120, f"schemathesis took {took:.0f}s (budget 120s)"
    finally:
        c.stop()
