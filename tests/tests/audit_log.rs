//! audit-log in a real Envoy, shipping to the real test collector.

use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::servers::{Canned, Collector, EchoUpstream};
use reqwest::header::HeaderValue;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use audit_log::chain_verify;

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzZWNyZXQtdXNlciJ9.c2VjcmV0LXNpZ25hdHVyZQ";
const COOKIE_SECRET: &str = "cookie-secret-4711";
const API_KEY_SECRET: &str = "apikey-secret-0815";
const QUERY_SECRET: &str = "query-secret-1234";

/// Polls `f` every 50 ms until it holds; fails after `secs`.
async fn wait_until<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn lines_on(collector: &Collector, path: &str) -> Vec<Value> {
    collector
        .received()
        .into_iter()
        .filter(|r| r.path == path)
        .flat_map(|r| {
            String::from_utf8_lossy(&r.body)
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("every line is JSON"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn ndjson(events: &[Value]) -> String {
    events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

async fn stat(envoy: &Envoy, name: &str) -> i64 {
    envoy.stats().await.expect("Envoy stats").custom(name)
}

/// No secret sent by the client appears in `bytes`.
fn assert_no_secrets(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for secret in [
        TOKEN,
        "c2VjcmV0LXNpZ25hdHVyZQ",
        COOKIE_SECRET,
        API_KEY_SECRET,
        QUERY_SECRET,
    ] {
        assert!(!text.contains(secret), "{what} contains {secret}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_in_both_formats_verifiable_per_worker_and_without_secrets() {
    let upstream = EchoUpstream::start().await.unwrap();
    upstream.0.set("/denied/401", Canned::status(401));
    upstream.0.set("/denied/403", Canned::status(403));
    upstream.0.set("/denied/429", Canned::status(429));
    let collector = Collector::start().await.unwrap();
    let config = r#"{
      "sinks": {"log": {}, "http": [
        {"cluster": "collector", "path": "/ingest", "flush_interval_ms": 100},
        {"cluster": "collector", "path": "/_bulk", "format": "elasticsearch_bulk",
         "index": "audit-e2e", "flush_interval_ms": 100}
      ]},
      "query_params": ["page", "q"],
      "headers": [{"name": "x-tenant-id", "label": "tenant"}],
      "sampling": {"allowed_rate": 0.0, "include": [{"prefix": "/"}]}
    }"#;
    // allowed_rate 0 on purpose: only denials and errors are logged, plus
    // the `x-request-id`s the rate lets through (none).
    let envoy = Envoy::start(
        EnvoyOptions::new("audit-log.yaml")
            .concurrency(2)
            .upstream(upstream.port())
            .collector(collector.port())
            .plugin_config("audit_log", config),
    )
    .await
    .unwrap();
    // Allowed requests, sampled out.
    let plain = reqwest::Client::new();
    for i in 0..5 {
        let r = plain
            .get(envoy.url(&format!("/ok/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Denials, over fresh connections so both workers see some.
    let mut sent = 0;
    for i in 0..40 {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let status = [401, 403, 429][i % 3];
        let r = client
            .get(envoy.url(&format!(
                "/denied/{status}?page={i}&access_token={QUERY_SECRET}&q=Bearer%20{TOKEN}"
            )))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("cookie", format!("session={COOKIE_SECRET}"))
            .header("x-api-key", API_KEY_SECRET)
            .header("x-tenant-id", "acme")
            .header("x-request-id", format!("req-{i}"))
            .header("user-agent", format!("e2e/{TOKEN}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        sent += 1;
    }
    // Hostile headers do not trap the VM nor disturb traffic.
    let r = plain
        .get(envoy.url("/denied/403"))
        .header(
            "x-tenant-id",
            HeaderValue::from_bytes(b"\xff\xfe bin \x80").unwrap(),
        )
        .header("user-agent", "U".repeat(30_000))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    sent += 1;

    wait_until(20, "every event in both formats", || async {
        lines_on(&collector, "/ingest").len() == sent
            && lines_on(&collector, "/_bulk").len() == 2 * sent
    })
    .await;
    let events = lines_on(&collector, "/ingest");

    // The chains hold, one per worker.
    let report = chain_verify::verify(&ndjson(&events));
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.producers.len(), 2, "{report}");
    // And deleting one event is caught.
    let mut tampered = events.clone();
    tampered.remove(3);
    assert!(!chain_verify::verify(&ndjson(&tampered)).is_ok());

    // The _bulk body: action lines with a stable _id, then the same events.
    let bulk = lines_on(&collector, "/_bulk");
    for pair in bulk.chunks(2) {
        let id = pair[0]["create"]["_id"].as_str().unwrap();
        assert_eq!(pair[0]["create"]["_index"], "audit-e2e");
        let audit = &pair[1]["audit"];
        assert_eq!(
            id,
            format!("{}:{}", audit["producer"].as_str().unwrap(), audit["seq"])
        );
    }
    assert!(chain_verify::verify(&ndjson(&bulk)).is_ok());
    assert!(collector
        .received()
        .iter()
        .all(|r| r.header("content-type") == Some("application/x-ndjson")));

    // Fields of a denial.
    let by_page: BTreeMap<String, &Value> = events
        .iter()
        .filter_map(|e| {
            let q = e["url"]["query"].as_str()?;
            Some((q.split('&').next()?.to_string(), e))
        })
        .collect();
    let e = by_page["page=4"];
    assert_eq!(e["audit"]["schema_version"], "1");
    assert_eq!(e["http"]["request"]["method"], "GET");
    assert_eq!(e["http"]["response"]["status_code"], 403);
    assert_eq!(e["event"]["outcome"], "failure");
    assert_eq!(e["event"]["reason"], "via_upstream");
    assert_eq!(e["url"]["path"], "/denied/403");
    assert_eq!(e["url"]["query"], "page=4&q=Bearer%20[REDACTED]");
    assert_eq!(e["labels"]["tenant"], "acme");
    assert_eq!(e["source"]["ip"], "127.0.0.1");
    assert_eq!(e["envoy"]["cluster"], "upstream");
    assert_eq!(e["user_agent"]["original"], "e2e/[REDACTED]");
    assert!(e["event"]["duration"].as_u64().unwrap() > 0);
    assert!(e["http"]["response"]["bytes"].as_u64().is_some());
    assert!(e["http"]["request"]["id"].as_str().is_some());
    assert_eq!(e["http"]["version"], "1.1");
    assert!(e["envoy"]["upstream_host"].as_str().is_some());
    assert_eq!(e["envoy"]["response_code_details"], "via_upstream");
    assert_eq!(by_page["page=5"]["http"]["response"]["status_code"], 429);
    assert_eq!(by_page["page=6"]["http"]["response"]["status_code"], 401);
    // The hostile request: cut and replaced, not trapped.
    let hostile = events.iter().find(|e| e["url"]["query"].is_null()).unwrap();
    assert!(hostile["user_agent"]["original"].as_str().unwrap().len() <= 1024);
    assert!(hostile["labels"]["tenant"]
        .as_str()
        .unwrap()
        .contains('\u{fffd}'));

    // No secret anywhere: not in what the collector received, nor in the log.
    assert_no_secrets("collector", &collector.all_bytes());
    assert_no_secrets("envoy log", envoy.log().as_bytes());

    let emitted = stat(&envoy, "audit_log.emitted").await;
    assert_eq!(emitted, sent as i64);
    assert_eq!(stat(&envoy, "audit_log.sampled_out").await, 5);
    wait_until(5, "sent counted", || async {
        stat(&envoy, "audit_log.sent").await == 2 * sent as i64
    })
    .await;
    assert_eq!(stat(&envoy, "audit_log.dropped").await, 0);
    assert_eq!(stat(&envoy, "audit_log.queue_bytes").await, 0);
    assert!(!envoy.log().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn collector_outages_are_retried_in_order_and_capped() {
    let upstream = EchoUpstream::start().await.unwrap();
    let collector = Collector::start().await.unwrap();
    const CAP: i64 = 8000;
    let config = format!(
        r#"{{"sinks": {{"http": [{{"cluster": "collector", "path": "/ingest",
            "flush_interval_ms": 50, "batch_max_bytes": 2000, "queue_max_bytes": {CAP},
            "timeout_ms": 300, "retry": {{"initial_backoff_ms": 50, "max_backoff_ms": 200}}}}]}}}}"#
    );
    let envoy = Envoy::start(
        EnvoyOptions::new("audit-log.yaml")
            .concurrency(1)
            .upstream(upstream.port())
            .collector(collector.port())
            .plugin_config("audit_log", config),
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let get = |path: String| {
        let client = client.clone();
        let url = envoy.url(&path);
        async move {
            let r = client.get(url).send().await.unwrap();
            assert_eq!(r.status(), 200, "traffic is unaffected");
        }
    };

    // 1. Down, then back: everything (within the cap) arrives, in order.
    collector.0.down();
    for i in 0..5 {
        get(format!("/down/{i}")).await;
    }
    wait_until(10, "retries while down", || async {
        stat(&envoy, "audit_log.retried").await >= 2
    })
    .await;
    collector.0.up().await.unwrap();
    wait_until(10, "the backlog delivered", || async {
        lines_on(&collector, "/ingest").len() == 5
    })
    .await;
    let events = lines_on(&collector, "/ingest");
    let paths: Vec<&str> = events
        .iter()
        .map(|e| e["url"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["/down/0", "/down/1", "/down/2", "/down/3", "/down/4"]
    );
    assert!(chain_verify::verify(&ndjson(&events)).is_ok());

    // 2. Errors and garbage: a 503 is retried; a hung collector times out
    // and is retried.
    collector.answer(Canned::status(503));
    get("/err/0".into()).await;
    let retried = stat(&envoy, "audit_log.retried").await;
    wait_until(10, "503 retried", || async {
        stat(&envoy, "audit_log.retried").await > retried + 1
    })
    .await;
    collector.answer(Canned::json("{}").with_delay(Duration::from_secs(3)));
    let retried = stat(&envoy, "audit_log.retried").await;
    wait_until(10, "timeouts retried", || async {
        stat(&envoy, "audit_log.retried").await > retried
    })
    .await;
    collector.answer(Canned::json("not json at all"));
    wait_until(10, "delivered after errors", || async {
        stat(&envoy, "audit_log.sent").await == 6
    })
    .await;

    // 3. Down past the cap: the oldest are dropped and counted, the queue
    // stays under its cap, and the newest arrive once it is back.
    collector.0.down();
    tokio::time::sleep(Duration::from_millis(100)).await;
    collector.0.clear();
    for i in 0..60 {
        get(format!("/flood/{i:02}")).await;
        if i % 10 == 0 {
            let q = stat(&envoy, "audit_log.queue_bytes").await;
            assert!(q <= CAP, "queue {q} over cap");
        }
    }
    let dropped = stat(&envoy, "audit_log.dropped").await;
    assert!(dropped > 0);
    assert!(stat(&envoy, "audit_log.queue_bytes").await <= CAP);
    collector.0.up().await.unwrap();
    wait_until(15, "every event accounted for", || async {
        let s = envoy.stats().await.unwrap();
        let emitted = s.custom("audit_log.emitted");
        emitted == 66
            && s.custom("audit_log.sent") + s.custom("audit_log.dropped") == emitted
            && s.custom("audit_log.queue_bytes") == 0
    })
    .await;
    let flood = lines_on(&collector, "/ingest");
    let last = flood.last().unwrap();
    assert_eq!(last["url"]["path"], "/flood/59", "the newest survive");
    // What arrived is in order; the gap is reported as a deletion of
    // exactly the dropped events.
    let seqs: Vec<u64> = flood
        .iter()
        .map(|e| e["audit"]["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Before the flood, seq 0..=5 were delivered (5 + 1 events).
    let missing: u64 = (seqs[0] - 6) + seqs.windows(2).map(|w| w[1] - w[0] - 1).sum::<u64>();
    assert_eq!(missing as i64, stat(&envoy, "audit_log.dropped").await);
    assert!(!envoy.log().contains("panicked"));
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_access_log_writes_the_event() {
    let upstream = EchoUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.ndjson");
    let envoy = Envoy::start(
        EnvoyOptions::new("audit-log-access-log.yaml")
            .upstream(upstream.port())
            .replace("path: /dev/stdout", &format!("path: {}", file.display()))
            .arg("--file-flush-interval-msec")
            .arg("50"),
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    for i in 0..3 {
        let r = client
            .get(envoy.url(&format!("/a/{i}?page={i}&token={QUERY_SECRET}")))
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("cookie", format!("s={COOKIE_SECRET}"))
            .header("x-tenant-id", "acme")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let read = || std::fs::read_to_string(&file).unwrap_or_default();
    wait_until(10, "three access log lines", || async {
        read().lines().count() == 3
    })
    .await;
    let text = read();
    assert_no_secrets("access log", text.as_bytes());
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (i, e) in events.iter().enumerate() {
        // Written after the response: the status and duration are there.
        assert_eq!(e["http"]["response"]["status_code"], 200);
        assert!(e["event"]["duration"].as_u64().is_some());
        assert_eq!(e["labels"]["tenant"], "acme");
        assert_eq!(e["url"]["query"], format!("page={i}"));
    }
    let report = chain_verify::verify(&text);
    assert!(report.is_ok(), "{report}");
}
