//! Each local reply names its reason in Envoy's response code details
//! (`%RESPONSE_CODE_DETAILS%`), as Envoy's own filters do: a 401 and a 403
//! from jwt-auth, a 429 from rate-limit, through the `chain` module and
//! through the standalone filters. Read from a real Envoy access log.

use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::servers::{Collector, EchoUpstream, JwksServer};
use e2e::tokens::RsaIssuer;
use reqwest::{Client, Method};
use serde_json::json;
use std::time::{Duration, Instant};

const ISSUER: &str = "https://issuer.demo.local";
const AUDIENCE: &str = "demo-api";

/// An access log line per request: status, details, method and path.
fn access_log(path: &std::path::Path) -> String {
    format!(
        "          stat_prefix: ingress
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {}
              log_format:
                text_format_source:
                  inline_string: \"details: %RESPONSE_CODE% %RESPONSE_CODE_DETAILS% %REQ(:METHOD)% %REQ(:PATH)%\\n\"
",
        path.display()
    )
}

async fn scenario(config: &str) {
    let issuer = RsaIssuer::new(ISSUER, "k1").unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let jwks = JwksServer::start(&issuer.jwks()).await.unwrap();
    // The chain's audit events go somewhere real.
    let collector = Collector::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let envoy = Envoy::start(
        EnvoyOptions::new(config)
            .replace("          stat_prefix: ingress\n", &access_log(&log))
            // The per-user rule (burst 8) must not refill mid-test.
            .replace(r#""unit": "minute""#, r#""unit": "hour""#)
            .upstream(upstream.port())
            .jwks(jwks.port())
            .collector(collector.port())
            .arg("--file-flush-interval-msec")
            .arg("50"),
    )
    .await
    .unwrap();
    let alice = issuer.token("alice", AUDIENCE, 600, json!({"scope": "read"}));
    let client = Client::new();
    let send = |method: Method, path: &str, token: Option<&str>| {
        let mut req = client.request(method, envoy.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };

    assert_eq!(
        send(Method::GET, "/api/missing", None).await,
        401,
        "{config}"
    );
    assert_eq!(
        send(Method::POST, "/api/scope", Some(&alice)).await,
        403,
        "{config}"
    );
    // The per-user rule (burst 8): the 9th request is refused.
    let mut codes = Vec::new();
    for i in 0..9 {
        codes.push(send(Method::GET, &format!("/api/n{i}"), Some(&alice)).await);
    }
    assert_eq!(
        codes.iter().filter(|c| **c == 200).count(),
        8,
        "{config}: {codes:?}"
    );
    assert_eq!(codes.last(), Some(&429), "{config}: {codes:?}");

    // Eleven requests, eleven lines (each written when its stream ends).
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 11 {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "{config}: access log has {} lines:\n{text}\nenvoy log:\n{}",
            text.lines().count(),
            envoy.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let line = |path: &str| {
        text.lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{config}: no line for {path}:\n{text}"))
            .to_string()
    };
    assert_eq!(
        line("/api/missing"),
        "details: 401 jwt_auth_denied{token_missing} GET /api/missing",
        "{config}"
    );
    assert_eq!(
        line("/api/scope"),
        "details: 403 jwt_auth_denied{insufficient_scope} POST /api/scope",
        "{config}"
    );
    assert_eq!(
        line("/api/n8"),
        "details: 429 rate_limited{per-user} GET /api/n8",
        "{config}"
    );
    // An allowed request carries Envoy's own details.
    assert_eq!(
        line("/api/n0"),
        "details: 200 via_upstream GET /api/n0",
        "{config}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chain_module_names_each_reason() {
    scenario("chain.yaml").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_standalone_filters_name_each_reason() {
    scenario("chain-filters.yaml").await;
}
