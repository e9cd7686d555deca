//! Every reason this filter rejects a request. One enum for the status,
//! the response body, the metric and the audit event alike.

use filter_common::RateLimitOutcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
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
}

impl Reason {
    /// The label in the response body (`error`), in logs and in the
    /// metric name (`rate_limit.<rule>.<label>`).
    pub fn label(self) -> &'static str {
        match self {
            Reason::OverLimit => "over_limit",
            Reason::StoreUnavailable => "store_unavailable",
            Reason::AmbiguousKey => "ambiguous_key",
        }
    }

    /// `over_limit_status` is the configured `status` (429 by default).
    pub fn status(self, over_limit_status: u16) -> u16 {
        match self {
            Reason::OverLimit => over_limit_status,
            Reason::StoreUnavailable => 503,
            Reason::AmbiguousKey => 400,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Reason::OverLimit => "rate limit exceeded",
            Reason::StoreUnavailable => "rate limit state unavailable",
            Reason::AmbiguousKey => {
                "a header the rate limit keys on is repeated with different values"
            }
        }
    }

    /// Whether retrying the same request later can succeed: then the reply
    /// carries `Retry-After` (and `retry_after` in the body). A malformed
    /// request fails the same way whenever it is sent.
    pub fn retryable(self) -> bool {
        match self {
            Reason::OverLimit | Reason::StoreUnavailable => true,
            Reason::AmbiguousKey => false,
        }
    }

    /// Envoy's response code details, naming the rule:
    /// `rate_limited{<rule>}` for a limit,
    /// `rate_limit_denied{ambiguous_key.<rule>}` for a malformed request,
    /// `rate_limit_internal_error{store_unavailable.<rule>}` when shared
    /// data failed.
    pub fn details(self, rule: &str) -> String {
        let (what, detail) = match self {
            Reason::OverLimit => ("rate_limited", rule.to_string()),
            Reason::AmbiguousKey => ("rate_limit_denied", format!("ambiguous_key.{rule}")),
            Reason::StoreUnavailable => (
                "rate_limit_internal_error",
                format!("store_unavailable.{rule}"),
            ),
        };
        filter_common::code_details(what, &detail)
    }

    /// The `outcome` of the [`filter_common::identity::RateLimitDecision`]
    /// handed to audit-log.
    pub fn outcome(self) -> RateLimitOutcome {
        match self {
            Reason::OverLimit => RateLimitOutcome::Limited,
            Reason::StoreUnavailable => RateLimitOutcome::Error,
            Reason::AmbiguousKey => RateLimitOutcome::Invalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn labels_and_statuses() {
        assert_eq!(Reason::OverLimit.status(429), 429);
        assert_eq!(Reason::OverLimit.status(503), 503);
        assert_eq!(Reason::StoreUnavailable.status(429), 503);
        assert_eq!(Reason::OverLimit.label(), "over_limit");
        assert_eq!(Reason::StoreUnavailable.outcome().label(), "error");
    }

    #[test]
    fn an_ambiguous_key_is_a_bad_request_whatever_the_configured_status() {
        let r = Reason::AmbiguousKey;
        assert_eq!(r.status(429), 400);
        assert_eq!(r.status(503), 400);
        assert_eq!(r.label(), "ambiguous_key");
        assert_eq!(r.outcome().label(), "invalid");
        assert!(!r.retryable());
        assert!(Reason::OverLimit.retryable() && Reason::StoreUnavailable.retryable());
    }

    #[test]
    fn details_name_the_rule() {
        assert_eq!(Reason::OverLimit.details("per-ip"), "rate_limited{per-ip}");
        assert_eq!(
            Reason::AmbiguousKey.details("per_key"),
            "rate_limit_denied{ambiguous_key.per_key}"
        );
        assert_eq!(
            Reason::StoreUnavailable.details("Global"),
            "rate_limit_internal_error{store_unavailable.global}"
        );
    }
}
