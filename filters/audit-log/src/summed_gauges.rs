//! Gauges that add up across workers. Each worker VM has its own queues,
//! but Envoy shows one `audit_log.queue_bytes`: setting it would show the
//! last writer's value only, so each worker adds the change of its own
//! value instead, and the gauge is the total of every worker's.

use filter_common::host::{StatId, StatKind};
use filter_common::{HostError, Metrics};
use std::collections::BTreeMap;

/// [`Metrics`] whose `record` adds the change since this worker's last
/// value; everything else goes to `inner` as is.
#[derive(Debug, Default)]
pub struct SummedGauges<M> {
    inner: M,
    /// This worker's last value of each gauge.
    recorded: BTreeMap<u32, u64>,
}

impl<M> SummedGauges<M> {
    pub fn new(inner: M) -> Self {
        SummedGauges {
            inner,
            recorded: BTreeMap::new(),
        }
    }

    pub fn into_inner(self) -> M {
        self.inner
    }
}

impl<M: Metrics> Metrics for SummedGauges<M> {
    fn define(&mut self, kind: StatKind, name: &str) -> Result<StatId, HostError> {
        self.inner.define(kind, name)
    }
    fn add(&mut self, id: StatId, delta: i64) {
        self.inner.add(id, delta);
    }
    fn record(&mut self, id: StatId, value: u64) {
        let last = self.recorded.entry(id.0).or_default();
        let delta =
            i64::try_from(value).unwrap_or(i64::MAX) - i64::try_from(*last).unwrap_or(i64::MAX);
        if delta != 0 {
            self.inner.add(id, delta);
            *last = value;
        }
    }
    // Deprecated by-name methods, kept until the trait drops them; nothing
    // in audit-log calls them.
    fn increment(&mut self, name: &str, delta: i64) {
        self.inner.increment(name, delta);
    }
    fn gauge(&mut self, name: &str, value: u64) {
        self.inner.gauge(name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_common::testing::FakeMetrics;
    use filter_common::Gauge;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn workers_add_their_changes_to_one_gauge() {
        let mut one = SummedGauges::new(FakeMetrics::default());
        let g = Gauge::define(&mut one, "q").unwrap();
        g.set(&mut one, 5);
        g.set(&mut one, 3);
        // A second worker, same Envoy gauge.
        let mut two = SummedGauges::new(one.into_inner());
        g.set(&mut two, 4);
        assert_eq!(two.inner.values["q"], 7);
        g.set(&mut two, 0);
        assert_eq!(two.into_inner().values["q"], 3);
    }
}
