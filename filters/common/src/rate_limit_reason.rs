//! Why rate-limit refused a request: one closed set, crossing from the
//! filter that decides to audit-log (and the chain) as a value, never as a
//! string. Serialized in snake_case: the same label is the response body's
//! `error`, the stat name's suffix and the audit event's `reason`. The
//! status and body of each reason stay with rate-limit.

use crate::outcome::RateLimitOutcome;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitReason {
    /// An enforced rule's bucket is empty.
    OverLimit,
    /// The shared state could not be updated and the rule's
    /// `failure_mode` is `deny`.
    StoreUnavailable,
    /// A header the rule keys on appears more than once with different
    /// values (RFC 9110 §5.3: a sender must not repeat a field that is not
    /// a list), so the client it names is ambiguous: the filter would key
    /// on one line while the upstream may read another.
    AmbiguousKey,
    /// Rate limiting could not run (the chain's own plumbing failed): the
    /// request was answered 500 rather than let through unlimited.
    InternalError,
}

impl RateLimitReason {
    /// The label in the response body (`error`), in logs, in the stat name
    /// (`rate_limit.<rule>.<label>`) and in audit events.
    pub fn label(self) -> &'static str {
        match self {
            RateLimitReason::OverLimit => "over_limit",
            RateLimitReason::StoreUnavailable => "store_unavailable",
            RateLimitReason::AmbiguousKey => "ambiguous_key",
            RateLimitReason::InternalError => "internal_error",
        }
    }

    /// The `outcome` of the refusal handed to audit-log.
    pub fn outcome(self) -> RateLimitOutcome {
        match self {
            RateLimitReason::OverLimit => RateLimitOutcome::Limited,
            RateLimitReason::StoreUnavailable | RateLimitReason::InternalError => {
                RateLimitOutcome::Error
            }
            RateLimitReason::AmbiguousKey => RateLimitOutcome::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn labels_are_the_serialized_names() {
        for r in [
            RateLimitReason::OverLimit,
            RateLimitReason::StoreUnavailable,
            RateLimitReason::AmbiguousKey,
            RateLimitReason::InternalError,
        ] {
            let json = format!("\"{}\"", r.label());
            assert_eq!(serde_json::to_string(&r).unwrap(), json);
            assert_eq!(serde_json::from_str::<RateLimitReason>(&json).unwrap(), r);
            assert!(r.outcome().refused());
        }
    }
}
