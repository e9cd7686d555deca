//! rate-limit's request path over a FakeHost: key extraction from fuzzed
//! headers (`x-forwarded-for`, `x-api-key`, pseudo-headers) and properties
//! (`source.address`, `xds.route_name`, the peer's SAN, the identity filter
//! state), then the bucket update. Several requests per input (separated
//! by `---`) share one table.
//!
//! Checked: a reply is sent exactly when the flow says so, with 429, 503
//! or 400; a 400 (`ambiguous_key`) only for a request whose `x-api-key`
//! lines differ, and it changes no bucket; the shared-data key space never
//! grows with what clients send.
#![no_main]

use filter_common::testing::{FakeMetrics, FakeSharedData};
use filter_common::{Flow, RequestContext};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{parse_request, split_requests, RATE_LIMIT_CONFIG};
use rate_limit::{Config, RateLimit, RateLimiter};
use std::rc::Rc;

fuzz_target!(|data: &[u8]| {
    let config = Config::parse(RATE_LIMIT_CONFIG.as_bytes()).expect("fuzz config parses");
    let mut shared = FakeSharedData::default();
    let mut metrics = FakeMetrics::default();
    let limiter = RateLimiter::configure(config, &mut shared, &mut metrics, [7; 16], 0)
        .expect("configure on fresh shared data");
    let limiter = Rc::new(limiter);
    let keys = shared.entries.len();
    for req in split_requests(data).into_iter().take(32) {
        let mut host = parse_request(req);
        let mut ctx = RequestContext::default();
        let mut rl = RateLimit::new(Rc::clone(&limiter));
        let before = shared.entries.clone();
        let flow = rl.on_request_headers(&mut host, &mut shared, &mut metrics, &mut ctx);
        assert_ne!(flow, Flow::Pause);
        assert_eq!(flow == Flow::Responded, host.sent.is_some());
        if let Some((status, _, body)) = &host.sent {
            assert!(matches!(status, 429 | 503 | 400), "status {status}");
            if *status == 400 {
                let keys: Vec<&[u8]> = host
                    .request_headers
                    .iter()
                    .filter(|(k, _)| k.eq_ignore_ascii_case("x-api-key"))
                    .map(|(_, v)| v.as_slice())
                    .collect();
                assert!(
                    keys.iter().any(|k| *k != keys[0]),
                    "400 without differing x-api-key lines"
                );
                let body: serde_json::Value = serde_json::from_slice(body).expect("json body");
                assert_eq!(body["error"], "ambiguous_key");
                assert_eq!(body["rule"], "api-key");
                assert!(
                    shared.entries == before,
                    "an ambiguous request changed a bucket"
                );
            }
        } else {
            rl.on_response_headers(&mut host);
        }
        assert_eq!(
            shared.entries.len(),
            keys,
            "shared data grew with client input"
        );
    }
});
