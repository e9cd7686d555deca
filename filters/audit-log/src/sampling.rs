//! Which requests produce an event: denials and errors always; allowed
//! requests by path and at a rate.

use crate::config::Sampling;
use filter_common::identity::{JwtDecision, RateLimitDecision};
use filter_common::{HttpHost, RequestInfo};

/// Path-level choice, made when the request headers arrive (include and
/// exclude lists may look at headers, which are gone by the end).
pub fn path_selected(s: &Sampling, req: &RequestInfo, host: &dyn HttpHost) -> bool {
    let included = s.include.is_empty() || s.include.iter().any(|m| m.matches(req, host));
    included && !s.exclude.iter().any(|m| m.matches(req, host))
}

/// Denials (401, 403, 429, a jwt-auth or rate-limit verdict against the
/// request) and errors (any status from 400, or no response at all) are
/// always logged, whatever the sampling says.
pub fn always_logged(
    status: Option<u64>,
    jwt: Option<&JwtDecision>,
    rate_limit: Option<&RateLimitDecision>,
) -> bool {
    let status_says = status.is_none_or(|s| s == 0 || s >= 400);
    let jwt_says = jwt.is_some_and(|j| j.outcome.refused());
    let rl_says = rate_limit.is_some_and(RateLimitDecision::refused);
    status_says || jwt_says || rl_says
}

/// Rate-level choice for an allowed request: a hash of the request id
/// against the rate, so the same request gets the same answer everywhere
/// (and no random number generator is needed).
pub fn rate_selected(rate: f64, request_id: &str) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    let bucket = fnv1a64(request_id.as_bytes()) % 1_000_000;
    // rate is in (0, 1): the product fits in u64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let threshold = (rate * 1_000_000.0) as u64;
    bucket < threshold
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_decision;
    use filter_common::testing::FakeHost;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn sampling(json: &str) -> Sampling {
        let c = crate::Config::parse(format!(r#"{{"sampling": {json}}}"#).as_bytes()).unwrap();
        c.sampling
    }

    #[test]
    fn include_and_exclude_paths() {
        let s = sampling(
            r#"{"include": [{"prefix": "/api"}], "exclude": [{"prefix": "/api/health"}]}"#,
        );
        let check = |path: &str| {
            let h = FakeHost::request("GET", path, "a", &[]);
            path_selected(&s, &RequestInfo::from_host(&h), &h)
        };
        assert!(check("/api/users"));
        assert!(!check("/api/health"));
        assert!(!check("/other"));
        let all = sampling("{}");
        let h = FakeHost::request("GET", "/x", "a", &[]);
        assert!(path_selected(&all, &RequestInfo::from_host(&h), &h));
    }

    #[test]
    fn denials_and_errors_are_always_logged() {
        let denied: JwtDecision =
            test_decision(json!({"outcome": "denied", "reason": "token_expired", "status": 401}));
        let limited: RateLimitDecision = test_decision(
            json!({"outcome": "limited", "rule": "per_user", "reason": "over_limit"}),
        );
        let invalid: RateLimitDecision = test_decision(
            json!({"outcome": "invalid", "rule": "per_key", "reason": "ambiguous_key"}),
        );
        let shadow: RateLimitDecision = test_decision(json!({"outcome": "shadow_limited"}));
        assert!(always_logged(Some(401), None, None));
        assert!(always_logged(Some(503), None, None));
        assert!(always_logged(None, None, None));
        assert!(always_logged(Some(200), Some(&denied), None));
        assert!(always_logged(Some(200), None, Some(&limited)));
        assert!(always_logged(Some(200), None, Some(&invalid)));
        assert!(!always_logged(Some(200), None, Some(&shadow)));
        assert!(!always_logged(Some(204), None, None));
    }

    #[test]
    fn rate_is_deterministic_and_roughly_right() {
        assert!(rate_selected(1.0, "x"));
        assert!(!rate_selected(0.0, "x"));
        let picked = (0..10_000)
            .filter(|i| rate_selected(0.25, &format!("req-{i}")))
            .count();
        assert!((2_000..3_000).contains(&picked), "{picked}");
        assert_eq!(rate_selected(0.5, "abc"), rate_selected(0.5, "abc"));
    }
}
