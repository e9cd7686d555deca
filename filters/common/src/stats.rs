//! Typed stats, declared once per filter and defined at configure time, as
//! Envoy's `stats.h` does: the request path holds ids, never formats a name.
//!
//! A filter declares its stats with [`stats!`](crate::stats) and
//! per-label families (one counter per reason) with [`CounterSet`]; both are
//! resolved through [`Metrics::define`] when the filter is configured.

use crate::host::{HostError, Metrics};
use std::marker::PhantomData;

/// A stat the host defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatId(pub u32);

/// Envoy's stat kinds that filters use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatKind {
    Counter,
    Gauge,
}

/// A counter (`wasmcustom.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counter(StatId);

impl Counter {
    pub fn define(metrics: &mut dyn Metrics, name: &str) -> Result<Self, HostError> {
        metrics.define(StatKind::Counter, name).map(Counter)
    }
    pub fn inc(self, metrics: &mut dyn Metrics) {
        metrics.add(self.0, 1);
    }
    pub fn add(self, metrics: &mut dyn Metrics, delta: i64) {
        metrics.add(self.0, delta);
    }
}

/// A gauge (`wasmcustom.<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Gauge(StatId);

impl Gauge {
    pub fn define(metrics: &mut dyn Metrics, name: &str) -> Result<Self, HostError> {
        metrics.define(StatKind::Gauge, name).map(Gauge)
    }
    pub fn set(self, metrics: &mut dyn Metrics, value: u64) {
        metrics.record(self.0, value);
    }
}

/// A closed set of labels (reasons, outcomes) that each get a counter.
pub trait Label: Copy + 'static {
    /// Every label, in a fixed order.
    const ALL: &'static [Self];
    /// The label as it appears in stat names, responses and events.
    fn label(self) -> &'static str;
}

/// One counter per label: `<prefix>.<label>`.
#[derive(Debug, Clone)]
pub struct CounterSet<L> {
    counters: Vec<Counter>,
    labels: PhantomData<L>,
}

impl<L> Default for CounterSet<L> {
    fn default() -> Self {
        CounterSet {
            counters: Vec::new(),
            labels: PhantomData,
        }
    }
}

impl<L: Label + PartialEq> CounterSet<L> {
    pub fn define(metrics: &mut dyn Metrics, prefix: &str) -> Result<Self, HostError> {
        let counters = L::ALL
            .iter()
            .map(|l| Counter::define(metrics, &format!("{prefix}.{}", l.label())))
            .collect::<Result<_, _>>()?;
        Ok(CounterSet {
            counters,
            labels: PhantomData,
        })
    }

    pub fn inc(&self, metrics: &mut dyn Metrics, label: L) {
        let at = L::ALL.iter().position(|l| *l == label);
        if let Some(c) = at.and_then(|i| self.counters.get(i)) {
            c.inc(metrics);
        }
    }
}

/// Declares a filter's stats as a struct of [`Counter`]s and [`Gauge`]s
/// with one `define` that resolves them all (and `NAMES`, for docs and
/// tests):
///
/// ```ignore
/// filter_common::stats! {
///     /// jwt-auth's stats.
///     pub struct JwtStats {
///         allowed: Counter = "jwt_auth.allowed",
///         keys: Gauge = "jwt_auth.keys",
///     }
/// }
/// ```
#[macro_export]
macro_rules! stats {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $kind:ident = $stat:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default)]
        $vis struct $name {
            $( $(#[$fmeta])* pub $field: $crate::stats::$kind, )*
        }

        impl $name {
            /// Every stat name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($stat),*];

            /// Defines every stat with the host (at configure time).
            pub fn define(metrics: &mut dyn $crate::Metrics) -> Result<Self, $crate::HostError> {
                Ok(Self { $( $field: $crate::stats::$kind::define(metrics, $stat)?, )* })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeMetrics;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    crate::stats! {
        struct Demo {
            hits: Counter = "demo.hits",
            size: Gauge = "demo.size",
        }
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Why {
        A,
        B,
    }
    impl Label for Why {
        const ALL: &'static [Self] = &[Why::A, Why::B];
        fn label(self) -> &'static str {
            match self {
                Why::A => "a",
                Why::B => "b",
            }
        }
    }

    #[test]
    fn stats_are_defined_once_and_counted_by_id() {
        let mut m = FakeMetrics::default();
        let s = Demo::define(&mut m).unwrap();
        assert_eq!(m.values["demo.hits"], 0, "defined at configure time");
        s.hits.inc(&mut m);
        s.hits.add(&mut m, 2);
        s.size.set(&mut m, 7);
        assert_eq!(m.values["demo.hits"], 3);
        assert_eq!(m.values["demo.size"], 7);
        assert_eq!(Demo::NAMES, ["demo.hits", "demo.size"]);
    }

    #[test]
    fn a_counter_set_has_one_counter_per_label() {
        let mut m = FakeMetrics::default();
        let set = CounterSet::<Why>::define(&mut m, "demo.denied").unwrap();
        set.inc(&mut m, Why::B);
        assert_eq!(m.values["demo.denied.a"], 0);
        assert_eq!(m.values["demo.denied.b"], 1);
    }

    #[test]
    fn a_refused_definition_is_an_error() {
        let mut m = FakeMetrics {
            refuse: true,
            ..FakeMetrics::default()
        };
        assert!(Demo::define(&mut m).is_err());
    }
}
