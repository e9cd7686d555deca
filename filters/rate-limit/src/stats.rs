//! Every `rate_limit.*` stat, defined once when the filter is configured
//! (so each shows as 0 from the start) and counted by id on the request
//! path: no stat name is formatted per request.

use crate::config::CompiledRule;
use crate::decide::{RuleEvent, Tally};
use filter_common::{Counter, HostError, Metrics};

filter_common::stats! {
    /// The filter's own counters, whatever the rules.
    pub struct Counters {
        /// Compare-and-swap conflicts with other workers.
        cas_retries: Counter = "rate_limit.cas_retries",
        /// Requests whose slot held another key's debt (they share a bucket).
        slot_collisions: Counter = "rate_limit.slot_collisions",
        /// Rejections the proxy refused to send (the request then stays
        /// paused until Envoy's stream timeout or the client's reset ends it).
        send_failed: Counter = "rate_limit.send_failed",
    }
}

/// One rule's counters: `rate_limit.<rule>.<event>`.
#[derive(Debug, Clone, Copy)]
pub struct RuleStats {
    allowed: Counter,
    limited: Counter,
    shadow_limited: Counter,
    store_unavailable: Counter,
    /// Only for a rule keyed on a header: no other key can be ambiguous.
    ambiguous_key: Option<Counter>,
}

impl RuleStats {
    fn define(metrics: &mut dyn Metrics, rule: &CompiledRule) -> Result<Self, HostError> {
        let mut counter = |event: RuleEvent| {
            let name = format!(
                "{}.{}.{}",
                crate::FILTER_NAME,
                rule.rule.name,
                event.label()
            );
            Counter::define(metrics, &name)
        };
        Ok(RuleStats {
            allowed: counter(RuleEvent::Allowed)?,
            limited: counter(RuleEvent::Limited)?,
            shadow_limited: counter(RuleEvent::ShadowLimited)?,
            store_unavailable: counter(RuleEvent::StoreUnavailable)?,
            ambiguous_key: match rule.keys_on_header {
                true => Some(counter(RuleEvent::AmbiguousKey)?),
                false => None,
            },
        })
    }

    fn counter(&self, event: RuleEvent) -> Option<Counter> {
        match event {
            RuleEvent::Allowed => Some(self.allowed),
            RuleEvent::Limited => Some(self.limited),
            RuleEvent::ShadowLimited => Some(self.shadow_limited),
            RuleEvent::StoreUnavailable => Some(self.store_unavailable),
            RuleEvent::AmbiguousKey => self.ambiguous_key,
        }
    }
}

/// All of the filter's stats.
#[derive(Debug, Clone)]
pub struct Stats {
    pub counters: Counters,
    /// In config order, as the limiter's rules.
    rules: Vec<RuleStats>,
}

impl Stats {
    /// Defines every stat of the filter and its rules.
    pub fn define(metrics: &mut dyn Metrics, rules: &[CompiledRule]) -> Result<Self, HostError> {
        let rules = rules
            .iter()
            .map(|r| RuleStats::define(metrics, r))
            .collect::<Result<_, _>>()?;
        Ok(Stats {
            counters: Counters::define(metrics)?,
            rules,
        })
    }

    /// Counts what one decision saw.
    pub fn count(&self, metrics: &mut dyn Metrics, tally: &Tally) {
        for (rule, event) in &tally.rules {
            if let Some(c) = self.rules.get(*rule).and_then(|s| s.counter(*event)) {
                c.inc(metrics);
            }
        }
        if tally.cas_retries > 0 {
            self.counters
                .cas_retries
                .add(metrics, i64::from(tally.cas_retries));
        }
        if tally.slot_collisions > 0 {
            self.counters
                .slot_collisions
                .add(metrics, i64::from(tally.slot_collisions));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use filter_common::testing::FakeMetrics;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_rule_has_its_counters() {
        let rules = Config::parse(
            br#"{"slots":8,"rules":[{"name":"g","key":[],"limit":{"requests_per_unit":1,"unit":"second"}},
                                    {"name":"h","limit":{"requests_per_unit":1,"unit":"second"}},
                                    {"name":"k","key":[{"client_ip":{}},{"header":{"name":"x-k"}}],
                                     "limit":{"requests_per_unit":1,"unit":"second"}}]}"#,
        )
        .unwrap()
        .compile();
        let mut m = FakeMetrics::default();
        let stats = Stats::define(&mut m, &rules).unwrap();
        for name in Counters::NAMES {
            assert_eq!(m.values[*name], 0, "{name}");
        }
        assert_eq!(m.values["rate_limit.h.limited"], 0);
        assert_eq!(m.values["rate_limit.k.ambiguous_key"], 0);
        // Only a rule keyed on a header can see an ambiguous key.
        assert!(!m.values.contains_key("rate_limit.h.ambiguous_key"));
        assert_eq!(m.values.len(), 3 + 3 * 4 + 1);
        let tally = Tally {
            rules: vec![
                (1, RuleEvent::Limited),
                (2, RuleEvent::AmbiguousKey),
                (2, RuleEvent::AmbiguousKey),
                // No counter: nothing counted, nothing breaks.
                (1, RuleEvent::AmbiguousKey),
                (9, RuleEvent::Allowed),
            ],
            cas_retries: 3,
            slot_collisions: 0,
        };
        stats.count(&mut m, &tally);
        assert_eq!(m.values["rate_limit.h.limited"], 1);
        assert_eq!(m.values["rate_limit.k.ambiguous_key"], 2);
        assert_eq!(m.values["rate_limit.cas_retries"], 3);
        assert_eq!(m.values.len(), 3 + 3 * 4 + 1, "no stat defined by counting");
    }

    #[test]
    fn a_refused_definition_refuses_the_config() {
        let mut m = FakeMetrics {
            refuse: true,
            ..FakeMetrics::default()
        };
        assert!(Stats::define(&mut m, &[]).is_err());
    }
}
