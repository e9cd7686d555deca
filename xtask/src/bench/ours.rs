//! The JSON configurations our filters are benchmarked with: the same
//! issuer, keys and audience as native `jwt_authn`, a rate limit keyed on
//! `x-bench-key` far too high to trigger, audit events posted to the local
//! collector. Keep these in step with `filters/*/src/config.rs`: a config a
//! filter refuses is reported as "not measured", not as a failure.

use super::keys::{AUDIENCE, ISSUER};
use super::workloads::KEY_HEADER;
use serde_json::{json, Value};

/// jwt-auth mirrors native `jwt_authn`'s shape: the same provider, keys
/// given inline, every path requiring it; the token cache at its default.
pub fn jwt_auth(jwks: &str) -> Value {
    json!({
        "providers": {
            "bench": {
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "local_jwks": { "inline_string": jwks },
            },
        },
        "rules": [{ "match": { "prefix": "/" }, "requires": { "provider_name": "bench" } }],
    })
}

/// One bucket per `x-bench-key` value (slots at their default), a rate no
/// run comes near.
pub fn rate_limit() -> Value {
    json!({
        "rules": [{
            "name": "bench",
            "key": [{ "header": { "name": KEY_HEADER } }],
            "limit": { "requests_per_unit": 1_000_000_000u32, "unit": "second" },
        }],
    })
}

/// Every event (sampling at its default) batched to the local collector,
/// and no other sink.
pub fn audit_log() -> Value {
    json!({
        "sinks": { "http": [{ "cluster": "collector", "path": "/events" }] },
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
