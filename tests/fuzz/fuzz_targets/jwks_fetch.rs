//! The remote key life cycle through `JwtAuth::keys` (public): fetches of a
//! `remote_jwks` provider and of an `oidc_discovery` provider (discovery
//! document, then its `jwks_uri`) answered with fuzzed statuses and bodies,
//! then a token checked against whatever was loaded.
//!
//! Input: answers separated by `---` lines; an answer's first line is
//! `<status> <seconds to advance>` (`none` for no `:status`), the rest is
//! the body. Each answer goes to the oldest call in flight.
//!
//! Checked: shared data holds only the fixed record and lease keys, a
//! loaded set stays within `MAX_KEYS`, and checks still decide.
#![no_main]

use filter_common::testing::{FakeHost, FakeMetrics, FakeSharedData};
use filter_common::RequestContext;
use jwt_auth::key_set::MAX_KEYS;
use jwt_auth::key_store::HttpDispatch;
use jwt_auth::{Check, Config, JwtAuth, Mode, PureRust};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::{claims, split_requests, Keys, NANOS, NOW};
use serde_json::json;
use std::collections::VecDeque;
use std::rc::Rc;

#[derive(Default)]
struct Calls {
    next: u32,
    pending: VecDeque<u32>,
}

impl HttpDispatch for Calls {
    fn get(&mut self, _: &str, _: &str, _: &str, _: u64) -> Option<u32> {
        self.next += 1;
        self.pending.push_back(self.next);
        Some(self.next)
    }
}

thread_local! {
    static SETUP: (Rc<Config>, String) = {
        let config = json!({
            "providers": {
                "remote": {
                    "issuer": "https://issuer.test",
                    "remote_jwks": {"http_uri": {"uri": "http://idp/jwks.json", "cluster": "idp", "timeout": "1s"},
                                    "cache_duration": "10s"}
                },
                "oidc": {
                    "issuer": "https://issuer.test",
                    "oidc_discovery": {"cluster": "idp", "cache_duration": "10s", "refetch_interval": "1s"},
                    "from_headers": [{"name": "x-oidc"}]
                }
            },
            "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": [
                {"provider_name": "remote"}, {"provider_name": "oidc"}]}}}]
        });
        let config = Config::parse(config.to_string().as_bytes()).expect("fuzz config parses");
        let keys = Keys::load().expect("test keys");
        let token = keys.token("ES256", &claims(json!({})));
        (Rc::new(config), token)
    };
}

fuzz_target!(|data: &[u8]| {
    let (config, token) = SETUP.with(|s| (Rc::clone(&s.0), s.1.clone()));
    let mut auth = JwtAuth::new(config);
    let mut shared = FakeSharedData::default();
    let mut http = Calls::default();
    let mut metrics = FakeMetrics::default();
    let log = |_: filter_common::Level, _: &str| {};
    let mut now = NOW * NANOS;
    for answer in split_requests(data).into_iter().take(16) {
        auth.keys
            .on_tick(now, &mut shared, &mut http, &mut metrics, &log);
        let (head, body) = match answer.iter().position(|b| *b == b'\n') {
            Some(p) => (&answer[..p], &answer[p + 1..]),
            None => (answer, &b""[..]),
        };
        let head = String::from_utf8_lossy(head);
        let mut words = head.split_whitespace();
        let status = words.next().and_then(|s| s.parse::<u32>().ok());
        let advance: u64 = words.next().and_then(|s| s.parse().ok()).unwrap_or(1);
        if let Some(t) = http.pending.pop_front() {
            let _ = auth.keys.on_response(
                t,
                status,
                Some(body),
                now,
                &mut shared,
                &mut http,
                &mut metrics,
                &log,
            );
        }
        now = now.saturating_add(advance.min(1_000_000).saturating_mul(NANOS));
        assert!(
            shared.entries.len() <= 4,
            "shared data grew: {:?}",
            shared.entries.keys()
        );
        for p in 0..2 {
            if let Some(set) = auth.keys.set(p) {
                assert!(!set.keys.is_empty() && set.keys.len() <= MAX_KEYS);
            }
        }
    }
    let mut host = FakeHost::request("GET", "/", "api.test", &[]);
    host.push("authorization", &format!("Bearer {token}"));
    host.push("x-oidc", &token);
    host.now_nanos = now;
    let mut ctx = RequestContext::default();
    let check = auth.check(&mut host, &mut ctx, &PureRust, &mut metrics, Mode::Final);
    assert!(!matches!(check, Check::Wait { .. }), "waited in final mode");
    assert_eq!(matches!(check, Check::Responded(_)), host.sent.is_some());
});
