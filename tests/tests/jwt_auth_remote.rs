//! jwt-auth with a remote JWKS in a real Envoy (two workers): one fetch for
//! all workers, key rotation through an unknown-`kid` refetch, 503 before
//! the first key set, stale-if-error when the JWKS server goes down or
//! answers garbage.

use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::jwt_tokens::{claims, jwks, TestKey};
use e2e::servers::{Canned, EchoUpstream, JwksServer};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ISS: &str = "https://issuer.demo.local";
const AUD: &str = "demo-api";

static JTI: AtomicU64 = AtomicU64::new(0);

/// A token nobody has sent before (so the verified-token cache misses).
fn fresh(k: &TestKey) -> String {
    let jti = JTI.fetch_add(1, Ordering::Relaxed);
    k.token(
        "RS256",
        &claims(
            ISS,
            AUD,
            "alice",
            600,
            json!({"jti": jti.to_string(), "scope": "read"}),
        ),
    )
}

async fn get(envoy: &Envoy, token: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(envoy.url("/x"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The demo provider, with another cache duration and timeout.
fn config(jwks_port: u16, cache: &str, timeout: &str) -> String {
    json!({
        "providers": {"demo": {
            "issuer": ISS, "audiences": [AUD],
            "remote_jwks": {
                "http_uri": {"uri": format!("http://127.0.0.1:{jwks_port}/jwks.json"), "cluster": "jwks", "timeout": timeout},
                "cache_duration": cache
            }
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "demo"}}]
    })
    .to_string()
}

async fn eventually_200(envoy: &Envoy, k: &TestKey, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (status, body) = get(envoy, &fresh(k)).await;
        if status == 200 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "still {status} {body}:\n{}",
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_refetches_once_for_all_workers() {
    let a = TestKey::rsa("key-a", 2048).unwrap();
    let b = TestKey::rsa("key-b", 2048).unwrap();
    let c = TestKey::rsa("key-c", 2048).unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let server = JwksServer::start(&jwks(&[&a])).await.unwrap();
    // The demo config as shipped (600 s cache), pointed at this JWKS server.
    let envoy = Envoy::start(
        EnvoyOptions::new("jwt-auth.yaml")
            .upstream(upstream.port())
            .jwks(server.port()),
    )
    .await
    .unwrap();
    eventually_200(&envoy, &a, Duration::from_secs(5)).await;
    for _ in 0..10 {
        assert_eq!(get(&envoy, &fresh(&a)).await.0, 200);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.fetches(), 1, "one fetch for every worker");

    // Rotation: a token from a new key is accepted at once, after one refetch.
    server.set_jwks(&jwks(&[&a, &b]));
    let (status, body) = get(&envoy, &fresh(&b)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.fetches(), 2);
    for _ in 0..10 {
        assert_eq!(get(&envoy, &fresh(&b)).await.0, 200);
        assert_eq!(get(&envoy, &fresh(&a)).await.0, 200);
    }
    // Another unknown kid right after: the refetch is rate-limited.
    let (status, body) = get(&envoy, &fresh(&c)).await;
    assert_eq!(status, 401);
    assert_eq!(body["reason"], "unknown_kid");
    assert_eq!(server.fetches(), 2);

    let stats = envoy.stats().await.unwrap();
    assert_eq!(
        stats.custom("jwt_auth.jwks.fetch_ok"),
        2,
        "{:?}",
        stats.matching("jwt_auth")
    );
    assert_eq!(stats.custom("jwt_auth.jwks.fetch_failed"), 0);
    assert_eq!(stats.custom("jwt_auth.denied.unknown_kid"), 1);
    assert!(stats.custom("jwt_auth.verify.host") >= 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_server_down_at_start_and_mid_run() {
    let a = TestKey::rsa("key-a", 2048).unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let server = JwksServer::start(&jwks(&[&a])).await.unwrap();
    server.0.down();
    let envoy = Envoy::start(
        EnvoyOptions::new("jwt-auth.yaml")
            .upstream(upstream.port())
            .jwks(server.port())
            .plugin_config("jwt_auth", config(server.port(), "2s", "0.5s")),
    )
    .await
    .unwrap();

    // No keys yet: the request waits for the fetch timeout, then 503.
    let (status, body) = get(&envoy, &fresh(&a)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["reason"], "keys_unavailable");
    let stats = envoy.stats().await.unwrap();
    assert!(stats.custom("jwt_auth.jwks.fetch_failed") >= 1);
    assert!(stats.custom("jwt_auth.denied.keys_unavailable") >= 1);

    // The server comes up: keys arrive without a restart.
    server.0.up().await.unwrap();
    eventually_200(&envoy, &a, Duration::from_secs(5)).await;
    let before = server.fetches();
    let started = Instant::now();
    // Refreshed before the 2 s cache_duration ends, by one VM for all.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let refreshes = server.fetches() - before;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(refreshes >= 1, "no background refresh");
    assert!(
        (refreshes as f64) <= elapsed / 1.6 + 1.0,
        "{refreshes} refreshes in {elapsed:.1}s"
    );
    assert_eq!(get(&envoy, &fresh(&a)).await.0, 200);

    // Down mid-run: the last good set stays in use.
    let failed = envoy
        .stats()
        .await
        .unwrap()
        .custom("jwt_auth.jwks.fetch_failed");
    server.0.down();
    tokio::time::sleep(Duration::from_millis(3000)).await;
    for _ in 0..5 {
        let (status, body) = get(&envoy, &fresh(&a)).await;
        assert_eq!(status, 200, "{body}");
    }
    let stats = envoy.stats().await.unwrap();
    assert!(
        stats.custom("jwt_auth.jwks.fetch_failed") > failed,
        "{:?}",
        stats.matching("jwks")
    );

    // Back up but broken (garbage, then an error status): still the last good set.
    server.0.up().await.unwrap();
    server.set_answer(Canned::json("{\"keys\": \"garbage\"}"));
    let failed = envoy
        .stats()
        .await
        .unwrap()
        .custom("jwt_auth.jwks.fetch_failed");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.set_answer(Canned::status(500));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Slower than the fetch timeout.
    server.set_answer(Canned::json(jwks(&[&a])).with_delay(Duration::from_secs(2)));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for _ in 0..5 {
        assert_eq!(get(&envoy, &fresh(&a)).await.0, 200);
    }
    assert!(
        envoy
            .stats()
            .await
            .unwrap()
            .custom("jwt_auth.jwks.fetch_failed")
            > failed
    );
    let log = envoy.log();
    assert!(log.contains("keeping the last good key set"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn oidc_discovery_finds_the_keys() {
    let a = TestKey::rsa("key-a", 2048).unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let server = JwksServer::start(&jwks(&[&a])).await.unwrap();
    server
        .set_discovery(&json!({"issuer": ISS, "jwks_uri": format!("{ISS}/jwks.json")}).to_string());
    let cfg = json!({
        "providers": {"demo": {"issuer": ISS, "audiences": [AUD], "oidc_discovery": {"cluster": "jwks"}}},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "demo"}}]
    });
    let envoy = Envoy::start(
        EnvoyOptions::new("jwt-auth.yaml")
            .upstream(upstream.port())
            .jwks(server.port())
            .plugin_config("jwt_auth", cfg.to_string()),
    )
    .await
    .unwrap();
    eventually_200(&envoy, &a, Duration::from_secs(5)).await;
    let discovery = server.0.received_on(JwksServer::DISCOVERY_PATH);
    assert_eq!(discovery.len(), 1, "one discovery for every worker");
    assert_eq!(discovery[0].header("host"), Some("issuer.demo.local"));
    assert_eq!(server.fetches(), 1);
}
