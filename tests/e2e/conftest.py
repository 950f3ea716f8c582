"""Fixtures: the real collector binary, the mock provider and real Envoy 1.40
with the compiled aispend filter, all on free 127.0.0.1 ports."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/ -> mock_provider

import procs  # noqa: E402
from helpers import Stack, filter_config  # noqa: E402
from mock_provider import MockProvider  # noqa: E402
from sink import RecordSink  # noqa: E402


@pytest.fixture(scope="session")
def mock():
    m = MockProvider().start()
    yield m
    m.stop()


@pytest.fixture
def stack_factory(mock, tmp_path):
    """Build a stack with a custom filter config; everything stops at teardown.
    sink=True points the filter at a recording RecordSink instead of the collector."""
    started = []

    def make(config: dict | str | None = None, *, concurrency: int = 1, jwks: str | None = None,
             sink: bool = False, wait: bool = True) -> Stack:
        s = Stack(mock, None, None, RecordSink() if sink else None)
        started.append(s)  # registered first, so a failed start is still cleaned up
        if not sink:
            s.collector = procs.Collector(tmp_path)
            s.collector.start()
        s.envoy = procs.Envoy(tmp_path, upstream=mock.url, concurrency=concurrency, jwks=jwks,
                              filter_config=filter_config() if config is None else config,
                              collector_port=s.sink.port if sink else s.collector.port)
        s.envoy.start(wait=wait)
        mock.clear()
        return s

    yield make
    for s in started:
        if s.envoy:
            s.envoy.stop()
            s.envoy.proc.forget()
        if s.collector:
            s.collector.stop()
            s.collector.proc.forget()
        if s.sink:
            s.sink.stop()
    # No collector of the suite ever logs a token (CONTRACTS §9).
    for s in started:
        if s.collector:
            procs.assert_no_secrets(s.collector.proc.log_text())


@pytest.fixture(scope="module")
def demo(mock, tmp_path_factory):
    """One shared stack per test module with the test filter config."""
    tmp = tmp_path_factory.mktemp("demo")
    s = Stack(mock, procs.Collector(tmp), None)
    try:
        s.collector.start()
        s.envoy = procs.Envoy(tmp, upstream=mock.url, collector_port=s.collector.port,
                              filter_config=filter_config())
        s.envoy.start()
        yield s
    finally:
        for p in (s.envoy, s.collector):
            if p:
                p.stop()
                p.proc.forget()
    procs.assert_no_secrets(s.collector.proc.log_text())


@pytest.fixture(scope="module")
def sink_stack(mock, tmp_path_factory):
    """Envoy + aispend shipping to a RecordSink (no collector): for asserting
    on the exact records the filter ships."""
    tmp = tmp_path_factory.mktemp("sink")
    s = Stack(mock, None, None, RecordSink())
    try:
        s.envoy = procs.Envoy(tmp, upstream=mock.url, collector_port=s.sink.port, filter_config=filter_config())
        s.envoy.start()
        yield s
    finally:
        if s.envoy:
            s.envoy.stop()
            s.envoy.proc.forget()
        s.sink.stop()


@pytest.fixture(scope="session", autouse=True)
def _no_orphans():
    """Safety net: whatever a failed fixture left running dies with the session."""
    yield
    for p in list(procs.LIVE):
        p.stop()


@pytest.fixture(scope="session", autouse=True)
def _no_secret_in_any_log():
    """After the whole suite: no log that a collector or Envoy wrote (every
    Proc's log file) holds a token, a virtual key, a provider credential, a
    webhook secret or a signing secret that the tests used (procs.secret)."""
    yield
    for p in list(procs.LIVE):
        p.stop()
    found = procs.secrets_in_logs()
    assert not found, "secrets in logs:\n" + "\n".join(found)


@pytest.fixture(autouse=True)
def _clean_mock(mock):
    mock.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when in ("setup", "call"):
        for p in procs.LIVE:
            rep.sections.append((f"{p.name} log tail ({p.log})", p.tail()))
