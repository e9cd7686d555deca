//! What one request carries from filter to filter.
//!
//! Inside the `chain` module the three cores share one [`RequestContext`] in
//! memory. As separate filters, each glue fills it from and writes it to
//! Envoy filter state (see [`crate::identity`]).

use crate::identity::{Identity, JwtDecision, RateLimitDecision};
use crate::request::RequestInfo;

#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub request: RequestInfo,
    /// Set by jwt-auth once a token is verified.
    pub identity: Option<Identity>,
    pub jwt: Option<JwtDecision>,
    pub rate_limit: Option<RateLimitDecision>,
}

/// What a filter core tells its glue to do with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on to the next filter.
    Continue,
    /// Hold the request until the filter resumes it (keys not yet fetched).
    Pause,
    /// A local response was sent, or the proxy refused to send it: stop
    /// here and keep the request paused either way (without a response
    /// Envoy ends it by its stream timeout or the client's reset; it never
    /// reaches the upstream).
    Responded,
}
