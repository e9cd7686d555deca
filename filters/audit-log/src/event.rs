//! The audit event's schema: one JSON object per request, with Elastic
//! Common Schema field names (which OpenTelemetry's semantic conventions
//! map to). [`crate::build`] fills it, [`crate::seal`] chains it.
//!
//! Every field is documented in README.md; bump [`SCHEMA_VERSION`] when a
//! field changes meaning or disappears (adding one does not).

use filter_common::identity::{JwtDecision, RateLimitDecision};
use serde::Serialize;
use std::collections::BTreeMap;

/// `audit.schema_version`.
pub const SCHEMA_VERSION: &str = "1";

// Fields are declared in byte order of their JSON names, at every level:
// serialized as is, an event is already in the canonical form the hash
// chain needs (see `canonical`), so it is serialized once. A unit test
// guards the order.

#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// When the request headers reached the filter (RFC 3339, UTC,
    /// milliseconds).
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub audit: AuditInfo,
    pub decision: Decision,
    pub envoy: EnvoyInfo,
    pub event: EventInfo,
    pub http: Http,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    pub url: Url,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<UserAgent>,
}

/// `event.outcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOutcome {
    /// Answered below 400, and no filter refused it.
    Success,
    /// Refused by jwt-auth or rate-limit, or answered from 400.
    Failure,
    /// No response code (the stream ended without one).
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventInfo {
    pub action: &'static str,
    pub category: [&'static str; 1],
    /// Nanoseconds from the request headers reaching the filter to the
    /// end of the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    pub kind: &'static str,
    pub outcome: EventOutcome,
    /// Why it failed: the jwt-auth reason, `rate_limited` (or rate-limit's
    /// `store_unavailable` / `ambiguous_key`), or Envoy's
    /// response code details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The chain fields are set by [`crate::seal::seal`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    pub prev_hash: String,
    pub producer: String,
    pub schema_version: &'static str,
    pub seq: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Http {
    pub request: HttpRequest,
    pub response: HttpResponse,
    /// `1.1`, `2`, `3`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpRequest {
    /// Request bytes, headers included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// `x-request-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub method: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Url {
    /// `:authority` without the port.
    pub domain: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Allowlisted parameters only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Source {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tls {
    pub client: TlsClient,
}

/// The mTLS peer, from its certificate.
#[derive(Debug, Clone, Serialize)]
pub struct TlsClient {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub x509: X509,
}

#[derive(Debug, Clone, Serialize)]
pub struct X509 {
    /// URI SANs (a SPIFFE id in a mesh).
    pub alternative_names: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserAgent {
    pub original: String,
}

/// The principal jwt-auth verified.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Claims from `principal_claims` (objects with sorted keys).
    #[serde(
        skip_serializing_if = "serde_json::Map::is_empty",
        serialize_with = "crate::canonical::sorted_map"
    )]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The token's `sub`.
    pub id: String,
    /// The token's `iss`.
    pub issuer: String,
    /// The jwt-auth provider that verified it.
    pub provider: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Decision {
    /// jwt-auth's decision (`outcome`, `reason`, `status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtDecision>,
    /// rate-limit's decision (`outcome`, `rule`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitDecision>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EnvoyInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// `%RESPONSE_CODE_DETAILS%`, e.g. `via_upstream`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_code_details: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The upstream host's `ip:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_host: Option<String>,
}
