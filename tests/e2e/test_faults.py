"""Issue 23: nothing lost under faults. Every scenario runs real Envoy with
the filter and the real collector and checks the filter's own accounting,
read from Envoy's admin stats:

    aispend_records_emitted == records stored by the collector + aispend_records_dropped

with zero drops while the buffer (collector.max_buffer) suffices. Faults come
from a small TCP proxy (faultproxy.py) in front of the collector, or from
killing the collector outright."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from faultproxy import CUT, HANG, HTTP_503, PASS, FaultProxy
from helpers import GROWTH_KEY, SEARCH_KEY, Stack, chat_body, filter_config, usage_window_end, usage_window_start
from procs import Collector, Envoy, wait_until
from test_resilience import stat


def stored(collector: Collector, since: str) -> int:
    u = collector.usage(**{"from": since, "to": usage_window_end()})
    return u.get("totals", {}).get("requests", 0)


def assert_accounted(s: Stack, since: str, *, emitted: int, dropped: int = 0, timeout: float = 30) -> None:
    """Wait until emitted == stored + dropped holds with the expected numbers."""
    def settled():
        st = s.envoy.stats()
        got = (stat(st, "aispend_records_emitted"), stored(s.collector, since), stat(st, "aispend_records_dropped"))
        return got if got == (emitted, emitted - dropped, dropped) else None
    try:
        wait_until(settled, timeout, f"emitted={emitted} stored={emitted - dropped} dropped={dropped}", interval=0.25)
    except AssertionError:
        st = s.envoy.stats()
        raise AssertionError(f"not accounted: emitted={stat(st, 'aispend_records_emitted')} "
                             f"stored={stored(s.collector, since)} dropped={stat(st, 'aispend_records_dropped')} "
                             f"shipped={stat(st, 'aispend_records_shipped')} (want emitted={emitted}, "
                             f"dropped={dropped})")


def fault_stack(stack_factory, tmp_path, **collector_cfg) -> tuple[Stack, FaultProxy]:
    """A stack whose filter reaches the collector only through a FaultProxy."""
    s = stack_factory()  # collector + an Envoy we replace with one behind the proxy
    s.envoy.stop()
    s.envoy.proc.forget()
    proxy = FaultProxy(s.collector.port)
    cfg = filter_config(collector={"flush_interval_ms": 100, "max_backoff_ms": 400, **collector_cfg})
    s.envoy = Envoy(tmp_path, upstream=s.mock.url, collector_port=proxy.port, filter_config=cfg, name="envoy-f")
    s.envoy.start()
    return s, proxy


def send(s: Stack, n: int) -> None:
    for i in range(n):
        status, _, body = s.chat(SEARCH_KEY if i % 2 else GROWTH_KEY, chat_body(2))
        assert status == 200, body  # shipping never blocks traffic


def test_collector_sigkilled_mid_batch_then_restarted_loses_nothing(stack_factory, tmp_path):
    s, proxy = fault_stack(stack_factory, tmp_path)
    since = usage_window_start()
    n, sent = 60, []
    errors = []

    def traffic():
        try:
            for i in range(n):
                status, _, _ = s.chat(SEARCH_KEY if i % 2 else GROWTH_KEY, chat_body(2))
                sent.append(status)
                time.sleep(0.01)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=traffic)
    t.start()
    # Kill -9 while batches are flowing (some stored, some in flight).
    wait_until(lambda: stat(s.envoy.stats(), "aispend_records_shipped") >= 5, 10, "first batches shipped")
    s.collector.proc.popen.send_signal(signal.SIGKILL)
    s.collector.proc.popen.wait()
    t.join()
    assert not errors and sent == [200] * n
    wait_until(lambda: stat(s.envoy.stats(), "aispend_ship_failures") > 0, 10, "ship failures while killed")
    restarted = Collector(s.collector.workdir, port=s.collector.port)
    s.collector.proc.forget()
    s.collector = restarted
    restarted.start()
    # A batch stored just before the kill and retried after it is stored once
    # (records are idempotent by id), so the sum is exact.
    assert_accounted(s, since, emitted=n)
    proxy.stop()


@pytest.mark.parametrize("fault", [HTTP_503, HANG, CUT], ids=["5xx", "timeout", "refused"])
def test_collector_faults_then_recovery_lose_nothing(stack_factory, tmp_path, fault):
    s, proxy = fault_stack(stack_factory, tmp_path, timeout_ms=300)
    since = usage_window_start()
    send(s, 4)
    assert_accounted(s, since, emitted=4)
    proxy.set(fault)
    send(s, 20)
    wait_until(lambda: stat(s.envoy.stats(), "aispend_ship_failures") > 0 and proxy.faulted > 0, 10,
               f"the filter to see the {fault} fault")
    st = s.envoy.stats()
    assert stat(st, "aispend_records_retried") > 0
    assert stored(s.collector, since) == 4, "nothing got through the fault"
    proxy.set(PASS)
    assert_accounted(s, since, emitted=24)
    proxy.stop()


def test_buffer_filled_past_its_bound_counts_every_drop(stack_factory, tmp_path):
    bound = 5
    s, proxy = fault_stack(stack_factory, tmp_path, max_buffer=bound, max_batch=bound)
    since = usage_window_start()
    proxy.set(HTTP_503)
    n = 17
    send(s, n)
    wait_until(lambda: stat(s.envoy.stats(), "aispend_records_dropped") == n - bound, 10,
               f"{n - bound} records dropped")
    proxy.set(PASS)
    # The newest `bound` records survive; the rest are counted, not silently lost.
    assert_accounted(s, since, emitted=n, dropped=n - bound)
    proxy.stop()


class HotRestartEnvoy(Envoy):
    """Envoy started for hot restart: same config, epochs 0, 1, ... sharing a
    base id; the child takes the listeners, the parent drains for
    `drain_s` and is told to exit after `parent_shutdown_s`."""

    def __init__(self, workdir, *, base_id: int, epoch: int, drain_s: int = 1, parent_shutdown_s: int = 3, **kw):
        super().__init__(workdir, name=f"envoy-e{epoch}", **kw)
        argv = self.proc.argv
        argv.remove("--disable-hot-restart")
        argv += ["--base-id", str(base_id), "--restart-epoch", str(epoch), "--drain-time-s", str(drain_s),
                 "--parent-shutdown-time-s", str(parent_shutdown_s), "--drain-strategy", "immediate"]

    def adopt_ports(self, parent: "Envoy") -> None:
        """The child must render the same listeners as its parent."""
        text = parent.config_path.read_text()
        self.config_path.write_text(text)
        self.port, self.admin_port = parent.port, parent.admin_port


def test_hot_restart_flushes_the_old_process_buffer(stack_factory, tmp_path):
    """Records buffered in the old Envoy when a hot restart begins (the
    collector was unreachable) are shipped by the old process's VM during its
    drain, before the child tells it to exit. Envoy hands the parent's
    counters to the child, so the child's stats account for both processes."""
    import random
    s = stack_factory()
    s.envoy.stop()
    s.envoy.proc.forget()
    proxy = FaultProxy(s.collector.port)
    cfg = filter_config(collector={"flush_interval_ms": 200, "max_backoff_ms": 400})
    base_id = random.randint(1000, 60000)
    kw = dict(upstream=s.mock.url, collector_port=proxy.port, filter_config=cfg, drain_s=1, parent_shutdown_s=4)
    old = HotRestartEnvoy(tmp_path, base_id=base_id, epoch=0, **kw)
    s.envoy = old
    old.start()
    since = usage_window_start()
    proxy.set(HTTP_503)
    n = 10
    send(s, n)
    wait_until(lambda: stat(old.stats(), "aispend_ship_failures") > 0, 10, "the old process to hold its records")
    new = HotRestartEnvoy(tmp_path, base_id=base_id, epoch=1, **kw)
    new.adopt_ports(old)
    new.start()
    assert old.proc.running() and stored(s.collector, since) == 0
    proxy.set(PASS)  # the collector comes back while the old process drains
    wait_until(lambda: not old.proc.running(), 20, "the old Envoy to exit after its drain")
    assert stored(s.collector, since) == n, "the old process shipped its buffer before it exited"
    s.envoy = new
    send(s, 3)
    assert_accounted(s, since, emitted=n + 3)
    proxy.stop()


class LdsEnvoy(Envoy):
    """Envoy whose listener (with the aispend filter) comes from a file-based
    LDS source, so the filter config can be changed while Envoy runs."""

    def __init__(self, workdir, *, filter_config: dict, **kw):
        import yaml
        super().__init__(workdir, name="envoy-lds", filter_config=filter_config, **kw)
        self.proc.argv += ["--drain-time-s", "1", "--drain-strategy", "immediate"]
        boot = yaml.safe_load(self.config_path.read_text())
        self.listener = boot["static_resources"].pop("listeners")[0]
        self.lds_path = workdir / "lds.yaml"
        boot["node"] = {"id": "aispend-test", "cluster": "aispend-test"}
        boot["dynamic_resources"] = {"lds_config": {"resource_api_version": "V3",
                                                    "path_config_source": {"path": str(self.lds_path)}}}
        self.write_listener()
        self.config_path.write_text(yaml.safe_dump(boot))

    def write_listener(self, filter_config: dict | None = None, vm_generation: str | None = None) -> None:
        """(Re)write the LDS file atomically (Envoy watches for the rename)."""
        import json
        import yaml
        wasm = self.listener["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"][0]
        assert wasm["name"] == "envoy.filters.http.wasm"
        if filter_config is not None:
            wasm["typed_config"]["config"]["configuration"]["value"] = json.dumps(filter_config)
        if vm_generation is not None:  # a different VM config: Envoy must start a new VM
            wasm["typed_config"]["config"]["vm_config"]["environment_variables"] = {
                "key_values": {"AISPEND_TEST_GENERATION": vm_generation}}
        tmp = self.lds_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump({"resources": [
            {"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", **self.listener}]}))
        tmp.rename(self.lds_path)

    def all_stats(self) -> dict[str, int]:
        return self.stats(contains="listener_manager")


def lds_stack(stack_factory, tmp_path, cfg: dict) -> tuple[Stack, FaultProxy, "LdsEnvoy"]:
    s = stack_factory()
    s.envoy.stop()
    s.envoy.proc.forget()
    proxy = FaultProxy(s.collector.port)
    env = LdsEnvoy(tmp_path, upstream=s.mock.url, collector_port=proxy.port, filter_config=cfg)
    s.envoy = env
    env.start()
    return s, proxy, env


def replace_vm(env: "LdsEnvoy", cfg: dict) -> None:
    """A new filter config and VM generation through LDS; waits until the
    old filter chain (and with it the old VM) is gone."""
    env.write_listener(cfg, vm_generation="2")
    wait_until(lambda: env.all_stats().get("listener_manager.listener_modified", 0) == 1, 15,
               "Envoy to apply the new listener")


def old_chain_gone(env: "LdsEnvoy") -> None:
    wait_until(lambda: env.all_stats().get("listener_manager.total_filter_chains_draining", 1) == 0, 15,
               "the old filter chain (and its VM) to drain and go")


def test_config_update_replacing_the_vm_ships_the_old_buffer_during_the_drain(stack_factory, tmp_path):
    """A filter config update through LDS replaces the listener's filter
    chain and its wasm VM. The old VM keeps ticking while its chain drains
    (--drain-time-s), so records it buffered while the collector was away
    ship when the collector is back: nothing lost, nothing dropped."""
    cfg = filter_config(collector={"flush_interval_ms": 200, "max_backoff_ms": 400})
    s, proxy, env = lds_stack(stack_factory, tmp_path, cfg)
    since = usage_window_start()
    proxy.set(HTTP_503)
    n = 8
    send(s, n)
    wait_until(lambda: stat(env.stats(), "aispend_ship_failures") > 0, 10, "the old VM to hold its records")
    replace_vm(env, filter_config(collector={"flush_interval_ms": 250, "max_backoff_ms": 500}))
    proxy.set(PASS)  # back while the old chain drains
    old_chain_gone(env)
    send(s, 3)  # through the new VM
    assert_accounted(s, since, emitted=n + 3)
    proxy.stop()


@pytest.mark.xfail(strict=True, reason="Envoy 1.40 never answers the old VM's shutdown dispatch: see README "
                                       "'Zero loss under faults' (records buffered when a replaced VM ends)")
def test_config_update_records_still_buffered_when_the_old_vm_ends(stack_factory, tmp_path):
    """KNOWN GAP, kept as a strict xfail so a fix (or a host change) shows.
    Records still buffered when the old VM is destroyed (here: a flush
    interval longer than the drain) are handed to on_done's last batch (the
    done protocol: on_done returns false, the dispatch is accepted), but in
    Envoy 1.40 that call never reaches the collector and no answer comes
    back to the old root context (seen with debug logs), and the old VM's
    unpublished counters go with it: today this fails with emitted=3
    stored=3. Zero loss therefore needs the drain to outlast a flush."""
    cfg = filter_config(collector={"flush_interval_ms": 20000, "max_backoff_ms": 20000})
    s, proxy, env = lds_stack(stack_factory, tmp_path, cfg)
    since = usage_window_start()
    n = 8
    send(s, n)
    replace_vm(env, filter_config(collector={"flush_interval_ms": 200, "max_backoff_ms": 400}))
    old_chain_gone(env)
    send(s, 3)
    st = env.stats()
    emitted, dropped = stat(st, "aispend_records_emitted"), stat(st, "aispend_records_dropped")
    assert_accounted(s, since, emitted=n + 3, timeout=8)
    assert (emitted, dropped) == (n + 3, 0)
    proxy.stop()


PG_URL = os.environ.get("AISPEND_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_database():
    """A fresh PostgreSQL database of its own (dropped afterwards), on the
    server of AISPEND_TEST_POSTGRES_URL. The shared server is never
    restarted: a PostgreSQL outage is a FaultProxy cutting the link."""
    import shutil
    import subprocess
    import uuid
    from urllib.parse import urlparse
    u = urlparse(PG_URL)
    if not shutil.which("psql"):
        pytest.skip("psql not installed")
    name = f"aispend_faults_{uuid.uuid4().hex[:10]}"
    base = ["psql", "-h", u.hostname or "127.0.0.1", "-p", str(u.port or 5432), "-U", u.username or "postgres",
            "-d", u.path.lstrip("/") or "postgres", "-v", "ON_ERROR_STOP=1", "-qc"]
    subprocess.run([*base, f"CREATE DATABASE {name}"], check=True, capture_output=True)
    try:
        yield u, name
    finally:
        subprocess.run([*base, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"], check=False, capture_output=True)


def test_postgresql_outage_during_ingest_loses_nothing(stack_factory, tmp_path, pg_database):
    """The collector on PostgreSQL behind a FaultProxy: cutting the link
    (every connection severed, new ones refused) makes ingest fail with 5xx;
    the filter keeps the records and ships them when the database is back."""
    u, name = pg_database
    pg_proxy = FaultProxy(u.port or 5432)
    s = stack_factory()
    s.collector.stop()
    s.collector.proc.forget()
    c = Collector(tmp_path, port=s.collector.port)
    c.proc.env["AISPEND_DATABASE_URL"] = f"postgres://{u.username or 'postgres'}@127.0.0.1:{pg_proxy.port}/{name}"
    s.collector = c
    c.start()
    since = usage_window_start()
    send(s, 5)
    assert_accounted(s, since, emitted=5)
    pg_proxy.set(CUT)
    send(s, 15)
    wait_until(lambda: stat(s.envoy.stats(), "aispend_ship_failures") > 0, 15,
               "ingest to fail while PostgreSQL is unreachable")
    pg_proxy.set(PASS)
    assert_accounted(s, since, emitted=20, timeout=40)
    pg_proxy.stop()
