//! audit-log's stats, declared once and defined when the filter is
//! configured (README.md, "Sinks, delivery and metrics").

use crate::queue::Delivery;
use filter_common::Metrics;

filter_common::stats! {
    /// Every `audit_log.*` stat.
    pub struct AuditStats {
        /// Events built and sealed.
        emitted: Counter = "audit_log.emitted",
        /// Events a sink acknowledged.
        sent: Counter = "audit_log.sent",
        /// Events dropped because a queue was full.
        dropped: Counter = "audit_log.dropped",
        /// Failed deliveries (each retried).
        retried: Counter = "audit_log.retried",
        /// Allowed requests not logged.
        sampled_out: Counter = "audit_log.sampled_out",
        /// Bytes queued across sinks (and, in Envoy, workers: see
        /// [`crate::summed_gauges`]).
        queue_bytes: Gauge = "audit_log.queue_bytes",
    }
}

impl AuditStats {
    /// Counts what a delivery step reported.
    pub fn delivery(&self, metrics: &mut dyn Metrics, d: Delivery) {
        if d.sent > 0 {
            self.sent.add(metrics, saturating_i64(d.sent));
        }
        if d.retried > 0 {
            self.retried.add(metrics, saturating_i64(d.retried));
        }
    }
}

/// A count as a counter delta.
pub fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_common::testing::FakeMetrics;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_stat_shows_at_zero_once_defined() {
        let mut m = FakeMetrics::default();
        AuditStats::define(&mut m).unwrap();
        for name in [
            "audit_log.emitted",
            "audit_log.sent",
            "audit_log.dropped",
            "audit_log.retried",
            "audit_log.sampled_out",
            "audit_log.queue_bytes",
        ] {
            assert_eq!(m.values[name], 0, "{name}");
        }
        assert_eq!(AuditStats::NAMES.len(), 6);
    }
}
