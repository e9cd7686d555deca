//! The one channel through which `jwt-auth` tells `rate-limit` and
//! `audit-log` what it decided.
//!
//! As separate filters, each decision is written as Envoy filter state with
//! `set_property([KEY])`: Envoy stores it as `wasm.<KEY>`, later filters read
//! it with `get_property([KEY])`, access logs with
//! `%FILTER_STATE(wasm.<KEY>:PLAIN)%`. Filter state lives inside Envoy, so a
//! client cannot forge it the way it could forge a header. Inside the
//! `chain` module the same structs are passed in memory.

use crate::outcome::{JwtOutcome, RateLimitOutcome};
use crate::rate_limit_reason::RateLimitReason;
use serde::{Deserialize, Serialize};

/// Filter state key of the verified [`Identity`] (JSON).
pub const IDENTITY_KEY: &str = "portcullis.identity";
/// Filter state key of the [`JwtDecision`] (JSON).
pub const JWT_DECISION_KEY: &str = "portcullis.jwt";
/// Filter state key of the [`RateLimitDecision`] (JSON).
pub const RATE_LIMIT_DECISION_KEY: &str = "portcullis.rate_limit";

/// Who the caller is, once a token has been verified.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// Name of the provider that verified the token.
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    /// Claims selected for forwarding (never the token itself).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub claims: serde_json::Map<String, serde_json::Value>,
}

impl Identity {
    /// The rate-limit key for this identity: stable and independent of
    /// claim order.
    pub fn key(&self) -> String {
        format!("{}|{}", self.issuer, self.subject)
    }
}

/// What `jwt-auth` decided for a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtDecision {
    pub outcome: JwtOutcome,
    /// The reason label, the same one used in metrics and responses.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// HTTP status sent when denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
}

/// What `rate-limit` decided for a request. Fields in name order: audit
/// events serialize them as they are declared and hash that text as the
/// canonical (sorted-key) form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitDecision {
    pub outcome: RateLimitOutcome,
    /// A refusal's reason, as in its response body and metric
    /// (`over_limit`, `store_unavailable`, `ambiguous_key`); absent when
    /// the request was not refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RateLimitReason>,
    /// The rule that limited the request (or would have, in shadow mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl RateLimitDecision {
    /// The request was refused (not merely counted in shadow mode).
    pub fn refused(&self) -> bool {
        self.outcome.refused()
    }
}
