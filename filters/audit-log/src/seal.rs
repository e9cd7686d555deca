//! Sealing: the step that links a built event into the worker's hash chain
//! and turns it into the one JSON line every sink writes.

use crate::event::AuditEvent;
use crate::hash_chain::Chain;

/// A sealed event: its place in the chain and its JSON line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub seq: u64,
    pub line: String,
}

/// Seals a typed event into `chain`: sets its chain fields, serializes it
/// once (its fields are declared in canonical order), hashes that, and
/// splices the hash in (`hash` sorts first in `audit`).
pub fn seal(chain: &mut Chain, event: &mut AuditEvent) -> Sealed {
    let (seq, prev) = chain.next_link();
    event.audit.producer = chain.producer().to_string();
    event.audit.seq = seq;
    event.audit.prev_hash = prev.to_string();
    event.audit.hash = None;
    let mut line = Vec::with_capacity(1024);
    if serde_json::to_writer(&mut line, &*event).is_err() {
        // Not reachable with these types; the generic path still seals.
        let mut value = serde_json::to_value(&*event).unwrap_or_default();
        let (seq, line) = chain.seal(&mut value);
        return Sealed { seq, line };
    }
    let hash = chain.append(&line);
    const AUDIT: &[u8] = b"\"audit\":{";
    if let Some(at) = line.windows(AUDIT.len()).position(|w| w == AUDIT) {
        let at = at + AUDIT.len();
        line.splice(at..at, format!("\"hash\":\"{hash}\",").into_bytes());
    }
    event.audit.hash = Some(hash);
    let line = String::from_utf8(line)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    Sealed { seq, line }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::build;
    use crate::canonical::canonical;
    use crate::capture::{Captured, StreamInfo};
    use crate::hash_chain::event_hash;
    use crate::test_decision;
    use crate::Config;
    use filter_common::identity::Identity;
    use filter_common::testing::FakeHost;
    use filter_common::{RequestContext, RequestInfo};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn sealed_line_is_canonical_and_verifies() {
        let c = Config::parse(
            br#"{"query_params": ["page"], "headers": [{"name": "x-tenant"}],
                 "principal_claims": ["scope", "big"], "max_field_bytes": 64}"#,
        )
        .unwrap();
        let h = FakeHost::request("GET", "/p?page=1", "h:1", &[("x-tenant", "t")]);
        let cap = Captured::read(&c, &h, &RequestInfo::from_host(&h), true);
        let info = StreamInfo {
            response_code: Some(200),
            source_address: Some("1.2.3.4:5".into()),
            peer_uri_san: Some("spiffe://x".into()),
            peer_subject: Some("CN=x".into()),
            cluster: Some("c".into()),
            response_code_details: Some("via_upstream".into()),
            route: Some("r".into()),
            upstream_address: Some("u:1".into()),
            protocol: Some("HTTP/2".into()),
            request_bytes: Some(1),
            response_bytes: Some(2),
            duration_nanos: Some(3),
            request_id: Some("id".into()),
            ..Default::default()
        };
        let mut claims = serde_json::Map::new();
        claims.insert("scope".into(), json!({"z": [{"b": 1, "a": 2}], "a": 1.5}));
        let ctx = RequestContext {
            identity: Some(Identity {
                provider: "p".into(),
                issuer: "i".into(),
                subject: "s".into(),
                claims,
            }),
            jwt: Some(test_decision(
                json!({"outcome": "allowed", "reason": "ok", "status": 200}),
            )),
            rate_limit: Some(test_decision(
                json!({"outcome": "invalid", "rule": "r", "reason": "ambiguous_key"}),
            )),
            ..Default::default()
        };
        let mut chain = Chain::new("n/1");
        for _ in 0..2 {
            let mut e = build(&c, &cap, &info, &ctx);
            let Sealed { line, .. } = seal(&mut chain, &mut e);
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            // Every field is present, so every struct's order is checked.
            assert!(v["tls"].is_object() && v["user"]["claims"].is_object());
            assert_eq!(line.as_bytes(), canonical(&v), "field order drifted");
            assert_eq!(v["audit"]["hash"].as_str().unwrap(), event_hash(&v));
        }
    }
}
