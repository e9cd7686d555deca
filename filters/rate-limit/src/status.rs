//! Every reason this filter rejects a request. One enum for the status,
//! the response body, the metric and the audit event alike.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// An enforced rule's bucket is empty.
    OverLimit,
    /// The shared state could not be updated and the rule's
    /// `failure_mode` is `deny`.
    StoreUnavailable,
}

impl Reason {
    /// The label in the response body (`error`) and in logs.
    pub fn label(self) -> &'static str {
        match self {
            Reason::OverLimit => "over_limit",
            Reason::StoreUnavailable => "store_unavailable",
        }
    }

    /// `over_limit_status` is the configured `status` (429 by default).
    pub fn status(self, over_limit_status: u16) -> u16 {
        match self {
            Reason::OverLimit => over_limit_status,
            Reason::StoreUnavailable => 503,
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Reason::OverLimit => "rate limit exceeded",
            Reason::StoreUnavailable => "rate limit state unavailable",
        }
    }

    /// The `outcome` of the [`filter_common::identity::RateLimitDecision`]
    /// handed to audit-log.
    pub fn outcome(self) -> &'static str {
        match self {
            Reason::OverLimit => "limited",
            Reason::StoreUnavailable => "error",
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
        assert_eq!(Reason::StoreUnavailable.outcome(), "error");
    }
}
