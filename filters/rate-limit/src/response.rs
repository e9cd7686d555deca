//! The headers and body a client sees: `429` with `Retry-After`, the IETF
//! `RateLimit-Policy` / `RateLimit` fields (draft-ietf-httpapi-ratelimit-headers-09)
//! and optionally the legacy `X-RateLimit-*` trio.
//!
//! A policy is described by its steady rate: `q` requests per `w` seconds.
//! `r` is how many requests would pass right now; `t` is the number of
//! seconds until the bucket is full again (the whole burst is back).

use crate::gcra::{ceil_seconds, Limit, Verdict};
use crate::status::{Reason, Reply};

/// One rule's state after a request, as the headers report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleState {
    pub name: String,
    pub limit: Limit,
    pub remaining: u64,
    /// Seconds until the bucket is full again.
    pub reset: u64,
}

impl RuleState {
    pub fn new(name: &str, limit: Limit, v: &Verdict) -> Self {
        RuleState {
            name: name.to_string(),
            limit,
            remaining: v.remaining,
            reset: ceil_seconds(v.full_ns),
        }
    }
}

/// Rule names are letters, digits, `-` and `_`: valid inside a
/// structured-field string without escaping.
fn policy_item(s: &RuleState) -> String {
    format!(
        "\"{}\";q={};w={}",
        s.name,
        s.limit.rate(),
        s.limit.unit_seconds()
    )
}

fn state_item(s: &RuleState) -> String {
    format!("\"{}\";r={};t={}", s.name, s.remaining, s.reset)
}

/// `RateLimit-Policy` and `RateLimit` for the given rules, and the legacy
/// headers for the tightest one when asked.
pub fn rate_limit_headers(states: &[RuleState], x_ratelimit: bool) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if states.is_empty() {
        return out;
    }
    let join = |f: fn(&RuleState) -> String| states.iter().map(f).collect::<Vec<_>>().join(", ");
    out.push(("ratelimit-policy".to_string(), join(policy_item)));
    out.push(("ratelimit".to_string(), join(state_item)));
    if x_ratelimit {
        if let Some(tight) = states.iter().min_by_key(|s| s.remaining) {
            out.push((
                "x-ratelimit-limit".to_string(),
                tight.limit.rate().to_string(),
            ));
            out.push((
                "x-ratelimit-remaining".to_string(),
                tight.remaining.to_string(),
            ));
            out.push(("x-ratelimit-reset".to_string(), tight.reset.to_string()));
        }
    }
    out
}

/// A local reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The reply to a rejected request. `state` is the rule's state when the
/// reason is [`Reason::OverLimit`]; `retry_after_ns` when the next request
/// would pass. A reason that retrying cannot cure ([`Reason::retryable`])
/// gets no `Retry-After`.
pub fn rejection(
    reason: Reason,
    rule: &str,
    over_limit_status: u16,
    state: Option<(&RuleState, u64)>,
    x_ratelimit: bool,
) -> Rejection {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    let mut body = serde_json::json!({
        "error": reason.label(),
        "rule": rule,
        "message": reason.message(),
    });
    if reason.retryable() {
        // Retry-After is whole seconds and never 0: a client retrying at
        // once would only be refused again.
        let retry_after = state.map_or(1, |(_, ns)| ceil_seconds(ns).max(1));
        headers.push(("retry-after".to_string(), retry_after.to_string()));
        if let Some(fields) = body.as_object_mut() {
            fields.insert("retry_after".to_string(), retry_after.into());
        }
    }
    if let Some((s, _)) = state {
        headers.extend(rate_limit_headers(std::slice::from_ref(s), x_ratelimit));
    }
    Rejection {
        status: reason.status(over_limit_status),
        headers,
        body: body.to_string().into_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcra::NANOS_PER_SECOND as S;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn state(name: &str, remaining: u64) -> RuleState {
        RuleState {
            name: name.into(),
            limit: Limit::new(10, 60, 5),
            remaining,
            reset: 3,
        }
    }

    fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
        h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn over_limit_reply() {
        let s = state("per-client", 0);
        let r = rejection(
            Reason::OverLimit,
            "per-client",
            429,
            Some((&s, 2 * S + 1)),
            true,
        );
        assert_eq!(r.status, 429);
        assert_eq!(header(&r.headers, "retry-after"), Some("3"));
        assert_eq!(
            header(&r.headers, "ratelimit-policy"),
            Some("\"per-client\";q=10;w=60")
        );
        assert_eq!(
            header(&r.headers, "ratelimit"),
            Some("\"per-client\";r=0;t=3")
        );
        assert_eq!(header(&r.headers, "x-ratelimit-limit"), Some("10"));
        assert_eq!(header(&r.headers, "x-ratelimit-remaining"), Some("0"));
        assert_eq!(header(&r.headers, "x-ratelimit-reset"), Some("3"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "over_limit");
        assert_eq!(body["rule"], "per-client");
        assert_eq!(body["retry_after"], 3);
    }

    #[test]
    fn store_unavailable_reply() {
        let r = rejection(Reason::StoreUnavailable, "a", 429, None, true);
        assert_eq!(r.status, 503);
        assert_eq!(header(&r.headers, "retry-after"), Some("1"));
        assert_eq!(header(&r.headers, "ratelimit"), None);
    }

    #[test]
    fn ambiguous_key_reply() {
        let r = rejection(Reason::AmbiguousKey, "per-key", 429, None, true);
        assert_eq!(r.status, 400);
        assert_eq!(header(&r.headers, "content-type"), Some("application/json"));
        // Retrying the same request cannot help: no Retry-After, no
        // rate-limit fields (no bucket was looked at).
        assert_eq!(r.headers.len(), 1);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"], "ambiguous_key");
        assert_eq!(body["rule"], "per-key");
        assert!(body.get("retry_after").is_none());
        assert!(body["message"].as_str().unwrap().contains("repeated"));
    }

    #[test]
    fn several_rules_on_an_allowed_response() {
        let h = rate_limit_headers(&[state("a", 4), state("b", 1)], true);
        assert_eq!(
            header(&h, "ratelimit-policy"),
            Some("\"a\";q=10;w=60, \"b\";q=10;w=60")
        );
        assert_eq!(
            header(&h, "ratelimit"),
            Some("\"a\";r=4;t=3, \"b\";r=1;t=3")
        );
        assert_eq!(header(&h, "x-ratelimit-remaining"), Some("1"));
        assert!(rate_limit_headers(&[], true).is_empty());
        assert_eq!(rate_limit_headers(&[state("a", 1)], false).len(), 2);
    }
}
