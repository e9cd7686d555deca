//! The full chain, as one module (`envoy/chain.yaml`) and as three filters
//! (`envoy/chain-filters.yaml`): the same requests get the same decisions,
//! the identity verified by jwt-auth keys rate-limit and reaches audit-log
//! (in memory in the module, through filter state across filters), and the
//! audit events carry every decision and no secret.

use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::servers::{Collector, EchoUpstream, JwksServer};
use e2e::tokens::RsaIssuer;
use reqwest::{Client, Method};
use serde_json::{json, Value};

const ISSUER: &str = "https://issuer.demo.local";
const AUDIENCE: &str = "demo-api";

struct World {
    envoy: Envoy,
    issuer: RsaIssuer,
    collector: Collector,
    upstream: EchoUpstream,
    _jwks: JwksServer,
}

async fn start(config: &str) -> World {
    let issuer = RsaIssuer::new(ISSUER, "k1").unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let jwks = JwksServer::start(&issuer.jwks()).await.unwrap();
    let collector = Collector::start().await.unwrap();
    let envoy = Envoy::start(
        EnvoyOptions::new(config)
            // The per-user rule refills one request every 3 s; per hour, a
            // slow machine cannot earn an extra request mid-test.
            .replace(r#""unit": "minute""#, r#""unit": "hour""#)
            .upstream(upstream.port())
            .jwks(jwks.port())
            .collector(collector.port()),
    )
    .await
    .unwrap();
    World {
        envoy,
        issuer,
        collector,
        upstream,
        _jwks: jwks,
    }
}

async fn send(w: &World, method: Method, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = Client::new().request(method, w.envoy.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn events(c: &Collector, min: usize) -> Vec<Value> {
    c.events_until(|es| es.len() >= min).await
}

async fn scenario(config: &str) {
    let w = start(config).await;
    let alice = w.issuer.token(
        "alice",
        AUDIENCE,
        600,
        json!({"scope": "read", "roles": ["viewer"]}),
    );
    let bob = w
        .issuer
        .token("bob", AUDIENCE, 600, json!({"scope": "read write"}));

    // Who may do what.
    assert_eq!(
        send(&w, Method::GET, "/api/items", None).await.0,
        401,
        "{config}"
    );
    let (status, body) = send(&w, Method::GET, "/api/items", Some(&alice)).await;
    assert_eq!(status, 200, "{config}");
    assert_eq!(body["headers"]["x-jwt-sub"], json!(["alice"]), "{config}");
    assert_eq!(
        send(&w, Method::POST, "/api/items", Some(&alice)).await.0,
        403,
        "{config}"
    );
    assert_eq!(
        send(&w, Method::POST, "/api/items", Some(&bob)).await.0,
        200,
        "{config}"
    );

    // The per-user rule (burst 8) keys on the verified identity: alice runs
    // out, bob from the same address does not.
    let mut alice_codes = Vec::new();
    for _ in 0..10 {
        alice_codes.push(send(&w, Method::GET, "/api/items", Some(&alice)).await.0);
    }
    assert_eq!(
        alice_codes.iter().filter(|c| **c == 200).count(),
        7,
        "{config}: {alice_codes:?}"
    );
    assert!(
        alice_codes.ends_with(&[429, 429, 429]),
        "{config}: {alice_codes:?}"
    );
    assert_eq!(
        send(&w, Method::GET, "/api/items", Some(&bob)).await.0,
        200,
        "{config}"
    );
    // A forged identity header is stripped and does not pick a bucket.
    let r = Client::new()
        .get(w.envoy.url("/api/items"))
        .bearer_auth(&bob)
        .header("x-jwt-sub", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{config}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["headers"]["x-jwt-sub"], json!(["bob"]), "{config}");

    // Every decision reached the audit log, with the principal.
    let evs = events(&w.collector, 16).await;
    assert_eq!(evs.len(), 16, "{config}: {evs:#?}");
    let by_status = |s: u16| -> Vec<&Value> {
        evs.iter()
            .filter(|e| e["http"]["response"]["status_code"] == json!(s))
            .collect()
    };
    let e401 = by_status(401);
    assert_eq!(e401.len(), 1, "{config}");
    assert_eq!(
        e401[0]["decision"]["jwt"]["reason"], "token_missing",
        "{config}"
    );
    let e403 = by_status(403);
    assert_eq!(e403.len(), 1, "{config}");
    assert_eq!(
        e403[0]["decision"]["jwt"]["reason"], "insufficient_scope",
        "{config}"
    );
    let e429 = by_status(429);
    assert_eq!(e429.len(), 3, "{config}");
    for e in &e429 {
        assert_eq!(
            e["decision"]["rate_limit"]["outcome"], "limited",
            "{config}"
        );
        assert_eq!(e["decision"]["rate_limit"]["rule"], "per-user", "{config}");
        assert_eq!(e["user"]["id"], "alice", "{config}");
        assert_eq!(e["user"]["issuer"], ISSUER, "{config}");
    }
    // No token in any byte the collector or the upstream received, or in
    // Envoy's log.
    let collected = w.collector.all_bytes();
    let text = String::from_utf8_lossy(&collected);
    let upstream_seen: String = w
        .upstream
        .received()
        .iter()
        .flat_map(|r| r.headers.iter().map(|(_, v)| v.clone()))
        .collect();
    for t in [&alice, &bob] {
        assert!(
            !text.contains(t.as_str()),
            "{config}: a token reached the collector"
        );
        assert!(
            !w.envoy.log().contains(t.as_str()),
            "{config}: a token reached Envoy's log"
        );
        // `forward` defaults to false, as in Envoy: the token stops here.
        assert!(
            !upstream_seen.contains(t.as_str()),
            "{config}: forward: false"
        );
    }
    let report = audit_log::chain_verify::verify(&text);
    assert!(report.is_ok(), "{config}: {report:?}");
    let stats = w.envoy.stats().await.unwrap();
    assert!(stats.custom("audit_log.emitted") > 0, "{config}");
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_module() {
    scenario("chain.yaml").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chain_as_three_filters() {
    scenario("chain-filters.yaml").await;
}
