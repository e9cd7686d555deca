//! The outcomes filters hand to one another and write into audit events:
//! closed sets, serialized in snake_case. Each filter's reason enum (why a
//! request was refused) lives with the filter that decides it.

use serde::{Deserialize, Serialize};

/// What `jwt-auth` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JwtOutcome {
    /// A token was verified and authorized.
    Allowed,
    /// Refused (no, bad or insufficient token).
    Denied,
    /// No rule required a token; the request went on without an identity.
    #[default]
    Unauthenticated,
    /// Refused because the filter could not decide (keys unavailable, a
    /// host call failed).
    Error,
}

impl JwtOutcome {
    pub fn label(self) -> &'static str {
        match self {
            JwtOutcome::Allowed => "allowed",
            JwtOutcome::Denied => "denied",
            JwtOutcome::Unauthenticated => "unauthenticated",
            JwtOutcome::Error => "error",
        }
    }

    /// The request was refused (denied, or jwt-auth could not decide).
    pub fn refused(self) -> bool {
        matches!(self, JwtOutcome::Denied | JwtOutcome::Error)
    }
}

/// What `rate-limit` decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitOutcome {
    #[default]
    Allowed,
    /// Over a limit in shadow mode: counted, not refused.
    ShadowLimited,
    /// Refused: over a limit.
    Limited,
    /// Refused: the shared state was unavailable (`failure_mode: deny`).
    Error,
    /// Refused: the key was ambiguous.
    Invalid,
}

impl RateLimitOutcome {
    pub fn label(self) -> &'static str {
        match self {
            RateLimitOutcome::Allowed => "allowed",
            RateLimitOutcome::ShadowLimited => "shadow_limited",
            RateLimitOutcome::Limited => "limited",
            RateLimitOutcome::Error => "error",
            RateLimitOutcome::Invalid => "invalid",
        }
    }

    /// The request was refused (not merely counted in shadow mode).
    pub fn refused(self) -> bool {
        !matches!(
            self,
            RateLimitOutcome::Allowed | RateLimitOutcome::ShadowLimited
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn labels_are_the_serialized_names() {
        for o in [
            JwtOutcome::Allowed,
            JwtOutcome::Denied,
            JwtOutcome::Unauthenticated,
            JwtOutcome::Error,
        ] {
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.label())
            );
        }
        for o in [
            RateLimitOutcome::Allowed,
            RateLimitOutcome::ShadowLimited,
            RateLimitOutcome::Limited,
            RateLimitOutcome::Error,
            RateLimitOutcome::Invalid,
        ] {
            assert_eq!(
                serde_json::to_string(&o).unwrap(),
                format!("\"{}\"", o.label())
            );
        }
    }
}
