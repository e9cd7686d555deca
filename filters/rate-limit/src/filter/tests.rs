use super::*;
use crate::gcra::NANOS_PER_SECOND as S;
use crate::{slots, Config};
use filter_common::identity::{Identity, IDENTITY_KEY};
use filter_common::request::Fields as Needs;
use filter_common::testing::{CountingHost, FakeHost, FakeMetrics, FakeSharedData};
use filter_common::{CasOutcome, RateLimitOutcome, RequestInfo};

/// Rejections the proxy refused to send.
const METRIC_SEND_FAILED: &str = "rate_limit.send_failed";
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_780_000_000 * S;

struct World {
    limiter: Rc<RateLimiter>,
    shared: FakeSharedData,
    metrics: FakeMetrics,
}

impl World {
    fn new(json: &str) -> Self {
        let config = Config::parse(json.as_bytes()).unwrap();
        let mut shared = FakeSharedData::default();
        let mut metrics = FakeMetrics::default();
        let limiter =
            RateLimiter::configure(config, &mut shared, &mut metrics, [9; 16], NOW).unwrap();
        World {
            limiter: Rc::new(limiter),
            shared,
            metrics,
        }
    }

    /// Runs one request; returns the host (with the reply, if any),
    /// the context and the response headers.
    fn send(&mut self, mut host: FakeHost, at: u64) -> (FakeHost, RequestContext) {
        host.now_nanos = at;
        if !host.properties.contains_key("source.address") {
            host.properties
                .insert("source.address".into(), b"10.0.0.1:1234".to_vec());
        }
        let mut ctx = RequestContext::default();
        let mut rl = RateLimit::new(Rc::clone(&self.limiter));
        let flow = rl.on_request_headers(&mut host, &mut self.shared, &mut self.metrics, &mut ctx);
        assert_eq!(flow == Flow::Responded, host.sent.is_some());
        if flow == Flow::Continue {
            rl.on_response_headers(&mut host);
        }
        (host, ctx)
    }

    fn get(&mut self, path: &str, headers: &[(&str, &str)], at: u64) -> (FakeHost, RequestContext) {
        self.send(FakeHost::request("GET", path, "example.com", headers), at)
    }

    fn metric(&self, name: &str) -> i64 {
        self.metrics.values.get(name).copied().unwrap_or(-1)
    }
}

fn status(h: &FakeHost) -> u32 {
    h.sent.as_ref().map_or(200, |s| s.0)
}

fn sent_header(h: &FakeHost, name: &str) -> Option<String> {
    let (_, headers, _) = h.sent.as_ref()?;
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

fn body(h: &FakeHost) -> serde_json::Value {
    serde_json::from_slice(&h.sent.as_ref().unwrap().2).unwrap()
}

const ONE_RULE: &str = r#"{"slots": 64, "rules": [{"name": "per-client", "match": {"prefix": "/api"},
    "limit": {"requests_per_unit": 10, "unit": "second", "burst": 5}}]}"#;

#[test]
fn only_the_pseudo_headers_a_rule_uses_are_read() {
    // No matcher, keyed on a header: none of them.
    let mut w = World::new(
        r#"{"rules": [{"name": "k", "key": [{"header": {"name": "x-k"}}],
            "limit": {"requests_per_unit": 10, "unit": "second"}}]}"#,
    );
    assert_eq!(w.limiter.needs(), Needs::default());
    let (_, ctx) = w.get("/api/x?q=1", &[("x-k", "a")], NOW);
    assert_eq!(ctx.request, RequestInfo::default());
    assert_eq!(ctx.rate_limit.unwrap().outcome.label(), "allowed");
    // Each matcher field or key part asks for its own.
    let w = World::new(
        r#"{"rules": [{"name": "a", "match": {"methods": ["GET"]}, "key": [{"path": {}}],
            "limit": {"requests_per_unit": 10, "unit": "second"}},
           {"name": "b", "match": {"host": "*.example.com"},
            "limit": {"requests_per_unit": 10, "unit": "second"}}]}"#,
    );
    let n = w.limiter.needs();
    assert!(n.method && n.path && n.host);
    let mut w = World::new(ONE_RULE);
    assert_eq!(
        w.limiter.needs(),
        Needs {
            path: true,
            ..Needs::default()
        }
    );
    let (_, ctx) = w.get("/api/x?q=1", &[], NOW);
    assert_eq!(ctx.request.path, "/api/x");
    assert_eq!(ctx.request.query.as_deref(), Some("q=1"));
    assert_eq!(ctx.request.method, "");
    // A context the chain already filled is used as is.
    let mut ctx = RequestContext {
        request: RequestInfo {
            method: "GET".into(),
            path: "/other".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let mut host = FakeHost::request("GET", "/api/x", "example.com", &[]);
    host.now_nanos = NOW;
    let mut rl = RateLimit::new(Rc::clone(&w.limiter));
    rl.on_request_headers(&mut host, &mut w.shared, &mut w.metrics, &mut ctx);
    assert_eq!(ctx.rate_limit, None, "/other matches no rule");
}

#[test]
fn burst_then_429_with_headers_and_body() {
    let mut w = World::new(ONE_RULE);
    for _ in 0..5 {
        let (h, ctx) = w.get("/api/x", &[], NOW);
        assert_eq!(status(&h), 200);
        assert_eq!(ctx.rate_limit.unwrap().outcome.label(), "allowed");
    }
    let (h, ctx) = w.get("/api/x", &[], NOW);
    assert_eq!(status(&h), 429);
    assert_eq!(sent_header(&h, "retry-after").as_deref(), Some("1"));
    assert_eq!(
        sent_header(&h, "ratelimit").as_deref(),
        Some("\"per-client\";r=0;t=1")
    );
    assert_eq!(
        sent_header(&h, "ratelimit-policy").as_deref(),
        Some("\"per-client\";q=10;w=1")
    );
    assert_eq!(sent_header(&h, "x-ratelimit-limit"), None);
    assert_eq!(body(&h)["rule"], "per-client");
    assert_eq!(body(&h)["error"], "over_limit");
    let d = ctx.rate_limit.unwrap();
    assert_eq!(
        (d.outcome.label(), d.rule.as_deref()),
        ("limited", Some("per-client"))
    );
    // Other paths are not limited; other clients have their own bucket.
    assert_eq!(status(&w.get("/other", &[], NOW).0), 200);
    let mut other = FakeHost::request("GET", "/api/x", "example.com", &[]);
    other
        .properties
        .insert("source.address".into(), b"10.0.0.2:1".to_vec());
    assert_eq!(status(&w.send(other, NOW).0), 200);
    // A tenth of a second later, one more.
    assert_eq!(status(&w.get("/api/x", &[], NOW + S / 10).0), 200);
    assert_eq!(status(&w.get("/api/x", &[], NOW + S / 10).0), 429);
    assert_eq!(w.metric("rate_limit.per-client.allowed"), 7);
    assert_eq!(w.metric("rate_limit.per-client.limited"), 2);
    assert_eq!(w.metric("rate_limit.per-client.shadow_limited"), 0);
    assert_eq!(w.metric("rate_limit.cas_retries"), 0);
}

#[test]
fn no_rule_applies_no_decision() {
    let mut w = World::new(ONE_RULE);
    let (_, ctx) = w.get("/", &[], NOW);
    assert!(ctx.rate_limit.is_none());
}

#[test]
fn a_denied_request_consumes_nothing_from_other_rules() {
    let mut w = World::new(
        r#"{"slots": 16, "rules": [
            {"name": "wide", "key": [], "limit": {"requests_per_unit": 3, "unit": "hour"}},
            {"name": "narrow", "match": {"prefix": "/b"}, "key": [], "limit": {"requests_per_unit": 1, "unit": "hour"}}]}"#,
    );
    assert_eq!(status(&w.get("/b", &[], NOW).0), 200);
    // "narrow" is empty: refusals on /b leave "wide" untouched.
    for _ in 0..5 {
        let (h, _) = w.get("/b", &[], NOW);
        assert_eq!(status(&h), 429);
        assert_eq!(body(&h)["rule"], "narrow");
    }
    assert_eq!(status(&w.get("/a", &[], NOW).0), 200);
    assert_eq!(status(&w.get("/a", &[], NOW).0), 200);
    let (h, _) = w.get("/a", &[], NOW);
    assert_eq!(status(&h), 429);
    assert_eq!(body(&h)["rule"], "wide");
    // Both empty: the first in config order is named.
    let (h, _) = w.get("/b", &[], NOW);
    assert_eq!(body(&h)["rule"], "wide");
    assert_eq!(w.metric("rate_limit.narrow.limited"), 6);
    assert_eq!(w.metric("rate_limit.wide.limited"), 2);
}

#[test]
fn shadow_rules_count_but_never_reject() {
    let mut w = World::new(
        r#"{"slots": 16, "rules": [
            {"name": "trial", "shadow": true, "limit": {"requests_per_unit": 2, "unit": "minute"}},
            {"name": "real", "limit": {"requests_per_unit": 4, "unit": "minute"}}]}"#,
    );
    let outcomes: Vec<(u32, String, Option<String>)> = (0..6)
        .map(|_| {
            let (h, ctx) = w.get("/", &[], NOW);
            let d = ctx.rate_limit.unwrap();
            (status(&h), d.outcome.label().to_string(), d.rule)
        })
        .collect();
    let expect = |s: u32, o: &str, r: Option<&str>| (s, o.to_string(), r.map(str::to_string));
    assert_eq!(
        outcomes,
        vec![
            expect(200, "allowed", None),
            expect(200, "allowed", None),
            expect(200, "shadow_limited", Some("trial")),
            expect(200, "shadow_limited", Some("trial")),
            expect(429, "limited", Some("real")),
            expect(429, "limited", Some("real")),
        ]
    );
    assert_eq!(w.metric("rate_limit.trial.shadow_limited"), 4);
    assert_eq!(w.metric("rate_limit.trial.allowed"), 2);
    assert_eq!(w.metric("rate_limit.trial.limited"), 0);
    assert_eq!(w.metric("rate_limit.real.allowed"), 4);
}

#[test]
fn missing_key_parts_share_one_bucket_or_skip() {
    let mut w = World::new(
        r#"{"slots": 16, "rules": [
            {"name": "shared", "key": [{"header": {"name": "x-key"}}], "limit": {"requests_per_unit": 1, "unit": "hour"}},
            {"name": "skip", "match": {"prefix": "/s"}, "key": [{"header": {"name": "x-other"}}], "on_missing_key": "skip",
             "limit": {"requests_per_unit": 1, "unit": "hour"}}]}"#,
    );
    assert_eq!(status(&w.get("/", &[("x-key", "a")], NOW).0), 200);
    assert_eq!(status(&w.get("/", &[("x-key", "a")], NOW).0), 429);
    assert_eq!(status(&w.get("/", &[("x-key", "b")], NOW).0), 200);
    // No header: one bucket for all who leave it out.
    assert_eq!(status(&w.get("/", &[], NOW).0), 200);
    assert_eq!(status(&w.get("/", &[], NOW).0), 429);
    // "skip" never applies without its header.
    let mut w = World::new(
        r#"{"slots": 16, "rules": [{"name": "skip", "key": [{"header": {"name": "x-other"}}],
            "on_missing_key": "skip", "limit": {"requests_per_unit": 1, "unit": "hour"}}]}"#,
    );
    for _ in 0..3 {
        let (h, ctx) = w.get("/", &[], NOW);
        assert_eq!(status(&h), 200);
        assert!(ctx.rate_limit.is_none());
    }
}

#[test]
fn identity_from_the_context_or_filter_state() {
    let mut w = World::new(
        r#"{"slots": 16, "rules": [{"name": "user", "key": [{"identity": {}}], "on_missing_key": "skip",
            "limit": {"requests_per_unit": 1, "unit": "hour"}}]}"#,
    );
    let alice = Identity {
        provider: "p".into(),
        issuer: "https://iss".into(),
        subject: "alice".into(),
        claims: Default::default(),
    };
    // In the chain: jwt-auth put it in the context.
    let run = |w: &mut World, identity: Option<Identity>, state: Option<&Identity>| {
        let mut host = FakeHost::request("GET", "/", "h", &[]);
        host.now_nanos = NOW;
        if let Some(i) = state {
            host.properties
                .insert(IDENTITY_KEY.into(), serde_json::to_vec(i).unwrap());
        }
        let mut ctx = RequestContext {
            identity,
            ..Default::default()
        };
        let mut rl = RateLimit::new(Rc::clone(&w.limiter));
        rl.on_request_headers(&mut host, &mut w.shared, &mut w.metrics, &mut ctx);
        status(&host)
    };
    assert_eq!(run(&mut w, Some(alice.clone()), None), 200);
    assert_eq!(run(&mut w, Some(alice.clone()), None), 429);
    // As separate filters: the same identity from filter state.
    assert_eq!(run(&mut w, None, Some(&alice)), 429);
    let bob = Identity {
        subject: "bob".into(),
        ..alice.clone()
    };
    assert_eq!(run(&mut w, None, Some(&bob)), 200);
    // Anonymous requests are not limited by this rule (skip).
    assert_eq!(run(&mut w, None, None), 200);
    assert_eq!(run(&mut w, None, None), 200);
}

#[test]
fn headers_on_allowed_responses() {
    let mut w = World::new(
        r#"{"slots": 16, "headers": {"on_allowed": true, "x_ratelimit": true}, "rules": [
            {"name": "a", "key": [], "limit": {"requests_per_unit": 10, "unit": "minute"}},
            {"name": "b", "key": [], "limit": {"requests_per_unit": 2, "unit": "minute", "burst": 3}},
            {"name": "s", "key": [], "shadow": true, "limit": {"requests_per_unit": 1, "unit": "minute"}}]}"#,
    );
    let (h, _) = w.get("/", &[], NOW);
    let get = |n: &str| {
        h.response_headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
    };
    assert_eq!(
        get("ratelimit-policy").as_deref(),
        Some("\"a\";q=10;w=60, \"b\";q=2;w=60")
    );
    assert_eq!(
        get("ratelimit").as_deref(),
        Some("\"a\";r=9;t=6, \"b\";r=2;t=30")
    );
    assert_eq!(get("x-ratelimit-limit").as_deref(), Some("2"));
    assert_eq!(get("x-ratelimit-remaining").as_deref(), Some("2"));
    assert_eq!(get("x-ratelimit-reset").as_deref(), Some("30"));
    // Without on_allowed, allowed responses are left alone.
    let mut w = World::new(ONE_RULE);
    assert!(w.get("/api", &[], NOW).0.response_headers.is_empty());
}

#[test]
fn exhausted_retries_follow_the_failure_mode() {
    struct Broken(FakeSharedData);
    impl SharedData for Broken {
        fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.0.get(key)
        }
        fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> CasOutcome {
            match cas {
                Some(_) => CasOutcome::Conflict,
                None => self.0.set(key, value, cas),
            }
        }
    }
    let config = Config::parse(
        br#"{"slots": 4, "rules": [
            {"name": "open", "key": [], "failure_mode": "allow", "limit": {"requests_per_unit": 1, "unit": "hour"}},
            {"name": "closed", "match": {"prefix": "/c"}, "key": [], "limit": {"requests_per_unit": 1, "unit": "hour"}}]}"#,
    )
    .unwrap();
    let mut shared = Broken(FakeSharedData::default());
    let mut metrics = FakeMetrics::default();
    let limiter =
        Rc::new(RateLimiter::configure(config, &mut shared, &mut metrics, [1; 16], NOW).unwrap());
    let mut run = |path: &str| {
        let mut host = FakeHost::request("GET", path, "h", &[]);
        let mut ctx = RequestContext::default();
        RateLimit::new(Rc::clone(&limiter)).on_request_headers(
            &mut host,
            &mut shared,
            &mut metrics,
            &mut ctx,
        );
        (host, ctx)
    };
    let (h, ctx) = run("/a");
    assert!(h.sent.is_none());
    assert_eq!(ctx.rate_limit.unwrap().outcome.label(), "allowed");
    let (h, ctx) = run("/c");
    assert_eq!(status(&h), 503);
    assert_eq!(body(&h)["error"], "store_unavailable");
    assert_eq!(body(&h)["rule"], "closed");
    assert_eq!(ctx.rate_limit.unwrap().outcome.label(), "error");
    assert!(h.logs.borrow().iter().any(|(_, m)| m.contains("closed")));
    assert_eq!(metrics.values["rate_limit.open.store_unavailable"], 2);
    assert_eq!(metrics.values["rate_limit.closed.store_unavailable"], 1);
    assert_eq!(
        metrics.values["rate_limit.cas_retries"],
        3 * i64::from(slots::MAX_ATTEMPTS)
    );
}

#[test]
fn two_workers_share_one_limit() {
    // Two VMs: each configures (the second reuses the seed and the
    // table) and both serve the same client from the same shared data.
    let json = r#"{"slots": 64, "rules": [{"name": "r", "limit": {"requests_per_unit": 5, "unit": "minute"}}]}"#;
    let mut shared = FakeSharedData::default();
    let mut metrics = FakeMetrics::default();
    let a = Rc::new(
        RateLimiter::configure(
            Config::parse(json.as_bytes()).unwrap(),
            &mut shared,
            &mut metrics,
            [1; 16],
            NOW,
        )
        .unwrap(),
    );
    let entries = shared.entries.len();
    let b = Rc::new(
        RateLimiter::configure(
            Config::parse(json.as_bytes()).unwrap(),
            &mut shared,
            &mut metrics,
            [2; 16],
            NOW,
        )
        .unwrap(),
    );
    assert_eq!(shared.entries.len(), entries);
    let mut allowed = 0;
    for i in 0..20 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        let mut host = FakeHost::request("GET", "/", "h", &[]);
        host.properties
            .insert("source.address".into(), b"[2001:db8::1]:9".to_vec());
        host.now_nanos = NOW;
        let mut ctx = RequestContext::default();
        RateLimit::new(Rc::clone(limiter)).on_request_headers(
            &mut host,
            &mut shared,
            &mut metrics,
            &mut ctx,
        );
        if host.sent.is_none() {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 5);
}

#[test]
fn a_reconfiguration_keeps_every_clients_debt() {
    // As Envoy does on a config update: the same shared data, a new
    // limiter. 32 clients each spend their burst of 2.
    let json = |burst: u32, slots: u32| {
        format!(
            r#"{{"slots": {slots}, "rules": [{{"name": "r", "key": [{{"header": {{"name": "x-key"}}}}],
            "limit": {{"requests_per_unit": 2, "unit": "hour", "burst": {burst}}}}}]}}"#
        )
    };
    let mut w = World::new(&json(2, 64));
    let keys: Vec<String> = (0..32).map(|i| format!("client-{i}")).collect();
    for k in &keys {
        while status(&w.get("/", &[("x-key", k)], NOW).0) == 200 {}
    }
    let reconfigure = |w: &mut World, text: &str, at: u64| {
        let config = Config::parse(text.as_bytes()).unwrap();
        w.limiter = Rc::new(
            RateLimiter::configure(config, &mut w.shared, &mut w.metrics, [3; 16], at).unwrap(),
        );
    };
    let limited = |w: &mut World, at: u64| {
        keys.iter()
            .filter(|k| status(&w.get("/", &[("x-key", k.as_str())], at).0) == 429)
            .count()
    };
    // Unchanged: every client stays limited.
    reconfigure(&mut w, &json(2, 64), NOW + S);
    assert_eq!(limited(&mut w, NOW + S), 32);
    // 16 times the slots (and back to 8): nobody gets a fresh bucket.
    reconfigure(&mut w, &json(2, 1024), NOW + 2 * S);
    assert_eq!(limited(&mut w, NOW + 2 * S), 32);
    reconfigure(&mut w, &json(2, 8), NOW + 3 * S);
    assert_eq!(limited(&mut w, NOW + 3 * S), 32);
    // Burst 2 → 3 keeps the debt: one more request for a client alone
    // in its slot (sharers split it: stricter).
    reconfigure(&mut w, &json(3, 1024), NOW + 4 * S);
    let client = &keys[0];
    let (h, _) = w.get("/", &[("x-key", client)], NOW + 4 * S);
    assert!(status(&h) == 200 || status(&h) == 429);
    assert_eq!(
        status(&w.get("/", &[("x-key", client)], NOW + 4 * S).0),
        429
    );
    // Two hours on, every debt under any layout is repaid.
    assert_eq!(limited(&mut w, NOW + 2 * 3_600 * S), 0);
}

const PER_KEY: &str = r#"{"slots": 64, "rules": [{"name": "per-key", "match": {"prefix": "/key"},
    "key": [{"header": {"name": "x-api-key"}}], "limit": {"requests_per_unit": 2, "unit": "hour"}}]}"#;

#[test]
fn a_key_header_repeated_with_different_values_is_refused() {
    let mut w = World::new(PER_KEY);
    assert_eq!(w.metric("rate_limit.per-key.ambiguous_key"), 0);
    let key = |v: &'static str| ("x-api-key", v);
    for want in [200, 200, 429] {
        assert_eq!(status(&w.get("/key", &[key("spent")], NOW).0), want);
    }
    // A fresh value first, the spent key second (or the other way
    // round): the upstream might read either line.
    for lines in [
        vec![key("fresh-1"), key("spent")],
        vec![key("spent"), key("fresh-1")],
        vec![key("fresh-1"), ("X-Api-Key", "spent")],
    ] {
        let (h, ctx) = w.get("/key", &lines, NOW);
        assert_eq!(status(&h), 400, "{lines:?}");
        assert_eq!(body(&h)["error"], "ambiguous_key");
        assert_eq!(body(&h)["rule"], "per-key");
        assert!(body(&h).get("retry_after").is_none());
        assert_eq!(sent_header(&h, "retry-after"), None);
        assert_eq!(sent_header(&h, "ratelimit"), None);
        let d = ctx.rate_limit.unwrap();
        assert_eq!(
            (d.outcome.label(), d.rule.as_deref()),
            ("invalid", Some("per-key"))
        );
    }
    assert_eq!(w.metric("rate_limit.per-key.ambiguous_key"), 3);
    // Nothing was charged: fresh-1 still has its whole burst.
    assert_eq!(w.metric("rate_limit.per-key.allowed"), 2);
    assert_eq!(w.metric("rate_limit.per-key.limited"), 1);
    for want in [200, 200, 429] {
        assert_eq!(status(&w.get("/key", &[key("fresh-1")], NOW).0), want);
    }
    // Identical lines are one key: the spent one.
    let (h, _) = w.get("/key", &[key("spent"), key("spent")], NOW);
    assert_eq!(status(&h), 429);
    assert_eq!(body(&h)["error"], "over_limit");
    // A list in one line is one opaque key of its own.
    assert_eq!(status(&w.get("/key", &[key("spent, fresh-2")], NOW).0), 200);
    // A request the rule does not match is not looked at.
    let (h, ctx) = w.get("/other", &[key("a"), key("b")], NOW);
    assert_eq!(status(&h), 200);
    assert!(ctx.rate_limit.is_none());
    assert_eq!(w.metric("rate_limit.per-key.ambiguous_key"), 3);
}

#[test]
fn an_ambiguous_key_charges_no_other_rule_and_names_the_first() {
    let mut w = World::new(
        r#"{"slots": 16, "rules": [
            {"name": "ip", "limit": {"requests_per_unit": 1, "unit": "hour"}},
            {"name": "trial", "shadow": true, "key": [{"header": {"name": "x-a"}}],
             "limit": {"requests_per_unit": 5, "unit": "hour"}},
            {"name": "skip", "key": [{"header": {"name": "x-a"}}, {"header": {"name": "x-b"}}],
             "on_missing_key": "skip", "limit": {"requests_per_unit": 5, "unit": "hour"}}]}"#,
    );
    // Only rules keyed on a header can count ambiguity.
    assert_eq!(w.metric("rate_limit.ip.ambiguous_key"), -1);
    assert_eq!(w.metric("rate_limit.trial.ambiguous_key"), 0);
    let (h, ctx) = w.get("/", &[("x-a", "1"), ("x-a", "2"), ("x-b", "b")], NOW);
    // A shadow rule refuses too: malformed input, not its limit.
    assert_eq!(status(&h), 400);
    assert_eq!(body(&h)["rule"], "trial");
    assert_eq!(ctx.rate_limit.unwrap().outcome.label(), "invalid");
    assert_eq!(w.metric("rate_limit.trial.ambiguous_key"), 1);
    assert_eq!(w.metric("rate_limit.skip.ambiguous_key"), 1);
    // x-b missing: "skip" does not apply (it would not use x-a), but
    // "trial" still refuses.
    let (h, _) = w.get("/", &[("x-a", "1"), ("x-a", "2")], NOW);
    assert_eq!(body(&h)["rule"], "trial");
    assert_eq!(w.metric("rate_limit.skip.ambiguous_key"), 1);
    assert_eq!(w.metric("rate_limit.trial.ambiguous_key"), 2);
    // Neither refusal took the client's one token, nor any other.
    for m in ["ip", "trial", "skip"] {
        assert_eq!(w.metric(&format!("rate_limit.{m}.allowed")), 0, "{m}");
    }
    assert_eq!(
        status(&w.get("/", &[("x-a", "1"), ("x-b", "b")], NOW).0),
        200
    );
    assert_eq!(status(&w.get("/", &[("x-a", "1")], NOW).0), 429);
}

fn reads(json: &str, path: &str, headers: &[(&str, &str)]) -> (u32, u32, u32) {
    let w = World::new(json);
    let mut shared = w.shared.clone();
    let mut metrics = w.metrics.clone();
    let mut fake = FakeHost::request("GET", path, "example.com", headers);
    fake.now_nanos = NOW;
    fake.properties
        .insert("source.address".into(), b"10.0.0.1:1".to_vec());
    let mut host = CountingHost::new(fake);
    let mut ctx = RequestContext::default();
    RateLimit::new(Rc::clone(&w.limiter)).on_request_headers(
        &mut host,
        &mut shared,
        &mut metrics,
        &mut ctx,
    );
    (host.one.get(), host.all.get(), status(&host.host))
}

#[test]
fn every_header_is_read_in_one_call_and_only_when_a_key_needs_it() {
    // Keyed on the client address: no header list is copied (the
    // `prefix` matcher reads `:path` alone).
    let dup = [("x-api-key", "a"), ("x-api-key", "b")];
    assert_eq!(reads(ONE_RULE, "/api", &dup), (1, 0, 200));
    // Keyed on a header: the whole list, once, however many rules and
    // parts use it; no single-header read.
    let two_rules = r#"{"slots": 16, "rules": [
        {"name": "a", "key": [{"header": {"name": "x-api-key"}}, {"header": {"name": "x-b"}}],
         "limit": {"requests_per_unit": 5, "unit": "hour"}},
        {"name": "b", "key": [{"header": {"name": "x-api-key"}}, {"client_ip": {"trusted_hops": 1}}],
         "limit": {"requests_per_unit": 5, "unit": "hour"}}]}"#;
    assert_eq!(
        reads(two_rules, "/", &[("x-api-key", "k"), ("x-b", "b")]),
        (0, 1, 200)
    );
    assert_eq!(reads(two_rules, "/", &dup), (0, 1, 400));
    // A header rule the request does not match reads nothing.
    assert_eq!(reads(PER_KEY, "/other", &dup), (1, 0, 200));
}

#[test]
fn spraying_keys_never_grows_state_nor_resets_a_bucket() {
    let mut w = World::new(
        r#"{"slots": 32, "rules": [{"name": "k", "key": [{"header": {"name": "x-key"}}],
            "limit": {"requests_per_unit": 1, "unit": "hour"}}]}"#,
    );
    let entries = w.shared.entries.len();
    assert_eq!(status(&w.get("/", &[("x-key", "victim")], NOW).0), 200);
    for i in 0..3000 {
        w.get("/", &[("x-key", &format!("spray-{i}"))], NOW);
    }
    assert_eq!(w.shared.entries.len(), entries);
    // However many keys went by, the victim's bucket is still empty.
    assert_eq!(status(&w.get("/", &[("x-key", "victim")], NOW).0), 429);
    assert!(w.metric("rate_limit.slot_collisions") > 0);
}

/// Each refusal names its reason and rule in Envoy's response code
/// details; if the proxy refuses to send it, the request still stops
/// (paused, never continued) and the failure is counted.
#[test]
fn refusals_carry_details_and_a_refused_reply_never_continues() {
    /// (path, headers, status, details)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], u32, &'a str);
    let cases: [Case; 2] = [
        ("/key", &[("x-api-key", "k")], 429, "rate_limited{per-key}"),
        (
            "/key",
            &[("x-api-key", "a"), ("x-api-key", "b")],
            400,
            "rate_limit_denied{ambiguous_key.per-key}",
        ),
    ];
    for (path, headers, want, details) in cases {
        for send_fails in [false, true] {
            let mut w = World::new(PER_KEY);
            // Spend the key's bucket (2 per hour).
            for _ in 0..2 {
                assert_eq!(status(&w.get("/key", &[("x-api-key", "k")], NOW).0), 200);
            }
            let mut host = FakeHost::request("GET", path, "example.com", headers);
            host.now_nanos = NOW;
            host.faults.send_response = send_fails;
            let mut ctx = RequestContext::default();
            let flow = RateLimit::new(Rc::clone(&w.limiter)).on_request_headers(
                &mut host,
                &mut w.shared,
                &mut w.metrics,
                &mut ctx,
            );
            let case = format!("{details}, send fails: {send_fails}");
            assert_eq!(flow, Flow::Responded, "{case}");
            assert_ne!(
                ctx.rate_limit.unwrap().outcome,
                RateLimitOutcome::Allowed,
                "{case}"
            );
            assert_eq!(
                w.metric(METRIC_SEND_FAILED),
                i64::from(send_fails),
                "{case}"
            );
            if send_fails {
                assert_eq!(host.sent, None, "{case}");
                assert!(
                    host.logs
                        .borrow()
                        .iter()
                        .any(|(_, m)| m.contains("not sent")),
                    "{case}"
                );
            } else {
                assert_eq!(status(&host), want, "{case}");
                assert_eq!(host.sent_details.as_deref(), Some(details), "{case}");
            }
        }
    }
}
