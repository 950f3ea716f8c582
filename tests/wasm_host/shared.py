"""State one gateway shares between its workers: shared data (one store for
all VM instances, so compare-and-swap across workers is real), metrics, and
the clock tests control."""

import itertools
import time

from .abi import MetricType, Status


class Clock:
    """Host time in nanoseconds. Starts at the real time; tests move it
    (`advance`) and a tick moves it by the tick period, so retry backoff and
    durations are deterministic."""

    def __init__(self, start_ns=None):
        self._now = time.time_ns() if start_ns is None else start_ns

    def now_ns(self):
        return self._now

    def now_ms(self):
        return self._now // 1_000_000

    def advance(self, ms):
        self._now += int(ms * 1_000_000)


class SharedData:
    """Key/value store with per-key cas. The profile decides what a cas
    matches and which zone a key lives in; zones only matter for Kong."""

    def __init__(self, profile, zones=("*",)):
        self.profile = profile
        self.zones = {zone: {} for zone in zones}
        self._cas = itertools.count(1)

    def get(self, key):
        """-> (Status, value, cas)."""
        zone = self.zones.setdefault(self.profile.shared_zone(key, self.zones), {})
        entry = zone.get(key)
        if entry is None:
            return Status.NOT_FOUND, None, None
        return Status.OK, entry[0], entry[1]

    def set(self, key, value, cas):
        zone = self.zones.setdefault(self.profile.shared_zone(key, self.zones), {})
        entry = zone.get(key)
        if not self.profile.cas_matches(entry[1] if entry else None, cas):
            return Status.CAS_MISMATCH
        zone[key] = (bytes(value), next(self._cas))
        return Status.OK

    def snapshot(self):
        """{key: value} over every zone, for assertions."""
        return {k: v for zone in self.zones.values() for k, (v, _) in zone.items()}


class Metrics:
    """Metric values by full name and worker. Envoy aggregates a metric
    across workers; Kong keeps values per worker (docs/METRICS.md) — `value`
    sums either way and `value(name, worker=i)` reads one worker."""

    def __init__(self):
        self.kinds = {}  # name -> MetricType
        self.values = {}  # (name, worker) -> int
        self.histograms = {}  # (name, worker) -> [values]

    def define(self, kind, name):
        previous = self.kinds.setdefault(name, MetricType(kind))
        return previous == MetricType(kind)

    def increment(self, name, worker, delta):
        key = (name, worker)
        self.values[key] = self.values.get(key, 0) + delta

    def record(self, name, worker, value):
        if self.kinds[name] == MetricType.HISTOGRAM:
            self.histograms.setdefault((name, worker), []).append(value)
        else:
            self.values[(name, worker)] = value

    def value(self, name, worker=None):
        return sum(
            v for (n, w), v in self.values.items() if n == name and worker in (None, w)
        )

    def names(self):
        return sorted(self.kinds)
