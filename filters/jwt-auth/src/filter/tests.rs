//! The core end to end on in-memory hosts: every attack, every outcome.

use super::*;
use crate::algorithm::Alg;
use crate::testkit::{claims, jwks, Key, KeyName, NOW};
use filter_common::testing::{FakeHost, FakeMetrics, FakeSharedData, Faults};
use serde_json::json;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NANOS: u64 = 1_000_000_000;

fn all_keys() -> Vec<Key> {
    [
        KeyName::RsaA,
        KeyName::P256,
        KeyName::P384,
        KeyName::Ed25519,
    ]
    .into_iter()
    .map(Key::get)
    .collect()
}

fn local_config(extra_provider: Value, rules: Value) -> Config {
    let mut p = json!({
        "issuer": "https://issuer.test",
        "audiences": ["api"],
        "local_jwks": {"inline_string": jwks(&all_keys())},
        "claim_to_headers": [
            {"header_name": "x-sub", "claim_name": "sub"},
            {"header_name": "x-tier", "claim_name": "org.tier"},
            {"header_name": "x-roles", "claim_name": "roles"}
        ],
        "forward_payload_header": "x-jwt-payload"
    });
    for (k, v) in extra_provider.as_object().unwrap() {
        p[k] = v.clone();
    }
    let cfg = json!({"providers": {"main": p}, "rules": rules, "realm": "test"});
    Config::parse(cfg.to_string().as_bytes()).unwrap()
}

fn default_rules() -> Value {
    json!([
        {"match": {"prefix": "/public"}},
        {"match": {"prefix": "/api", "methods": ["GET"]}, "requires": {"provider_name": "main"},
         "authorization": {"all": [{"claim": "scope", "contains": "read"}]}},
        {"match": {"prefix": "/api"}, "requires": {"provider_name": "main"},
         "authorization": {"all": [{"claim": "scope", "contains": "write"}]}},
        {"match": {"prefix": "/optional"}, "requires": {"requires_any": {"requirements": [{"provider_name": "main"}, {"allow_missing": {}}]}}},
        {"match": {"prefix": "/lenient"}, "requires": {"allow_missing_or_failed": {}}},
        {"match": {"prefix": "/"}, "requires": {"provider_name": "main"}}
    ])
}

struct Run {
    host: FakeHost,
    ctx: RequestContext,
    check: Check,
}

impl Run {
    fn status(&self) -> Option<u32> {
        self.host.sent.as_ref().map(|s| s.0)
    }
    fn reason(&self) -> Option<Reason> {
        match self.check {
            Check::Responded(r) => Some(r),
            _ => None,
        }
    }
    fn header(&self, name: &str) -> Option<String> {
        self.host.header_str(name)
    }
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> FakeHost {
    let mut h = FakeHost::request(method, path, "api.test", headers);
    h.now_nanos = NOW as u64 * NANOS;
    h
}

fn run(auth: &mut JwtAuth, mut host: FakeHost, metrics: &mut FakeMetrics) -> Run {
    let mut ctx = RequestContext::default();
    let check = auth.check(
        &mut host,
        &mut ctx,
        &verifier::PureRust,
        metrics,
        Mode::MayWait,
    );
    Run { host, ctx, check }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

fn auth() -> JwtAuth {
    JwtAuth::new(Rc::new(local_config(json!({}), default_rules())))
}

#[test]
fn every_algorithm_passes_through_the_filter() {
    let mut a = auth();
    let mut m = FakeMetrics::default();
    for key in all_keys() {
        for alg in key.algs() {
            let t = key.token(alg, &claims(json!({})));
            let r = run(
                &mut a,
                request("GET", "/x", &[("authorization", &bearer(&t))]),
                &mut m,
            );
            assert_eq!(r.check, Check::Continue, "{alg}");
            assert_eq!(r.ctx.identity.as_ref().unwrap().subject, "alice");
        }
    }
    assert_eq!(m.values["jwt_auth.allowed"], 9);
    assert_eq!(m.values["jwt_auth.verify.pure"], 9);
}

#[test]
fn missing_token_is_401_with_a_challenge() {
    let mut a = auth();
    let mut m = FakeMetrics::default();
    let r = run(&mut a, request("GET", "/x", &[]), &mut m);
    assert_eq!(r.reason(), Some(Reason::TokenMissing));
    let (status, headers, body) = r.host.sent.clone().unwrap();
    assert_eq!(status, 401);
    assert!(headers.contains(&("www-authenticate".into(), "Bearer realm=\"test\"".into())));
    assert!(String::from_utf8(body).unwrap().contains("token_missing"));
    assert_eq!(m.values["jwt_auth.denied.token_missing"], 1);
    assert_eq!(r.ctx.jwt.unwrap().status, Some(401));
}

#[test]
fn unmatched_and_open_routes_need_no_token() {
    let a_cfg = local_config(
        json!({}),
        json!([{"match": {"prefix": "/api"}, "requires": {"provider_name": "main"}}]),
    );
    let mut a = JwtAuth::new(Rc::new(a_cfg));
    let mut m = FakeMetrics::default();
    let r = run(&mut a, request("GET", "/other", &[]), &mut m);
    assert_eq!(r.check, Check::Continue);
    assert_eq!(r.ctx.jwt.unwrap().outcome.label(), "unauthenticated");
    let mut a = auth();
    let r = run(
        &mut a,
        request("GET", "/public/x", &[("authorization", "Bearer garbage")]),
        &mut m,
    );
    assert_eq!(r.check, Check::Continue);
    assert!(r.ctx.identity.is_none());
}

#[test]
fn attacks_are_rejected_with_precise_reasons() {
    let rsa = Key::get(KeyName::RsaA);
    let c = claims(json!({}));
    let good = rsa.token(Alg::RS256, &c);
    let b64 = |v: &Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let (head, _) = good.split_once('.').unwrap();
    let sig = good.rsplit('.').next().unwrap();
    // HMAC keyed with the RSA public key (algorithm confusion).
    let confused = Key {
        kid: "rsa-a".into(),
        secret: crate::testkit::Secret::Hmac(b"-----BEGIN PUBLIC KEY-----".repeat(2)),
    }
    .token(Alg::HS256, &c);
    // An attacker's own key, embedded as `jwk`, with the victim's kid.
    let attacker = Key::get(KeyName::RsaB);
    let embedded = attacker.sign_with_header(
        Alg::RS256,
        &json!({"alg": "RS256", "kid": "rsa-a", "jwk": attacker.jwk()}),
        &c,
    );
    let cases: Vec<(String, Reason)> = vec![
        (
            format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&c)),
            Reason::AlgNotAllowed,
        ),
        (
            format!("{}.{}.{sig}", b64(&json!({"alg": "none"})), b64(&c)),
            Reason::AlgNotAllowed,
        ),
        (
            format!(
                "{}.{}.{sig}",
                b64(&json!({"alg": "NoNe", "kid": "rsa-a"})),
                b64(&c)
            ),
            Reason::AlgNotAllowed,
        ),
        (confused, Reason::AlgNotAllowed),
        (embedded, Reason::BadSignature),
        (
            rsa.sign_with_header(
                Alg::RS256,
                &json!({"alg": "RS256", "kid": "../../etc/passwd"}),
                &c,
            ),
            Reason::UnknownKid,
        ),
        (
            rsa.sign_with_header(Alg::RS256, &json!({"alg": "RS256", "kid": "ec-256"}), &c),
            Reason::NoMatchingKey,
        ),
        (
            rsa.sign_with_header(
                Alg::RS256,
                &json!({"alg": "RS256", "kid": "rsa-a' OR 1=1"}),
                &c,
            ),
            Reason::UnknownKid,
        ),
        (
            format!("{head}.{}.{sig}", b64(&claims(json!({"sub": "admin"})))),
            Reason::BadSignature,
        ),
        (
            format!(
                "{head}.{}.{}",
                good.split('.').nth(1).unwrap(),
                "A".repeat(342)
            ),
            Reason::BadSignature,
        ),
        (
            rsa.sign_with_header(
                Alg::RS256,
                &json!({"alg": "RS256", "crit": ["b64"], "b64": false}),
                &c,
            ),
            Reason::UnsupportedCrit,
        ),
        (
            rsa.token(Alg::RS256, &claims(json!({"exp": NOW - 61}))),
            Reason::Expired,
        ),
        (
            rsa.token(Alg::RS256, &claims(json!({"nbf": NOW + 61}))),
            Reason::NotYetValid,
        ),
        (
            rsa.token(Alg::RS256, &claims(json!({"exp": "soon"}))),
            Reason::BadTimeClaim,
        ),
        (
            rsa.token(Alg::RS256, &claims(json!({"exp": 1e300}))),
            Reason::BadTimeClaim,
        ),
        (
            rsa.token(Alg::RS256, &claims(json!({"iss": "https://evil"}))),
            Reason::IssuerMismatch,
        ),
        (
            rsa.token(Alg::RS256, &claims(json!({"aud": ["other"]}))),
            Reason::AudienceMismatch,
        ),
        ("x".repeat(70_000), Reason::Malformed),
        ("not a jwt".into(), Reason::Malformed),
    ];
    // ECDSA r = s = 0 (CVE-2022-21449).
    let ec = Key::get(KeyName::P256).token(Alg::ES256, &c);
    let zero = format!("{}.{}", ec.rsplit_once('.').unwrap().0, "A".repeat(86));
    let mut a = auth();
    let mut m = FakeMetrics::default();
    for (t, want) in cases.into_iter().chain([(zero, Reason::BadSignature)]) {
        let r = run(
            &mut a,
            request("GET", "/x", &[("authorization", &bearer(&t))]),
            &mut m,
        );
        assert_eq!(r.reason(), Some(want), "{t:.80}");
        assert_eq!(r.status(), Some(want.status()));
        let (_, headers, body) = r.host.sent.clone().unwrap();
        let challenge = &headers
            .iter()
            .find(|(k, _)| k == "www-authenticate")
            .unwrap()
            .1;
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
        let body = String::from_utf8(body).unwrap();
        assert!(
            !body.contains(t.get(..20).unwrap_or(&t)),
            "the token is never echoed"
        );
        assert!(r.ctx.identity.is_none());
    }
}

#[test]
fn exp_boundary_with_skew() {
    let rsa = Key::get(KeyName::RsaA);
    let mut a = auth();
    let mut m = FakeMetrics::default();
    let at = |exp: i64| rsa.token(Alg::RS256, &claims(json!({"exp": exp})));
    let r = run(
        &mut a,
        request("GET", "/x", &[("authorization", &bearer(&at(NOW - 60)))]),
        &mut m,
    );
    assert_eq!(r.check, Check::Continue);
    let r = run(
        &mut a,
        request("GET", "/x", &[("authorization", &bearer(&at(NOW - 61)))]),
        &mut m,
    );
    assert_eq!(r.reason(), Some(Reason::Expired));
}

#[test]
fn garbage_and_non_utf8_headers_never_panic() {
    let mut a = auth();
    let mut m = FakeMetrics::default();
    let mut h = request("GET", "/x", &[]);
    h.request_headers.push((
        "authorization".into(),
        b"Bearer \xff\xfe\x00.\x80.\x81".to_vec(),
    ));
    h.request_headers.push(("x-sub".into(), b"\xff".to_vec()));
    let r = run(&mut a, h, &mut m);
    assert_eq!(r.reason(), Some(Reason::Malformed));
    let many: Vec<String> = (0..10).map(|i| format!("Bearer t{i}")).collect();
    let r = run(
        &mut a,
        request("GET", "/x", &[("authorization", &many.join(", "))]),
        &mut m,
    );
    assert_eq!(r.reason(), Some(Reason::TooManyTokens));
}

#[test]
fn claims_are_forwarded_and_spoofed_headers_stripped() {
    let rsa = Key::get(KeyName::RsaA);
    let t = rsa.token(
        Alg::RS256,
        &claims(json!({"org": {"tier": "gold"}, "roles": ["a", "b"], "scope": "read"})),
    );
    let mut a = auth();
    let mut m = FakeMetrics::default();
    let spoof = [
        ("x-sub", "root"),
        ("x-tier", "platinum"),
        ("x-jwt-payload", "e30"),
    ];
    let mut headers = spoof.to_vec();
    let auth_value = bearer(&t);
    headers.push(("authorization", &auth_value));
    let r = run(&mut a, request("GET", "/x", &headers), &mut m);
    assert_eq!(r.check, Check::Continue);
    assert_eq!(r.header("x-sub").as_deref(), Some("alice"));
    assert_eq!(r.header("x-tier").as_deref(), Some("gold"));
    assert_eq!(r.header("x-roles").as_deref(), Some(r#"["a","b"]"#));
    assert_eq!(r.header("x-jwt-payload").as_deref(), t.split('.').nth(1));
    assert_eq!(
        r.header("authorization"),
        None,
        "forward: false strips the token"
    );
    let id = r.ctx.identity.unwrap();
    assert_eq!(id.issuer, "https://issuer.test");
    assert_eq!(id.claims["org.tier"], "gold");
    // Without a token, on an open route: the spoofed headers are gone too.
    let r = run(&mut a, request("GET", "/public", &spoof), &mut m);
    assert_eq!(r.check, Check::Continue);
    for (h, _) in spoof {
        assert_eq!(r.header(h), None, "{h}");
    }
}

#[test]
fn forward_true_keeps_the_token_and_query_tokens_are_removed() {
    let rsa = Key::get(KeyName::RsaA);
    let t = rsa.token(Alg::RS256, &claims(json!({})));
    let mut a = JwtAuth::new(Rc::new(local_config(
        json!({"forward": true}),
        default_rules(),
    )));
    let mut m = FakeMetrics::default();
    let r = run(
        &mut a,
        request("GET", "/x", &[("authorization", &bearer(&t))]),
        &mut m,
    );
    assert_eq!(r.header("authorization"), Some(bearer(&t)));
    let mut a = auth();
    let r = run(
        &mut a,
        request("GET", &format!("/x?a=1&access_token={t}"), &[]),
        &mut m,
    );
    assert_eq!(r.check, Check::Continue);
    assert_eq!(r.header(":path").as_deref(), Some("/x?a=1"));
}

#[test]
fn every_token_location_is_stripped_not_only_the_first() {
    let rsa = Key::get(KeyName::RsaA);
    let t = rsa.token(Alg::RS256, &claims(json!({})));
    let u = rsa.token(Alg::RS256, &claims(json!({"sub": "bob"})));
    let mut a = auth();
    let mut m = FakeMetrics::default();
    for (header, query) in [(&t, &t), (&t, &u), (&u, &t)] {
        let r = run(
            &mut a,
            request(
                "GET",
                &format!("/x?a=1&access_token={query}"),
                &[("authorization", &bearer(header))],
            ),
            &mut m,
        );
        assert_eq!(r.check, Check::Continue);
        assert_eq!(r.header("authorization"), None);
        assert_eq!(r.header(":path").as_deref(), Some("/x?a=1"));
    }
}

#[test]
fn authorization_by_method_and_path() {
    let rsa = Key::get(KeyName::RsaA);
    let reader = rsa.token(Alg::RS256, &claims(json!({"scope": "read"})));
    let writer = rsa.token(Alg::RS256, &claims(json!({"scope": "read write"})));
    let mut a = auth();
    let mut m = FakeMetrics::default();
    let go = |a: &mut JwtAuth, m: &mut FakeMetrics, method: &str, t: &str| {
        run(
            a,
            request(method, "/api/items", &[("authorization", &bearer(t))]),
            m,
        )
    };
    assert_eq!(go(&mut a, &mut m, "GET", &reader).check, Check::Continue);
    let r = go(&mut a, &mut m, "POST", &reader);
    assert_eq!(r.status(), Some(403));
    let (_, headers, _) = r.host.sent.clone().unwrap();
    assert!(headers
        .iter()
        .any(|(k, v)| k == "www-authenticate" && v.contains("insufficient_scope")));
    assert_eq!(go(&mut a, &mut m, "POST", &writer).check, Check::Continue);
    assert_eq!(m.values["jwt_auth.denied.insufficient_scope"], 1);
}

#[test]
fn optional_and_lenient_routes() {
    let rsa = Key::get(KeyName::RsaA);
    let good = rsa.token(Alg::RS256, &claims(json!({})));
    let expired = rsa.token(Alg::RS256, &claims(json!({"exp": NOW - 1000})));
    let mut a = auth();
    let mut m = FakeMetrics::default();
    let r = run(&mut a, request("GET", "/optional", &[]), &mut m);
    assert_eq!(r.check, Check::Continue);
    let r = run(
        &mut a,
        request("GET", "/optional", &[("authorization", &bearer(&expired))]),
        &mut m,
    );
    assert_eq!(r.reason(), Some(Reason::Expired));
    let r = run(
        &mut a,
        request("GET", "/optional", &[("authorization", &bearer(&good))]),
        &mut m,
    );
    assert!(r.ctx.identity.is_some());
    let r = run(
        &mut a,
        request("GET", "/lenient", &[("authorization", &bearer(&expired))]),
        &mut m,
    );
    assert_eq!(r.check, Check::Continue);
    assert!(r.ctx.identity.is_none());
    assert_eq!(
        r.header("authorization"),
        Some(bearer(&expired)),
        "a failed token is not touched"
    );
}

#[test]
fn hmac_only_when_configured() {
    let hmac = Key::get(KeyName::Hmac);
    let cfg = json!({"providers": {"h": {"local_jwks": {"inline_string": jwks(&[Key::get(KeyName::Hmac)])}, "algorithms": ["HS256", "HS512"]}},
                     "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "h"}}]});
    let mut a = JwtAuth::new(Rc::new(Config::parse(cfg.to_string().as_bytes()).unwrap()));
    let mut m = FakeMetrics::default();
    for (alg, ok) in [(Alg::HS256, true), (Alg::HS512, true), (Alg::HS384, false)] {
        let t = hmac.token(alg, &claims(json!({})));
        let r = run(
            &mut a,
            request("GET", "/", &[("authorization", &bearer(&t))]),
            &mut m,
        );
        assert_eq!(r.check == Check::Continue, ok, "{alg}");
    }
}

#[test]
fn the_cache_skips_verification_but_not_the_claims() {
    let rsa = Key::get(KeyName::RsaA);
    let t = rsa.token(Alg::RS256, &claims(json!({"exp": NOW + 100})));
    let mut a = auth();
    let mut m = FakeMetrics::default();
    for _ in 0..3 {
        assert_eq!(
            run(
                &mut a,
                request("GET", "/x", &[("authorization", &bearer(&t))]),
                &mut m
            )
            .check,
            Check::Continue
        );
    }
    assert_eq!(m.values["jwt_auth.verify.pure"], 1);
    assert_eq!(m.values["jwt_auth.cache.hit"], 2);
    assert_eq!(m.values["jwt_auth.cache.miss"], 1);
    // Past exp the entry is gone and the token is refused.
    let mut h = request("GET", "/x", &[("authorization", &bearer(&t))]);
    h.now_nanos = (NOW as u64 + 161) * NANOS;
    let r = run(&mut a, h, &mut m);
    assert_eq!(r.reason(), Some(Reason::Expired));
}

#[test]
fn peer_principals() {
    let cfg = json!({"rules": [{"match": {"prefix": "/internal"}, "peer_principals": ["spiffe://cluster.local/ns/a/*"]}]});
    let mut a = JwtAuth::new(Rc::new(Config::parse(cfg.to_string().as_bytes()).unwrap()));
    let mut m = FakeMetrics::default();
    let mut h = request("GET", "/internal/x", &[]);
    h.properties.insert(
        "connection.uri_san_peer_certificate".into(),
        b"spiffe://cluster.local/ns/a/sa/web".to_vec(),
    );
    let r = run(&mut a, h, &mut m);
    assert_eq!(r.check, Check::Continue);
    assert_eq!(
        r.ctx.identity.unwrap().subject,
        "spiffe://cluster.local/ns/a/sa/web"
    );
    let mut h = request("GET", "/internal/x", &[]);
    h.properties.insert(
        "connection.uri_san_peer_certificate".into(),
        b"spiffe://cluster.local/ns/b/sa/x".to_vec(),
    );
    assert_eq!(run(&mut a, h, &mut m).status(), Some(403));
    assert_eq!(
        run(&mut a, request("GET", "/internal/x", &[]), &mut m).reason(),
        Some(Reason::PeerNotAllowed)
    );
}

#[test]
fn publishes_identity_as_filter_state() {
    let rsa = Key::get(KeyName::RsaA);
    let t = rsa.token(Alg::RS256, &claims(json!({})));
    let mut a = auth();
    let mut m = FakeMetrics::default();
    let mut r = run(
        &mut a,
        request("GET", "/x", &[("authorization", &bearer(&t))]),
        &mut m,
    );
    publish(&mut r.host, &r.ctx);
    let id: Identity = serde_json::from_slice(&r.host.properties["portcullis.identity"]).unwrap();
    assert_eq!(id.subject, "alice");
    let d: JwtDecision = serde_json::from_slice(&r.host.properties["portcullis.jwt"]).unwrap();
    assert_eq!(d.outcome.label(), "allowed");
    assert!(!String::from_utf8_lossy(&r.host.properties["portcullis.identity"]).contains(&t[..20]));
}

mod remote {
    use super::*;
    use crate::key_store::HttpDispatch;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    struct Calls(u32);
    impl HttpDispatch for Calls {
        fn get(&mut self, _: &str, _: &str, _: &str, _: u64) -> Option<u32> {
            self.0 += 1;
            Some(self.0)
        }
    }

    fn remote_auth() -> JwtAuth {
        let cfg = json!({"providers": {"r": {"issuer": "https://issuer.test",
            "remote_jwks": {"http_uri": {"uri": "http://idp/jwks", "cluster": "idp", "timeout": "2s"}}}},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "r"}}]});
        JwtAuth::new(Rc::new(Config::parse(cfg.to_string().as_bytes()).unwrap()))
    }

    fn check(a: &mut JwtAuth, t: &str, mode: Mode, m: &mut FakeMetrics) -> (Check, FakeHost) {
        let mut h = request("GET", "/", &[("authorization", &bearer(t))]);
        let mut ctx = RequestContext::default();
        let c = a.check(&mut h, &mut ctx, &verifier::PureRust, m, mode);
        (c, h)
    }

    #[test]
    fn waits_for_the_first_key_set_then_503() {
        let mut a = remote_auth();
        let mut m = FakeMetrics::default();
        let t = Key::get(KeyName::RsaA).token(Alg::RS256, &claims(json!({})));
        let (c, _) = check(&mut a, &t, Mode::MayWait, &mut m);
        assert_eq!(
            c,
            Check::Wait {
                deadline: NOW as u64 * NANOS + 2 * NANOS
            }
        );
        let (c, h) = check(&mut a, &t, Mode::Final, &mut m);
        assert_eq!(c, Check::Responded(Reason::KeysUnavailable));
        assert_eq!(h.sent.unwrap().0, 503);
        // Nothing was verified, so nothing missed the cache.
        assert_eq!(m.values.get("jwt_auth.cache.miss"), None);
    }

    #[test]
    fn rotation_refetches_once_then_verifies() {
        let mut a = remote_auth();
        let mut m = FakeMetrics::default();
        let mut shared = FakeSharedData::default();
        let mut calls = Calls(0);
        let now = NOW as u64 * NANOS;
        a.keys
            .on_tick(now, &mut shared, &mut calls, &mut m, &|_, _| {});
        let old = jwks(&[Key::get(KeyName::RsaA)]);
        a.keys.on_response(
            1,
            Some(200),
            Some(old.as_bytes()),
            now,
            &mut shared,
            &mut calls,
            &mut m,
            &|_, _| {},
        );
        let rotated = Key::get(KeyName::RsaB).token(Alg::RS256, &claims(json!({})));
        let (c, _) = check(&mut a, &rotated, Mode::MayWait, &mut m);
        assert!(matches!(c, Check::Wait { .. }), "{c:?}");
        a.keys
            .on_tick(now, &mut shared, &mut calls, &mut m, &|_, _| {});
        assert_eq!(calls.0, 2, "one refetch");
        let new = jwks(&[Key::get(KeyName::RsaA), Key::get(KeyName::RsaB)]);
        a.keys.on_response(
            2,
            Some(200),
            Some(new.as_bytes()),
            now,
            &mut shared,
            &mut calls,
            &mut m,
            &|_, _| {},
        );
        let (c, _) = check(&mut a, &rotated, Mode::MayWait, &mut m);
        assert_eq!(c, Check::Continue);
        assert_eq!(m.values["jwt_auth.cache.miss"], 1, "waited, verified once");
        // Another unknown kid right after: rate-limited, rejected at once.
        let stranger = Key::get(KeyName::P256).token(Alg::ES256, &claims(json!({})));
        let (c, _) = check(&mut a, &stranger, Mode::MayWait, &mut m);
        assert_eq!(c, Check::Responded(Reason::UnknownKid));
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any bytes in any token location: a decision, never a panic.
        #[test]
        fn any_header_bytes_get_a_decision(
            value in proptest::collection::vec(any::<u8>(), 0..400),
            query in "[ -~]{0,80}",
        ) {
            let mut a = auth();
            let mut m = FakeMetrics::default();
            let mut h = request("GET", &format!("/x?{query}"), &[]);
            let mut bearer = b"Bearer ".to_vec();
            bearer.extend_from_slice(&value);
            h.request_headers.push(("authorization".into(), bearer));
            h.request_headers.push(("authorization".into(), value.clone()));
            h.request_headers.push(("cookie".into(), value));
            let r = run(&mut a, h, &mut m);
            prop_assert!(matches!(r.check, Check::Responded(_)));
        }
    }
}

/// A header change or a reply the proxy refuses never lets the request go
/// on: a refused strip or write answers 500 `host_error`; a refused reply
/// leaves the request paused (`Responded`) and is counted. Every counter
/// incremented is one `define_metrics` declared.
#[test]
fn refused_hostcalls_fail_closed() {
    let rsa = Key::get(KeyName::RsaA);
    let token = bearer(&rsa.token(Alg::RS256, &claims(json!({"scope": "read"}))));
    let query = format!(
        "/x?access_token={}",
        rsa.token(Alg::RS256, &claims(json!({})))
    );
    let remove = Faults {
        remove_request_header: true,
        ..Faults::default()
    };
    let set = Faults {
        set_request_header: true,
        ..Faults::default()
    };
    let send = Faults {
        send_response: true,
        ..Faults::default()
    };
    let all = Faults {
        set_request_header: true,
        remove_request_header: true,
        send_response: true,
    };
    /// (case, path, headers, faults, reason, reply sent)
    type Case<'a> = (
        &'a str,
        &'a str,
        Vec<(&'a str, &'a str)>,
        Faults,
        Reason,
        bool,
    );
    #[rustfmt::skip]
    let cases: Vec<Case> = vec![
        ("strip a spoofed identity header", "/public", vec![("x-sub", "root")], remove, Reason::HostError, true),
        ("strip it, then the reply fails too", "/public", vec![("x-sub", "root")], all, Reason::HostError, false),
        ("write a claim header", "/x", vec![("authorization", &token)], set, Reason::HostError, true),
        ("strip the token header", "/x", vec![("authorization", &token)], remove, Reason::HostError, true),
        ("write headers for a query token", &query, vec![], set, Reason::HostError, true),
        ("send a 401", "/x", vec![], send, Reason::TokenMissing, false),
        ("send a 403", "/api/x", vec![("authorization", &token)], send, Reason::InsufficientScope, false),
    ];
    let mut a = auth();
    let mut m = FakeMetrics::default();
    define_metrics(&mut m);
    let defined: Vec<String> = m.values.keys().cloned().collect();
    for (case, path, headers, faults, reason, sent) in cases {
        let mut host = request(
            if path == "/api/x" { "POST" } else { "GET" },
            path,
            &headers,
        );
        host.faults = faults;
        let failed_before = m.values[METRIC_SEND_FAILED];
        let denied_before = m.values[&reason.metric()];
        let r = run(&mut a, host, &mut m);
        assert_eq!(r.check, Check::Responded(reason), "{case}");
        let decision = r.ctx.jwt.as_ref().unwrap();
        assert_eq!(decision.reason, reason.label(), "{case}");
        assert_eq!(m.values[&reason.metric()], denied_before + 1, "{case}");
        assert_eq!(
            m.values[METRIC_SEND_FAILED] - failed_before,
            i64::from(!sent),
            "{case}"
        );
        if sent {
            assert_eq!(r.status(), Some(reason.status()), "{case}");
            assert_eq!(r.host.sent_details, Some(reason.details()), "{case}");
        } else {
            assert_eq!(r.status(), None, "{case}");
        }
        if reason == Reason::HostError {
            assert_eq!(r.ctx.identity, None, "{case}");
            assert_eq!(r.status().unwrap_or(500), 500, "{case}");
            assert_eq!(decision.outcome.label(), "error", "{case}");
        }
    }
    let after: Vec<String> = m.values.keys().cloned().collect();
    assert_eq!(after, defined, "a counter define_metrics does not declare");
}

#[test]
fn rejections_name_their_reason_as_response_code_details() {
    let mut a = auth();
    let mut m = FakeMetrics::default();
    let r = run(&mut a, request("GET", "/x", &[]), &mut m);
    assert_eq!(r.status(), Some(401));
    assert_eq!(
        r.host.sent_details.as_deref(),
        Some("jwt_auth_denied{token_missing}")
    );
    let rsa = Key::get(KeyName::RsaA);
    let expired = rsa.token(
        Alg::RS256,
        &claims(json!({"exp": NOW - 3600, "iat": NOW - 7200})),
    );
    let r = run(
        &mut a,
        request("GET", "/x", &[("authorization", &bearer(&expired))]),
        &mut m,
    );
    assert_eq!(
        r.host.sent_details.as_deref(),
        Some("jwt_auth_denied{expired}")
    );
}

/// With no claim headers to write, the writes that fail are the ones that
/// take the token out: the path without its query token, the cookie header
/// without the token's cookie (or without the cookie header at all).
#[test]
fn a_refused_token_strip_is_a_500() {
    let rsa = Key::get(KeyName::RsaA);
    let t = rsa.token(Alg::RS256, &claims(json!({})));
    let no_claims = json!({"claim_to_headers": [], "forward_payload_header": null});
    let mut cookies = no_claims.clone();
    cookies["from_cookies"] = json!(["session"]);
    let query = format!("/x?a=1&access_token={t}");
    let only = format!("session={t}");
    let more = format!("theme=dark; session={t}");
    let set = Faults {
        set_request_header: true,
        ..Faults::default()
    };
    let remove = Faults {
        remove_request_header: true,
        ..Faults::default()
    };
    #[rustfmt::skip]
    let cases = [
        ("query token", &no_claims, query.as_str(), None, set),
        ("the only cookie", &cookies, "/x", Some(only.as_str()), remove),
        ("one cookie of two", &cookies, "/x", Some(more.as_str()), set),
    ];
    for (case, provider, path, cookie, faults) in cases {
        let mut a = JwtAuth::new(Rc::new(local_config(provider.clone(), default_rules())));
        let mut m = FakeMetrics::default();
        // Without the fault the token is stripped and the request goes on.
        let headers: Vec<(&str, &str)> = cookie.map(|c| ("cookie", c)).into_iter().collect();
        let r = run(&mut a, request("GET", path, &headers), &mut m);
        assert_eq!(r.check, Check::Continue, "{case}");
        assert!(
            r.host
                .request_headers
                .iter()
                .all(|(_, v)| !String::from_utf8_lossy(v).contains(&t)),
            "{case}: token left in {:?}",
            r.host.request_headers
        );
        let mut host = request("GET", path, &headers);
        host.faults = faults;
        let r = run(&mut a, host, &mut m);
        assert_eq!(r.check, Check::Responded(Reason::HostError), "{case}");
        assert_eq!(r.status(), Some(500), "{case}");
        assert_eq!(r.ctx.identity, None, "{case}");
        assert_eq!(m.values["jwt_auth.denied.host_error"], 1, "{case}");
    }
}
