"""The end-of-session secret scan (conftest._no_secret_in_any_log) finds what
it must and passes what may be logged; no process needed."""
import procs
from helpers import SEARCH_KEY, UPSTREAM_CREDENTIAL


def test_scan_finds_each_kind_of_secret(tmp_path):
    cases = {
        "bootstrap": f"auth failed for {procs.ADMIN_TOKEN}",
        "virtual_key": f"unknown key {SEARCH_KEY}",
        "issued_key": "key sk-aispend-" + "ab12" * 10,
        "made_up_key": "x-api-key: sk-aispend-not-a-key",
        "api_token": "token ast-" + "0f" * 24,
        "credential": f"authorization: {UPSTREAM_CREDENTIAL}",
        "registered": "hook secret " + procs.secret("scan-test-secret-42"),
    }
    for name, line in cases.items():
        log = tmp_path / f"{name}.log"
        log.write_text(f"[info] starting\n{line}\n")
        assert procs.secrets_in_logs([log]), f"{name} not found in {line!r}"


def test_scan_passes_masked_keys_and_hashes(tmp_path):
    log = tmp_path / "clean.log"
    log.write_text("key sk-aispend-…3f2a revoked\nsha256 9f86d081884c7d659a2feaa0c55ad015\n"
                   "token id tok_123 created by admin\n")
    assert procs.secrets_in_logs([log]) == []
    assert log not in procs.LOGS  # the session scan reads only the processes' logs
