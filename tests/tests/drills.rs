//! Fault drills in a real Envoy with the real modules: the JWKS server and
//! the audit collector misbehave in every way the READMEs document, and
//! many clients fight over one rate-limit key on two workers. Each drill
//! checks the documented behaviour (fail closed, 503 reasons, retries,
//! queue caps, metrics) and that nothing in flight is lost beyond the
//! documented bounds.
//!
//! Covered elsewhere, not repeated here:
//! - `jwt_auth_remote.rs`: JWKS server down at start and dying mid-run,
//!   key rotation, and a stale key set kept through `{"keys":"garbage"}`,
//!   500 and a slow answer.
//! - `audit_log.rs`: collector down then back (one worker, in order), down
//!   past the cap (drops counted), 503, a hang past the timeout, a 200 with
//!   a non-JSON body.
//! - `rate_limit.rs`: 32 clients on two workers, exact count.

use audit_log::chain_verify;
use audit_log::hash_chain::event_hash;
use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::jwt_tokens::{claims, jwks, TestKey};
use e2e::servers::{Canned, Collector, EchoUpstream, JwksServer};
use reqwest::Client;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

async fn stat(envoy: &Envoy, name: &str) -> i64 {
    envoy.stats().await.expect("Envoy stats").custom(name)
}

fn assert_clean_log(envoy: &Envoy) {
    let log = envoy.log();
    assert!(!log.contains("panicked"), "a filter panicked:\n{log}");
    // What Envoy logs when a VM traps (checked with a module that panics).
    assert!(!log.contains("failed: Uncaught"), "a VM trapped:\n{log}");
}

// ---------------------------------------------------------------------------
// JWKS server faults.

const ISS: &str = "https://issuer.demo.local";
const AUD: &str = "demo-api";

static JTI: AtomicU64 = AtomicU64::new(0);

/// A token nobody has sent before (so the verified-token cache misses).
fn fresh(k: &TestKey) -> String {
    let jti = JTI.fetch_add(1, Ordering::Relaxed);
    k.token(
        "RS256",
        &claims(ISS, AUD, "alice", 600, json!({"jti": jti.to_string()})),
    )
}

struct Reply {
    status: u16,
    body: Value,
    www_authenticate: Option<String>,
}

async fn get_with(envoy: &Envoy, token: &str) -> Reply {
    let r = Client::new()
        .get(envoy.url("/x"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    Reply {
        status: r.status().as_u16(),
        www_authenticate: r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: r.json().await.unwrap_or(Value::Null),
    }
}

/// The demo provider with a 2 s cache (refreshes every 1.6 s; retries every
/// second without keys, every second with a stale set) and a 0.5 s fetch
/// timeout.
fn jwks_config(jwks_port: u16) -> String {
    json!({
        "providers": {"demo": {
            "issuer": ISS, "audiences": [AUD],
            "remote_jwks": {
                "http_uri": {"uri": format!("http://127.0.0.1:{jwks_port}/jwks.json"), "cluster": "jwks", "timeout": "0.5s"},
                "cache_duration": "2s"
            }
        }},
        "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "demo"}}]
    })
    .to_string()
}

/// Answers `canned` from now on and returns once `fetches` fetches were
/// answered that way and the next one has started (so the last of them has
/// been handled by the filter: one fetch is in flight at a time).
async fn jwks_answers(server: &JwksServer, canned: Canned, fetches: usize, what: &str) {
    server.set_answer(canned);
    let from = server.fetches();
    let s = server.clone();
    wait_until(30, what, move || {
        let done = s.fetches() > from + fetches;
        async move { done }
    })
    .await;
}

/// A JWKS of 65 keys (one over the documented 64): `key-a` and 64 others.
fn too_many_keys(a: &TestKey) -> String {
    let mut keys = vec![a.jwk()];
    for i in 0..64 {
        let mut k = a.jwk();
        k["kid"] = json!(format!("extra-{i}"));
        keys.push(k);
    }
    json!({ "keys": keys }).to_string()
}

const HUGE: usize = 8 << 20;

#[tokio::test(flavor = "multi_thread")]
async fn jwks_faults_fail_closed_then_recover() {
    let a = TestKey::rsa("key-a", 2048).unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let server = JwksServer::start(&jwks(&[&a])).await.unwrap();
    // Broken from the start: no good key set reaches Envoy before the end
    // of part 1.
    server.set_answer(Canned::html(200, "<!doctype html><p>Sign in</p>"));
    let envoy = Envoy::start(
        EnvoyOptions::new("jwt-auth.yaml")
            .upstream(upstream.port())
            .jwks(server.port())
            .plugin_config("jwt_auth", jwks_config(server.port())),
    )
    .await
    .unwrap();

    // 1. No key set yet: whatever the server answers, requests fail closed
    // with 503 `keys_unavailable` (not 401, no WWW-Authenticate), and
    // Envoy keeps serving.
    let good = jwks(&[&a]);
    let no_keys: Vec<(&str, Canned)> = vec![
        (
            "an HTML page with 200",
            Canned::html(200, "<!doctype html><html><body>Sign in</body></html>"),
        ),
        (
            "bytes that are not JSON",
            Canned::bytes(200, "application/json", b"\x00\xff{{ not json ]]".to_vec()),
        ),
        (
            "JSON that is not a JWKS",
            Canned::json(format!(r#"{{"issuer":"{ISS}","jwks":{good}}}"#)),
        ),
        ("a JSON array", Canned::json(format!("[{good}]"))),
        ("65 keys", Canned::json(too_many_keys(&a))),
        (
            "an empty 200",
            Canned::bytes(200, "application/json", Vec::new()),
        ),
        (
            "500 with a JWKS body",
            Canned::bytes(500, "application/json", good.clone().into_bytes()),
        ),
        (
            "a 302 to the JWKS",
            Canned::status(302).with_header("location", "/jwks.json"),
        ),
    ];
    let mut phases = 0;
    for (what, canned) in no_keys {
        jwks_answers(&server, canned, 1, what).await;
        phases += 1;
        let r = get_with(&envoy, &fresh(&a)).await;
        assert_eq!(r.status, 503, "{what}: {}", r.body);
        assert_eq!(r.body["reason"], "keys_unavailable", "{what}");
        assert_eq!(r.www_authenticate, None, "{what}");
    }

    // A body far over the 256 KiB cap, fetched again and again: refused
    // every time, and Envoy's memory does not grow with each fetch.
    jwks_answers(&server, Canned::huge_json(HUGE), 2, "8 MiB JWKS").await;
    let rss_before = envoy.rss_bytes().unwrap();
    jwks_answers(&server, Canned::huge_json(HUGE), 5, "8 MiB JWKS").await;
    let rss_after = envoy.rss_bytes().unwrap();
    phases += 1;
    let r = get_with(&envoy, &fresh(&a)).await;
    assert_eq!(r.status, 503, "8 MiB body: {}", r.body);
    assert_eq!(r.body["reason"], "keys_unavailable");
    let growth = rss_after.saturating_sub(rss_before);
    if let Some(line) = envoy.log().lines().rev().find(|l| l.contains("JWKS fetch")) {
        eprintln!("8 MiB JWKS: {line}");
    }
    eprintln!(
        "8 MiB JWKS: RSS {} KiB after 2 fetches, {} KiB after 5 more (growth {} KiB)",
        rss_before / 1024,
        rss_after / 1024,
        growth / 1024
    );
    // Keeping each 8 MiB body would add 40 MiB.
    assert!(growth < 16 << 20, "RSS grew by {growth} bytes");

    // Slower than the fetch timeout: the good set never arrives in time.
    jwks_answers(
        &server,
        Canned::json(good.clone()).with_delay(Duration::from_millis(1500)),
        1,
        "a slow JWKS",
    )
    .await;
    phases += 1;
    let r = get_with(&envoy, &fresh(&a)).await;
    assert_eq!(r.status, 503, "slow: {}", r.body);
    assert_eq!(r.body["reason"], "keys_unavailable");

    let stats = envoy.stats().await.unwrap();
    assert_eq!(
        stats.custom("jwt_auth.jwks.fetch_ok"),
        0,
        "{:?}",
        stats.matching("jwt_auth")
    );
    assert!(stats.custom("jwt_auth.jwks.fetch_failed") >= phases);
    assert!(stats.custom("jwt_auth.denied.keys_unavailable") >= phases);
    assert_eq!(stats.custom("jwt_auth.allowed"), 0);

    // 2. Fast again: the keys arrive without a restart, and a burst of
    // concurrent requests is served.
    server.set_jwks(&good);
    let start = Instant::now();
    loop {
        let r = get_with(&envoy, &fresh(&a)).await;
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "while recovering: {}", r.body);
        assert!(start.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let burst: Vec<_> = (0..20)
        .map(|_| {
            let url = envoy.url("/x");
            let token = fresh(&a);
            tokio::spawn(async move {
                Client::new()
                    .get(url)
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for t in burst {
        assert_eq!(t.await.unwrap(), 200);
    }
    let fetch_ok = stat(&envoy, "jwt_auth.jwks.fetch_ok").await;
    assert!(fetch_ok >= 1);

    // 3. With a good set in use, the same faults (not covered by
    // jwt_auth_remote.rs) keep it: stale-if-error.
    let stale: Vec<(&str, Canned)> = vec![
        ("8 MiB JWKS (stale)", Canned::huge_json(HUGE)),
        (
            "an HTML page (stale)",
            Canned::html(200, "<html>maintenance</html>"),
        ),
        (
            "bytes that are not JSON (stale)",
            Canned::bytes(200, "application/json", b"\xff\xfe".to_vec()),
        ),
        ("65 keys (stale)", Canned::json(too_many_keys(&a))),
    ];
    for (what, canned) in stale {
        let failed = stat(&envoy, "jwt_auth.jwks.fetch_failed").await;
        jwks_answers(&server, canned, 1, what).await;
        for _ in 0..3 {
            let r = get_with(&envoy, &fresh(&a)).await;
            assert_eq!(r.status, 200, "{what}: {}", r.body);
        }
        assert!(stat(&envoy, "jwt_auth.jwks.fetch_failed").await > failed);
    }
    // None of those replaced the set.
    assert_eq!(stat(&envoy, "jwt_auth.jwks.fetch_ok").await, fetch_ok);
    assert!(envoy.log().contains("keeping the last good key set"));
    assert_clean_log(&envoy);
}

// ---------------------------------------------------------------------------
// Audit collector faults.

/// Requests from `tasks` clients, each on fresh connections (so both
/// workers serve some), until stopped; every path is unique.
struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(String, u16)>>>,
}

impl Traffic {
    fn start(envoy: &Envoy, tasks: usize, pause: Duration) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..tasks)
            .map(|t| {
                let stop = stop.clone();
                let base = envoy.url("");
                tokio::spawn(async move {
                    let client = Client::builder().pool_max_idle_per_host(0).build().unwrap();
                    let mut out = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let path = format!("/t/{t}/{i}");
                        let status = client
                            .get(format!("{base}{path}"))
                            .send()
                            .await
                            .map(|r| r.status().as_u16())
                            .unwrap_or(0);
                        out.push((path, status));
                        i += 1;
                        tokio::time::sleep(pause).await;
                    }
                    out
                })
            })
            .collect();
        Traffic { stop, tasks }
    }

    async fn stop(self) -> Vec<(String, u16)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.unwrap());
        }
        all
    }
}

/// The events of one body, in order.
fn events_in(body: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(body)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("every line is JSON"))
        .collect()
}

fn key_of(e: &Value) -> (String, u64) {
    (
        e["audit"]["producer"].as_str().unwrap().to_string(),
        e["audit"]["seq"].as_u64().unwrap(),
    )
}

/// Each event matches its own hash, and each one that follows its
/// predecessor by one `seq` links to it.
fn assert_links(events: &[Value]) {
    let mut last: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for e in events {
        let (producer, seq) = key_of(e);
        let hash = e["audit"]["hash"].as_str().unwrap().to_string();
        assert_eq!(event_hash(e), hash, "{producer}:{seq} altered");
        if let Some((prev_seq, prev_hash)) = last.get(&producer) {
            if *prev_seq + 1 == seq {
                assert_eq!(
                    e["audit"]["prev_hash"].as_str(),
                    Some(prev_hash.as_str()),
                    "{producer}:{seq} does not link"
                );
            }
        }
        last.insert(producer, (seq, hash));
    }
}

fn ndjson(events: &[Value]) -> String {
    events
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_collector_failures_lose_nothing() {
    let upstream = EchoUpstream::start().await.unwrap();
    let collector = Collector::start().await.unwrap();
    // Failing from the first delivery on: nothing is acknowledged before
    // the collector recovers.
    collector.answer(Canned::bytes(500, "text/plain", "internal error"));
    let config = r#"{"sinks": {"http": [{"cluster": "collector", "path": "/ingest",
        "flush_interval_ms": 50, "batch_max_bytes": 4096, "queue_max_bytes": 1048576,
        "timeout_ms": 300, "retry": {"initial_backoff_ms": 50, "max_backoff_ms": 200}}]}}"#;
    let envoy = Envoy::start(
        EnvoyOptions::new("audit-log.yaml")
            .concurrency(2)
            .upstream(upstream.port())
            .collector(collector.port())
            .plugin_config("audit_log", config),
    )
    .await
    .unwrap();
    let traffic = Traffic::start(&envoy, 2, Duration::from_millis(25));

    // Every failure mode in turn, with traffic flowing. Each lasts until
    // the collector answered at least three deliveries that way and the
    // filter counted a retry.
    // 202 marks the slow answers (any 2xx is a delivery).
    let slow = Canned::bytes(202, "application/json", "{}").with_delay(Duration::from_millis(1000));
    let phases: Vec<(&str, Canned)> = vec![
        ("500", Canned::bytes(500, "text/plain", "internal error")),
        (
            "400",
            Canned::bytes(400, "application/json", r#"{"error":"bad request"}"#),
        ),
        ("404 HTML", Canned::html(404, "<html>no such index</html>")),
        ("429", Canned::status(429).with_header("retry-after", "1")),
        (
            "301",
            Canned::status(301).with_header("location", "http://127.0.0.1:1/ingest"),
        ),
        ("a 200 slower than timeout_ms", slow),
    ];
    for (what, canned) in phases {
        collector.answer(canned);
        // Every request recorded from here on got this answer.
        let from = collector.received().len();
        let retried = stat(&envoy, "audit_log.retried").await;
        wait_until(20, what, || async {
            collector.received().len() >= from + 3
                && stat(&envoy, "audit_log.retried").await > retried
        })
        .await;
    }
    // Nothing was acknowledged while failing: nothing may be counted sent.
    assert_eq!(stat(&envoy, "audit_log.sent").await, 0);
    assert_eq!(stat(&envoy, "audit_log.dropped").await, 0);

    // Recovery, with a garbage body: any 2xx is a delivery.
    collector.answer(Canned::html(200, "<html>ok</html>"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_requests = traffic.stop().await;
    let n = sent_requests.len() as i64;
    assert!(
        sent_requests.iter().all(|(_, s)| *s == 200),
        "delivery failures never fail traffic: {:?}",
        sent_requests
            .iter()
            .filter(|(_, s)| *s != 200)
            .collect::<Vec<_>>()
    );
    wait_until(20, "every event delivered", || async {
        let s = envoy.stats().await.unwrap();
        s.custom("audit_log.emitted") == n
            && s.custom("audit_log.sent") == n
            && s.custom("audit_log.queue_bytes") == 0
    })
    .await;
    assert_eq!(stat(&envoy, "audit_log.dropped").await, 0);

    // What the collector accepted (2xx, the slow 202s included): every
    // event at least once; more than once only if first accepted by a slow
    // answer Envoy had given up on (at-least-once delivery).
    let mut first: Vec<Value> = Vec::new();
    let mut seen: BTreeMap<(String, u64), u16> = BTreeMap::new();
    for r in collector.accepted() {
        for e in events_in(&r.body) {
            let key = key_of(&e);
            match seen.get(&key) {
                None => {
                    seen.insert(key, r.answered);
                    first.push(e);
                }
                Some(answered) => assert_eq!(
                    *answered, 202,
                    "{key:?} delivered twice, first by a timely answer"
                ),
            }
        }
    }
    assert_eq!(first.len() as i64, n, "each request's event, once");
    let paths: BTreeSet<&str> = first
        .iter()
        .map(|e| e["url"]["path"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = sent_requests.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, expected);
    // In order, per producer, from seq 0 with no gap; the chains hold.
    let mut next: BTreeMap<String, u64> = BTreeMap::new();
    for e in &first {
        let (producer, seq) = key_of(e);
        let want = next.entry(producer.clone()).or_insert(0);
        assert_eq!(seq, *want, "{producer}: out of order");
        *want += 1;
    }
    let report = chain_verify::verify(&ndjson(&first));
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.producers.len(), 2, "both workers: {report}");
    eprintln!(
        "collector faults: {n} requests, {} delivery attempts, {} retried",
        collector.received().len(),
        stat(&envoy, "audit_log.retried").await
    );
    assert_clean_log(&envoy);
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_collector_outage_past_the_cap_on_two_workers() {
    const CAP: i64 = 16384;
    let upstream = EchoUpstream::start().await.unwrap();
    let collector = Collector::start().await.unwrap();
    let config = format!(
        r#"{{"sinks": {{"http": [{{"cluster": "collector", "path": "/ingest",
            "flush_interval_ms": 50, "batch_max_bytes": 2048, "queue_max_bytes": {CAP},
            "timeout_ms": 300, "retry": {{"initial_backoff_ms": 50, "max_backoff_ms": 200}}}}]}}}}"#
    );
    let envoy = Envoy::start(
        EnvoyOptions::new("audit-log.yaml")
            .concurrency(2)
            .upstream(upstream.port())
            .collector(collector.port())
            .plugin_config("audit_log", config),
    )
    .await
    .unwrap();

    // Before: delivered.
    for i in 0..10 {
        let r = Client::new()
            .get(envoy.url(&format!("/before/{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    wait_until(10, "the first events", || async {
        stat(&envoy, "audit_log.sent").await == 10
    })
    .await;

    // Down, while 64 clients send 640 requests (about 20 times what the two
    // queues hold): traffic is unaffected, each queue stays under its cap.
    collector.0.down();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        let url = envoy.admin_url("/stats?format=json");
        tokio::spawn(async move {
            let mut max = 0;
            while sampling.load(Ordering::Relaxed) {
                if let Ok(s) = e2e::stats::Stats::fetch(&url).await {
                    max = max.max(s.custom("audit_log.queue_bytes"));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            max
        })
    };
    let clients: Vec<_> = (0..64)
        .map(|c| {
            let base = envoy.url("");
            tokio::spawn(async move {
                let client = Client::new();
                let mut statuses = Vec::new();
                for i in 0..10 {
                    let r = client
                        .get(format!("{base}/during/{c}/{i}"))
                        .send()
                        .await
                        .unwrap();
                    statuses.push(r.status().as_u16());
                }
                statuses
            })
        })
        .collect();
    for c in clients {
        assert!(c.await.unwrap().iter().all(|s| *s == 200));
    }
    sampling.store(false, Ordering::Relaxed);
    let max_queue = sampler.await.unwrap();
    // The gauge adds both workers' queues.
    assert!(max_queue <= 2 * CAP, "queue_bytes reached {max_queue}");
    assert!(stat(&envoy, "audit_log.queue_bytes").await <= 2 * CAP);
    let dropped = stat(&envoy, "audit_log.dropped").await;
    assert!(dropped > 0);

    // Back: what was kept arrives, and the books balance.
    collector.0.up().await.unwrap();
    wait_until(20, "every event accounted for", || async {
        let s = envoy.stats().await.unwrap();
        let emitted = s.custom("audit_log.emitted");
        emitted == 650
            && s.custom("audit_log.sent") + s.custom("audit_log.dropped") == emitted
            && s.custom("audit_log.queue_bytes") == 0
    })
    .await;
    let dropped = stat(&envoy, "audit_log.dropped").await;
    // At-least-once: a batch whose answer was cut by the outage may come
    // twice; keep first arrivals.
    let mut seen = BTreeSet::new();
    let events: Vec<Value> = collector
        .accepted()
        .iter()
        .flat_map(|r| events_in(&r.body))
        .filter(|e| seen.insert(key_of(e)))
        .collect();
    assert_eq!(
        events.len() as i64,
        650 - dropped,
        "kept = emitted - dropped"
    );
    // Per producer: strictly increasing seqs from 0; the gaps add up to the
    // drop count; each producer's newest event arrived (drop-oldest).
    let mut seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for e in &events {
        let (producer, seq) = key_of(e);
        seqs.entry(producer).or_default().push(seq);
    }
    assert_eq!(seqs.len(), 2, "both workers");
    let mut missing = 0;
    let mut newest = 0;
    for (producer, s) in &seqs {
        assert!(s.windows(2).all(|w| w[0] < w[1]), "{producer}: {s:?}");
        missing += s[0] + s.windows(2).map(|w| w[1] - w[0] - 1).sum::<u64>();
        newest += s.last().unwrap() + 1;
    }
    assert_eq!(missing as i64, dropped, "gaps = audit_log.dropped");
    assert_eq!(newest as i64, 650, "the newest of each producer arrived");
    assert_links(&events);
    eprintln!("outage past the cap: {dropped} of 650 dropped, queue max {max_queue} bytes");
    assert_clean_log(&envoy);
}

// ---------------------------------------------------------------------------
// Contention on one rate-limit key.

#[tokio::test(flavor = "multi_thread")]
async fn cas_contention_on_one_key_never_overshoots() {
    const LIMIT: usize = 4000;
    const CLIENTS: usize = 64;
    const EACH: usize = 70;
    // One bucket for everything (`key: []`), per day: no refill during
    // the drill, so the count must be exact.
    let config = format!(
        r#"{{"rules": [{{"name": "hot", "key": [],
            "limit": {{"requests_per_unit": {LIMIT}, "unit": "day"}}}}]}}"#
    );
    let envoy = Envoy::start(
        EnvoyOptions::new("rate-limit.yaml")
            .concurrency(2)
            .plugin_config("rate_limit", config)
            .replace(
                "route: { cluster: upstream }",
                "direct_response: { status: 200 }",
            ),
    )
    .await
    .unwrap();
    let go = Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let url = envoy.url("/hot");
            let go = go.clone();
            tokio::spawn(async move {
                let client = Client::new();
                // Connect first, so that all start together (these count
                // against the limit too).
                let mut out = Vec::new();
                let r = client.get(format!("{url}/warm")).send().await.unwrap();
                out.push((r.status().as_u16(), r.text().await.unwrap_or_default()));
                go.wait().await;
                for _ in 0..EACH {
                    let r = client.get(&url).send().await.unwrap();
                    let status = r.status().as_u16();
                    let body = r.text().await.unwrap_or_default();
                    out.push((status, body));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for c in clients {
        all.extend(c.await.unwrap());
    }
    let count = |s: u16| all.iter().filter(|(st, _)| *st == s).count();
    let stats = envoy.stats().await.unwrap();
    let m = |name: &str| stats.custom(&format!("rate_limit.{name}"));
    let total = CLIENTS * (EACH + 1);
    eprintln!(
        "contention: {total} requests, {} allowed, {} limited, {} store_unavailable, cas_retries {}",
        count(200),
        count(429),
        count(503),
        m("cas_retries")
    );
    // Exactly the limit passes (the warm-up requests count too).
    assert_eq!(count(200), LIMIT);
    assert_eq!(m("hot.allowed"), LIMIT as i64);
    // The rest is refused: 429, or the documented 503 `store_unavailable`
    // when 16 CAS attempts all conflict; nothing else.
    assert_eq!(count(429) + count(503), total - LIMIT, "other statuses");
    assert_eq!(m("hot.limited"), count(429) as i64);
    assert_eq!(m("hot.store_unavailable"), count(503) as i64);
    for (status, body) in &all {
        if *status == 503 {
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["error"], "store_unavailable", "{body}");
            assert_eq!(v["rule"], "hot", "{body}");
        }
        if *status == 429 {
            let v: Value = serde_json::from_str(body).unwrap();
            assert_eq!(v["rule"], "hot", "{body}");
        }
    }
    // Both workers served, so the CAS really raced across VMs.
    let workers: Vec<i64> = (0..2)
        .map(|w| {
            stats
                .matching(&format!("worker_{w}.downstream_cx_total"))
                .values()
                .sum()
        })
        .collect();
    assert!(workers.iter().all(|n| *n > 0), "connections: {workers:?}");
    // The workers really raced (7 to 23 retries per run on 2 cores). On
    // one core they only interleave when preempted between read and write,
    // so no retry is a possible, correct outcome there.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cores >= 2 {
        assert!(m("cas_retries") > 0, "the workers never raced");
    }
    assert_clean_log(&envoy);
}
