//! Collector counters, rendered in the Prometheus text format by hand
//! (a handful of atomics needs no metrics framework).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the ingest latency histogram buckets.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
pub struct Metrics {
    pub records_accepted: AtomicU64,
    pub records_duplicate: AtomicU64,
    pub records_rejected: AtomicU64,
    pub records_unpriced: AtomicU64,
    pub store_errors: AtomicU64,
    /// Requests refused 401 (no, unknown, revoked or expired token).
    pub auth_invalid_token: AtomicU64,
    /// Requests refused 403 (role, scope or self-approval).
    pub auth_insufficient_role: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_micros: AtomicU64,
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Records the duration of one `POST /v1/records`.
    pub fn observe_ingest(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        // Buckets are stored non-cumulatively and summed when rendered.
        if let Some(i) = LATENCY_BUCKETS.iter().position(|le| secs <= *le) {
            if let Some(bucket) = self.latency_buckets.get(i) {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::with_capacity(2048);
        let counters = [
            (
                "aispend_records_accepted_total",
                "Records stored.",
                &self.records_accepted,
            ),
            (
                "aispend_records_duplicate_total",
                "Records skipped because their id was already stored.",
                &self.records_duplicate,
            ),
            (
                "aispend_records_rejected_total",
                "Records rejected by validation.",
                &self.records_rejected,
            ),
            (
                "aispend_records_unpriced_total",
                "Stored records whose model has no price (cost_usd null).",
                &self.records_unpriced,
            ),
            (
                "aispend_store_errors_total",
                "Store operations that failed.",
                &self.store_errors,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                get(counter)
            );
        }
        let name = "aispend_auth_failures_total";
        let _ = writeln!(
            out,
            "# HELP {name} Requests refused by the access check, by reason.\n# TYPE {name} counter\n\
             {name}{{reason=\"invalid_token\"}} {}\n{name}{{reason=\"forbidden\"}} {}",
            get(&self.auth_invalid_token),
            get(&self.auth_insufficient_role)
        );
        let name = "aispend_ingest_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Duration of POST /v1/records.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (le, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            cumulative += get(bucket);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = get(&self.latency_count);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = get(&self.latency_sum_micros) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative_and_counts_everything() {
        let m = Metrics::default();
        m.observe_ingest(Duration::from_micros(300));
        m.observe_ingest(Duration::from_millis(20));
        m.observe_ingest(Duration::from_secs(10));
        Metrics::add(&m.records_accepted, 7);
        let text = m.render();
        assert!(
            text.contains("aispend_records_accepted_total 7\n"),
            "{text}"
        );
        assert!(text.contains("aispend_ingest_duration_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("aispend_ingest_duration_seconds_bucket{le=\"0.025\"} 2\n"));
        assert!(text.contains("aispend_ingest_duration_seconds_bucket{le=\"2.5\"} 2\n"));
        assert!(text.contains("aispend_ingest_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("aispend_ingest_duration_seconds_count 3\n"));
    }
}
