//! The JSON configurations our filters are benchmarked with: the same
//! issuer, keys and audience as native `jwt_authn`, a rate limit keyed on
//! `x-bench-key` far too high to trigger, audit events posted to the local
//! collector. Keep these in step with `filters/*/src/config.rs`: a config a
//! filter refuses is reported as "not measured", not as a failure.

use super::keys::{AUDIENCE, ISSUER};
use super::workloads::KEY_HEADER;
use serde_json::{json, Value};

pub fn jwt_auth(jwks: &str) -> Value {
    json!({
        "providers": [{
            "name": "bench",
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "jwks": { "inline": jwks },
        }],
    })
}

pub fn rate_limit() -> Value {
    json!({
        "rules": [{
            "key": { "header": KEY_HEADER },
            "limit": { "requests": 1_000_000_000u64, "unit": "second" },
        }],
    })
}

pub fn audit_log() -> Value {
    json!({
        "sink": { "http": { "cluster": "collector", "path": "/events" } },
    })
}

/// The single `chain` module: one section per filter.
pub fn chain(jwks: &str) -> Value {
    json!({
        "audit_log": audit_log(),
        "jwt_auth": jwt_auth(jwks),
        "rate_limit": rate_limit(),
    })
}
