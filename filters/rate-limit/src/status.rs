//! How each refusal is answered: its status, message, `Retry-After` and
//! Envoy response code details. The reasons themselves are
//! [`filter_common::RateLimitReason`] (re-exported here as [`Reason`]), so
//! that audit-log and the chain carry the same value this filter decides.

pub use filter_common::RateLimitReason as Reason;

/// The reply to a refusal, by reason.
pub trait Reply {
    /// `over_limit_status` is the configured `status` (429 by default).
    fn status(self, over_limit_status: u16) -> u16;
    fn message(self) -> &'static str;
    /// Whether retrying the same request later can succeed: then the reply
    /// carries `Retry-After` (and `retry_after` in the body). A malformed
    /// request fails the same way whenever it is sent.
    fn retryable(self) -> bool;
    /// Envoy's response code details, naming the rule:
    /// `rate_limited{<rule>}` for a limit,
    /// `rate_limit_denied{ambiguous_key.<rule>}` for a malformed request,
    /// `rate_limit_internal_error{store_unavailable.<rule>}` when shared
    /// data failed.
    fn details(self, rule: &str) -> String;
}

impl Reply for Reason {
    fn status(self, over_limit_status: u16) -> u16 {
        match self {
            Reason::OverLimit => over_limit_status,
            Reason::StoreUnavailable => 503,
            Reason::AmbiguousKey => 400,
            Reason::InternalError => 500,
        }
    }

    fn message(self) -> &'static str {
        match self {
            Reason::OverLimit => "rate limit exceeded",
            Reason::StoreUnavailable => "rate limit state unavailable",
            Reason::AmbiguousKey => {
                "a header the rate limit keys on is repeated with different values"
            }
            Reason::InternalError => "rate limiting failed internally",
        }
    }

    fn retryable(self) -> bool {
        match self {
            Reason::OverLimit | Reason::StoreUnavailable => true,
            Reason::AmbiguousKey | Reason::InternalError => false,
        }
    }

    fn details(self, rule: &str) -> String {
        let (what, detail) = match self {
            Reason::OverLimit => ("rate_limited", rule.to_string()),
            Reason::AmbiguousKey => ("rate_limit_denied", format!("ambiguous_key.{rule}")),
            Reason::StoreUnavailable | Reason::InternalError => (
                "rate_limit_internal_error",
                format!("{}.{rule}", self.label()),
            ),
        };
        filter_common::code_details(what, &detail)
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
