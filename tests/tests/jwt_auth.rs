//! jwt-auth in a real Envoy (`envoy/jwt-auth.yaml`, two workers): every
//! algorithm, the attacks, claims forwarding, anti-spoofing, authorization,
//! the identity channel, bad input, and the metrics. Local keys; the remote
//! JWKS life cycle is in `jwt_auth_remote.rs`.

use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::jwt_tokens::{claims, jwks, raw, TestKey};
use e2e::servers::EchoUpstream;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ISS: &str = "https://issuer.test";
const AUD: &str = "api";

struct Keys {
    rsa: TestKey,
    p256: TestKey,
    p384: TestKey,
    ed: TestKey,
    hmac: TestKey,
    stranger: TestKey,
}

fn keys() -> Keys {
    Keys {
        rsa: TestKey::rsa("rsa-1", 2048).unwrap(),
        p256: TestKey::p256("ec-256"),
        p384: TestKey::p384("ec-384"),
        ed: TestKey::ed25519("ed-1"),
        hmac: TestKey::hmac("hmac-1", &[7u8; 64]),
        stranger: TestKey::rsa("rsa-1", 2048).unwrap(),
    }
}

fn config(k: &Keys) -> String {
    json!({
        "realm": "portcullis-test",
        "providers": {
            "local": {
                "issuer": ISS,
                "audiences": [AUD],
                "local_jwks": {"inline_string": jwks(&[&k.rsa, &k.p256, &k.p384, &k.ed])},
                "claim_to_headers": [
                    {"header_name": "x-jwt-sub", "claim_name": "sub"},
                    {"header_name": "x-jwt-tier", "claim_name": "org.tier"},
                    {"header_name": "x-jwt-roles", "claim_name": "roles"}
                ],
                "forward_payload_header": "x-jwt-payload"
            },
            "cookie": {
                "issuer": ISS,
                "audiences": [AUD],
                "local_jwks": {"inline_string": jwks(&[&k.rsa])},
                "from_cookies": ["session"]
            },
            "hmac": {
                "issuer": "https://hmac.test",
                "local_jwks": {"inline_string": jwks(&[&k.hmac])},
                "algorithms": ["HS256", "HS384", "HS512"],
                "from_headers": [{"name": "x-hmac-token"}]
            }
        },
        "rules": [
            {"match": {"prefix": "/public"}},
            {"match": {"prefix": "/hmac"}, "requires": {"provider_name": "hmac"}},
            {"match": {"prefix": "/cookie"}, "requires": {"provider_name": "cookie"}},
            {"match": {"prefix": "/api", "methods": ["GET"]}, "requires": {"provider_name": "local"},
             "authorization": {"all": [{"claim": "scope", "contains": "read"}]}},
            {"match": {"prefix": "/api"}, "requires": {"provider_name": "local"},
             "authorization": {"all": [{"claim": "scope", "contains": "write"}]}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "local"}}
        ]
    })
    .to_string()
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    /// A header the upstream received (the echo upstream's body).
    fn upstream_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name][0].as_str().map(str::to_string)
    }
    fn reason(&self) -> String {
        self.json()["reason"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

async fn send(envoy: &Envoy, method: &str, path: &str, headers: &[(&str, &[u8])]) -> Reply {
    let client = reqwest::Client::new();
    let mut req = client.request(method.parse().unwrap(), envoy.url(path));
    for (k, v) in headers {
        req = req.header(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_bytes(v).unwrap(),
        );
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.unwrap_or_default();
    Reply {
        status,
        headers,
        body,
    }
}

async fn bearer(envoy: &Envoy, path: &str, token: &str) -> Reply {
    send(
        envoy,
        "GET",
        path,
        &[("authorization", format!("Bearer {token}").as_bytes())],
    )
    .await
}

fn tok(k: &TestKey, alg: &str, extra: Value) -> String {
    k.token(alg, &claims(ISS, AUD, "alice", 600, extra))
}

/// Waits for a line of Envoy's log containing `needle` (the stdout access
/// log is flushed every 100 ms here).
async fn log_line(envoy: &Envoy, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(l) = envoy.log().lines().find(|l| l.contains(needle)) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needle}:\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn local_keys_through_envoy() {
    let k = keys();
    let upstream = EchoUpstream::start().await.unwrap();
    let envoy = Envoy::start(
        EnvoyOptions::new("jwt-auth.yaml")
            .upstream(upstream.port())
            .plugin_config("jwt_auth", config(&k))
            .replace(
                "\"access: %REQ(:METHOD)%",
                "\"access: %REQ(x-test-id)% %REQ(:METHOD)%",
            )
            // The access log goes to stdout, flushed every 10 s by default.
            .arg("--file-flush-interval-msec")
            .arg("100"),
    )
    .await
    .unwrap();

    // Every algorithm, through Envoy.
    for key in [&k.rsa, &k.p256, &k.p384, &k.ed] {
        for alg in key.algs() {
            let r = bearer(&envoy, "/x", &tok(key, alg, json!({}))).await;
            assert_eq!(r.status, 200, "{alg}: {}", r.body);
        }
    }
    for alg in k.hmac.algs() {
        let t = k.hmac.token(
            alg,
            &claims("https://hmac.test", AUD, "svc", 600, json!({})),
        );
        let r = send(&envoy, "GET", "/hmac", &[("x-hmac-token", t.as_bytes())]).await;
        assert_eq!(r.status, 200, "{alg}: {}", r.body);
    }

    // Missing token: 401 with a bare challenge.
    let r = send(&envoy, "GET", "/x", &[]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        r.headers["www-authenticate"],
        "Bearer realm=\"portcullis-test\""
    );
    assert_eq!(r.reason(), "token_missing");

    // The attacks.
    let c = claims(ISS, AUD, "alice", 600, json!({}));
    let good = tok(&k.rsa, "RS256", json!({}));
    let (input, _) = good.rsplit_once('.').unwrap();
    let ec = tok(&k.p256, "ES256", json!({}));
    let public_der = k.rsa.jwk()["n"].as_str().unwrap().as_bytes().to_vec();
    let confused = TestKey::hmac("rsa-1", &public_der).token("HS256", &c);
    let attacks: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            raw(&json!({"alg": "none"}), &c, b""),
            "alg_not_allowed",
        ),
        (
            "alg None",
            raw(&json!({"alg": "None", "kid": "rsa-1"}), &c, b"x"),
            "alg_not_allowed",
        ),
        (
            "alg NONE",
            raw(&json!({"alg": "NONE"}), &c, b""),
            "alg_not_allowed",
        ),
        ("hmac with the rsa key", confused, "alg_not_allowed"),
        (
            "ecdsa r = s = 0",
            format!("{}.{}", ec.rsplit_once('.').unwrap().0, "A".repeat(86)),
            "bad_signature",
        ),
        (
            "embedded jwk",
            k.stranger.sign_with_header(
                &json!({"alg": "RS256", "kid": "rsa-1", "jwk": k.stranger.jwk()}),
                &c,
            ),
            "bad_signature",
        ),
        (
            "jku",
            k.stranger.sign_with_header(
                &json!({"alg": "RS256", "kid": "rsa-1", "jku": "http://127.0.0.1:1/x"}),
                &c,
            ),
            "bad_signature",
        ),
        (
            "kid injection",
            k.rsa
                .sign_with_header(&json!({"alg": "RS256", "kid": "../../../dev/null"}), &c),
            "unknown_kid",
        ),
        (
            "kid of another key type",
            k.rsa
                .sign_with_header(&json!({"alg": "RS256", "kid": "ec-256"}), &c),
            "no_matching_key",
        ),
        (
            "tampered payload",
            format!(
                "{}.{}.{}",
                input.split('.').next().unwrap(),
                raw(&json!({}), &claims(ISS, AUD, "root", 600, json!({})), b"")
                    .split('.')
                    .nth(1)
                    .unwrap(),
                good.rsplit('.').next().unwrap()
            ),
            "bad_signature",
        ),
        (
            "tampered signature",
            format!("{input}.{}", "A".repeat(342)),
            "bad_signature",
        ),
        (
            "crit",
            k.rsa.sign_with_header(
                &json!({"alg": "RS256", "kid": "rsa-1", "crit": ["exp"]}),
                &c,
            ),
            "unsupported_crit",
        ),
        (
            "expired beyond skew",
            tok(
                &k.rsa,
                "RS256",
                json!({"exp": e2e::tokens::now_secs() as i64 - 61}),
            ),
            "expired",
        ),
        (
            "nbf beyond skew",
            tok(
                &k.rsa,
                "RS256",
                json!({"nbf": e2e::tokens::now_secs() as i64 + 120}),
            ),
            "not_yet_valid",
        ),
        (
            "exp as a string",
            tok(&k.rsa, "RS256", json!({"exp": "2099-01-01"})),
            "bad_time_claim",
        ),
        (
            "absurd exp",
            tok(&k.rsa, "RS256", json!({"exp": 1e300})),
            "bad_time_claim",
        ),
        (
            "wrong issuer",
            tok(&k.rsa, "RS256", json!({"iss": "https://evil.test"})),
            "issuer_mismatch",
        ),
        (
            "wrong audience",
            tok(&k.rsa, "RS256", json!({"aud": ["other"]})),
            "audience_mismatch",
        ),
        ("garbage", "not.a.jwt".to_string(), "malformed"),
    ];
    for (name, token, reason) in &attacks {
        let r = bearer(&envoy, "/x", token).await;
        let want = if *reason == "audience_mismatch" {
            403
        } else {
            401
        };
        assert_eq!(r.status, want, "{name}: {}", r.body);
        assert_eq!(&r.reason(), reason, "{name}");
        let challenge = r.headers["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert!(
            !r.body.contains(token.as_str()),
            "{name}: the token is echoed"
        );
    }
    // Still within the skew: accepted.
    let r = bearer(
        &envoy,
        "/x",
        &tok(
            &k.rsa,
            "RS256",
            json!({"exp": e2e::tokens::now_secs() as i64 - 30}),
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Claims forwarding; spoofed headers stripped; token removed (forward: false).
    let t = tok(
        &k.rsa,
        "RS256",
        json!({"org": {"tier": "gold"}, "roles": ["viewer", "editor"]}),
    );
    let auth = format!("Bearer {t}");
    let r = send(
        &envoy,
        "GET",
        "/x",
        &[
            ("authorization", auth.as_bytes()),
            ("x-jwt-sub", b"root"),
            ("x-jwt-tier", b"platinum"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.upstream_header("x-jwt-sub").as_deref(), Some("alice"));
    assert_eq!(r.upstream_header("x-jwt-tier").as_deref(), Some("gold"));
    assert_eq!(
        r.upstream_header("x-jwt-roles").as_deref(),
        Some(r#"["viewer","editor"]"#)
    );
    assert_eq!(
        r.upstream_header("x-jwt-payload").as_deref(),
        t.split('.').nth(1)
    );
    assert_eq!(r.upstream_header("authorization"), None);
    let r = send(
        &envoy,
        "GET",
        "/public/x",
        &[("x-jwt-sub", b"root"), ("x-jwt-payload", b"e30")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.upstream_header("x-jwt-sub"),
        None,
        "stripped without a token too"
    );
    assert_eq!(r.upstream_header("x-jwt-payload"), None);

    // Authorization by method and path: a reader can read, not write.
    let reader = tok(&k.rsa, "RS256", json!({"scope": "read"}));
    let writer = tok(&k.rsa, "RS256", json!({"scope": "read write"}));
    assert_eq!(bearer(&envoy, "/api/items", &reader).await.status, 200);
    let post = |t: &str| format!("Bearer {t}");
    let r = send(
        &envoy,
        "POST",
        "/api/items",
        &[("authorization", post(&reader).as_bytes())],
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"insufficient_scope\""));
    assert_eq!(r.reason(), "insufficient_scope");
    let r = send(
        &envoy,
        "POST",
        "/api/items",
        &[("authorization", post(&writer).as_bytes())],
    )
    .await;
    assert_eq!(r.status, 200);
    let r = bearer(
        &envoy,
        "/api/items",
        &tok(&k.rsa, "RS256", json!({"scope": "profile"})),
    )
    .await;
    assert_eq!(r.status, 403);

    // The identity channel: filter state, which a client cannot forge.
    let forged = json!({"provider": "local", "issuer": ISS, "subject": "root"}).to_string();
    let r = send(
        &envoy,
        "GET",
        "/public/forge",
        &[
            ("x-test-id", b"forge-1"),
            ("portcullis.identity", forged.as_bytes()),
            ("wasm.portcullis.identity", forged.as_bytes()),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    let line = log_line(&envoy, "access: forge-1 ").await;
    assert!(line.contains("identity=- "), "{line}");
    assert!(line.contains(r#""outcome":"unauthenticated""#), "{line}");
    let r = send(
        &envoy,
        "GET",
        "/x",
        &[("x-test-id", b"real-1"), ("authorization", auth.as_bytes())],
    )
    .await;
    assert_eq!(r.status, 200);
    let line = log_line(&envoy, "access: real-1 ").await;
    assert!(line.contains(r#""subject":"alice""#), "{line}");
    assert!(line.contains(r#""issuer":"https://issuer.test""#), "{line}");
    assert!(!line.contains(&t), "the token is never logged");
    let r = send(&envoy, "GET", "/x", &[("x-test-id", b"denied-1")]).await;
    assert_eq!(r.status, 401);
    let line = log_line(&envoy, "access: denied-1 ").await;
    assert!(line.contains(r#""reason":"token_missing""#), "{line}");

    // Bad input never traps the VM.
    let huge = format!("Bearer a.{}.b", "A".repeat(50_000));
    let bad_inputs: Vec<Vec<u8>> = vec![
        b"Bearer \xff\xfe\xfd".to_vec(),
        b"Bearer eyJ\x80.eyJ.\xff".to_vec(),
        huge.into_bytes(),
        b"Bearer ....".to_vec(),
        b"bEaReR  ".to_vec(),
        format!("Bearer {}", "a.".repeat(2000)).into_bytes(),
    ];
    for v in &bad_inputs {
        let r = send(&envoy, "GET", "/x", &[("authorization", v)]).await;
        assert_eq!(r.status, 401, "{:.60}", String::from_utf8_lossy(v));
    }
    // Duplicated headers: every token must verify.
    let dup = send(
        &envoy,
        "GET",
        "/x",
        &[
            ("authorization", auth.as_bytes()),
            ("authorization", b"Bearer x.y.z"),
        ],
    )
    .await;
    assert_eq!(dup.status, 401);
    let same = send(
        &envoy,
        "GET",
        "/x",
        &[
            ("authorization", auth.as_bytes()),
            ("authorization", auth.as_bytes()),
        ],
    )
    .await;
    assert_eq!(same.status, 200);
    // A token in a cookie (forward: false): verified, then removed from the
    // cookie header while the session's other cookies go on.
    let cookie = format!("a=1; session={good}; b=2");
    let r = send(&envoy, "GET", "/cookie", &[("cookie", cookie.as_bytes())]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.upstream_header("cookie").as_deref(), Some("a=1; b=2"));
    assert!(!r.body.contains(&good));
    // The VM is alive and well after all that.
    assert_eq!(bearer(&envoy, "/x", &good).await.status, 200);
    let log = envoy.log();
    assert!(
        !log.contains("panicked") && !log.contains("wasm trap"),
        "{log}"
    );

    // Metrics.
    let stats = envoy.stats().await.unwrap();
    assert!(
        stats.custom("jwt_auth.allowed") >= 15,
        "{:?}",
        stats.matching("jwt_auth")
    );
    assert!(stats.custom("jwt_auth.denied.token_missing") >= 2);
    assert!(stats.custom("jwt_auth.denied.alg_not_allowed") >= 4);
    assert!(stats.custom("jwt_auth.denied.bad_signature") >= 5);
    assert!(stats.custom("jwt_auth.denied.insufficient_scope") >= 2);
    assert!(stats.custom("jwt_auth.denied.malformed") >= 5);
    assert!(stats.custom("jwt_auth.unauthenticated") >= 2);
    // RS*/ES* went through Envoy's BoringSSL, PS*/EdDSA/HS* through pure Rust.
    assert!(
        stats.custom("jwt_auth.verify.host") >= 5,
        "{:?}",
        stats.matching("verify")
    );
    assert!(
        stats.custom("jwt_auth.verify.pure") >= 7,
        "{:?}",
        stats.matching("verify")
    );
    assert!(
        stats.custom("jwt_auth.cache.hit") >= 1,
        "{:?}",
        stats.matching("cache")
    );
    assert!(stats.custom("jwt_auth.cache.miss") >= 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_envoy_fields_are_refused_by_name() {
    let cfg = json!({"providers": {"p": {"remote_jwks": {"http_uri": {"uri": "http://127.0.0.1:1/j", "cluster": "jwks"}},
                                         "payload_in_metadata": "jwt"}}});
    let log = Envoy::start_expecting_failure(
        EnvoyOptions::new("jwt-auth.yaml").plugin_config("jwt_auth", cfg.to_string()),
    )
    .await
    .unwrap();
    assert!(
        log.contains("providers.p.payload_in_metadata: not supported: a wasm filter cannot write dynamic metadata"),
        "{log}"
    );
    let weak = TestKey::rsa("weak", 1024).unwrap();
    let cfg = json!({"providers": {"p": {"local_jwks": {"inline_string": jwks(&[&weak])}}}});
    let log = Envoy::start_expecting_failure(
        EnvoyOptions::new("jwt-auth.yaml").plugin_config("jwt_auth", cfg.to_string()),
    )
    .await
    .unwrap();
    assert!(
        log.contains("providers.p.local_jwks.inline_string: keys[0]: RSA key has 1024 bits"),
        "{log}"
    );
}
