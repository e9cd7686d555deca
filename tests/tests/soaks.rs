//! Soaks: Envoy with our modules under steady traffic for a long time,
//! its memory sampled as it goes. `cargo xtask soak` runs the `#[ignore]`d
//! ones (`cargo test -p e2e --test soaks -- --ignored --nocapture`), for
//! `SOAK_SECONDS` each (default 600); `SOAK_SAMPLE_SECONDS` (default 10)
//! sets how often Envoy's RSS is read. Each prints its memory curve
//! (seconds, RSS KiB) for RELIABILITY.md.
//!
//! - the audit collector dead for the whole soak at 200 requests a second:
//!   memory stays flat (the queues are capped), delivery resumes after;
//! - a unique RS256 token per request: memory stays flat (the token cache
//!   is bounded);
//! - the `chain` module under mixed traffic (valid, invalid and missing
//!   tokens, throttled users and keys, audit on): only documented
//!   statuses, no wasm VM failure or reload, every audit event delivered.
//!
//! A 20-second version of the mixed soak runs with the other e2e tests.
//!
//! VM failures are read from Envoy's stats: a trap under `FAIL_RELOAD`
//! makes the next request reload the VM (`wasm.<plugin>.vm_reload_success`
//! or `vm_reload_failure`, `vm_reload_backoff` while backing off) and
//! creates a new one (`wasm.envoy.wasm.runtime.v8.created`); Envoy 1.40
//! logs `Function: proxy_on_… failed: Uncaught RuntimeError`. (Checked
//! against a module that panics on demand.)

use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::jwt_tokens::{claims, jwks, TestKey};
use e2e::servers::{Collector, EchoUpstream, JwksServer};
use e2e::stats::Stats;
use reqwest::Client;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;

const ISS: &str = "https://issuer.demo.local";
const AUD: &str = "demo-api";
/// Most RSS growth allowed over the post-warm-up baseline.
const RSS_BOUND: u64 = 16 << 20;

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

fn soak_duration() -> Duration {
    Duration::from_secs(env_secs("SOAK_SECONDS", 600))
}

fn sample_period() -> Duration {
    Duration::from_secs(env_secs("SOAK_SAMPLE_SECONDS", 10))
}

/// The baseline is the first sample after this long: queues and caches
/// have filled, the allocator has warmed up.
fn warm_up(duration: Duration) -> Duration {
    (duration / 5).clamp(Duration::from_secs(10), Duration::from_secs(60))
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One memory sample: seconds since the start, RSS, and a stat.
#[derive(Debug, Clone, Copy)]
struct Sample {
    secs: u64,
    rss_kib: u64,
    stat: i64,
}

/// Reads Envoy's RSS (and one custom stat) every `period` until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

impl Sampler {
    fn start(envoy: &Envoy, stat: &'static str, period: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let pid = envoy.pid();
        let url = envoy.admin_url("/stats?format=json");
        let task = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let mut out = Vec::new();
                let mut next = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    if start.elapsed() >= next {
                        let value = match Stats::fetch(&url).await {
                            Ok(s) => s.custom(stat),
                            Err(_) => -1,
                        };
                        out.push(Sample {
                            secs: start.elapsed().as_secs(),
                            rss_kib: rss_kib(pid),
                            stat: value,
                        });
                        next += period;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                out
            })
        };
        Sampler { stop, task }
    }

    async fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap()
    }
}

/// Prints the curve and returns (baseline, max after it, end) in KiB.
fn report_curve(name: &str, stat: &str, samples: &[Sample], warm_up: Duration) -> (u64, u64, u64) {
    eprintln!("{name}: memory curve (s, RSS KiB, {stat})");
    for s in samples {
        eprintln!("  {:>5} {:>8} {:>10}", s.secs, s.rss_kib, s.stat);
    }
    let base_at = samples
        .iter()
        .position(|s| s.secs >= warm_up.as_secs())
        .unwrap_or(0);
    let baseline = samples.get(base_at).map_or(0, |s| s.rss_kib);
    let max = samples[base_at..]
        .iter()
        .map(|s| s.rss_kib)
        .max()
        .unwrap_or(0);
    let end = samples.last().map_or(0, |s| s.rss_kib);
    eprintln!(
        "{name}: start {} KiB, baseline {baseline} KiB at {} s, max {max} KiB, end {end} KiB, growth {} KiB",
        samples.first().map_or(0, |s| s.rss_kib),
        samples.get(base_at).map_or(0, |s| s.secs),
        max.saturating_sub(baseline)
    );
    (baseline, max, end)
}

fn assert_flat(name: &str, stat: &str, samples: &[Sample], warm_up: Duration) {
    assert!(samples.len() >= 3, "{name}: too few samples: {samples:?}");
    let (baseline, max, _) = report_curve(name, stat, samples, warm_up);
    assert!(
        (max.saturating_sub(baseline) << 10) < RSS_BOUND,
        "{name}: RSS grew from {baseline} KiB to {max} KiB"
    );
}

/// Sends `rate` requests a second for `duration`, at most `inflight` at a
/// time; `send(i)` makes request `i` and names its outcome. Returns how
/// many requests had each outcome.
async fn steady<F, Fut>(
    rate: u64,
    duration: Duration,
    inflight: usize,
    send: F,
) -> BTreeMap<String, u64>
where
    F: Fn(u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = String> + Send + 'static,
{
    let send = Arc::new(send);
    let slots = Arc::new(Semaphore::new(inflight));
    let counts = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < duration {
        tick.tick().await;
        let permit = slots.clone().acquire_owned().await.unwrap();
        let (send, counts) = (send.clone(), counts.clone());
        tokio::spawn(async move {
            let outcome = send(i).await;
            *counts.lock().unwrap().entry(outcome).or_default() += 1;
            drop(permit);
        });
        i += 1;
    }
    let _all = slots.acquire_many(inflight as u32).await.unwrap();
    let counts = counts.lock().unwrap().clone();
    eprintln!(
        "sent {i} requests in {:.0} s ({:.0}/s)",
        start.elapsed().as_secs_f64(),
        i as f64 / start.elapsed().as_secs_f64()
    );
    counts
}

/// Several clients, each with its own connection pool, so that both
/// workers get connections (one pool at a modest rate may keep one or two
/// connections, both on the same worker).
#[derive(Clone)]
struct Clients(Arc<Vec<Client>>);

impl Clients {
    fn new() -> Clients {
        Clients(Arc::new((0..8).map(|_| Client::new()).collect()))
    }
    fn pick(&self, i: u64) -> &Client {
        &self.0[(i % self.0.len() as u64) as usize]
    }
}

/// The producers (one per worker VM) among delivered events.
fn producers(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| e["audit"]["producer"].as_str().map(str::to_string))
        .collect()
}

/// Both workers accepted connections.
fn assert_both_workers(stats: &Stats) {
    let per_worker: Vec<i64> = (0..2)
        .map(|w| {
            stats
                .matching(&format!("worker_{w}.downstream_cx_total"))
                .values()
                .sum()
        })
        .collect();
    assert!(
        per_worker.iter().all(|n| *n > 0),
        "connections per worker: {per_worker:?}"
    );
}

fn total(counts: &BTreeMap<String, u64>) -> i64 {
    counts.values().sum::<u64>() as i64
}

/// Stats that move when a wasm VM fails: (VMs created, reloads of any
/// plugin).
fn vm_failures(stats: &Stats) -> (i64, BTreeMap<String, i64>) {
    let reloads = stats
        .values
        .iter()
        .filter(|(k, _)| {
            k.starts_with("wasm.")
                && (k.ends_with(".vm_reload_success")
                    || k.ends_with(".vm_reload_failure")
                    || k.ends_with(".vm_reload_backoff"))
        })
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    (stats.get("wasm.envoy.wasm.runtime.v8.created"), reloads)
}

/// No VM was created since `before`, no plugin reloaded, nothing trapped.
fn assert_no_vm_failure(envoy: &Envoy, before: &Stats, after: &Stats) {
    let (created_before, _) = vm_failures(before);
    let (created_after, reloads) = vm_failures(after);
    assert!(
        !reloads.is_empty(),
        "no vm_reload stats: {:?}",
        after.matching("wasm")
    );
    eprintln!(
        "VMs: wasm.envoy.wasm.runtime.v8.created {created_before} -> {created_after}, active {}; {reloads:?}",
        after.get("wasm.envoy.wasm.runtime.v8.active")
    );
    assert_eq!(created_after, created_before, "a VM was created mid-soak");
    assert!(reloads.values().all(|v| *v == 0), "reloads: {reloads:?}");
    let log = envoy.log();
    assert!(!log.contains("failed: Uncaught"), "a VM trapped");
    assert!(!log.contains("panicked"), "a filter panicked");
}

/// First arrivals of the events a collector accepted, in order.
fn delivered_events(collector: &Collector) -> Vec<Value> {
    let mut seen = BTreeSet::new();
    collector
        .accepted()
        .iter()
        .flat_map(|r| {
            String::from_utf8_lossy(&r.body)
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("every line is JSON"))
                .collect::<Vec<_>>()
        })
        .filter(|e| {
            seen.insert((
                e["audit"]["producer"].as_str().unwrap_or("").to_string(),
                e["audit"]["seq"].as_u64().unwrap_or(u64::MAX),
            ))
        })
        .collect()
}

/// Per producer: seqs strictly increasing. Returns (missing, sum of
/// newest seq + 1): with nothing lost at the end, the latter is the number
/// of events emitted.
fn seq_books(events: &[Value]) -> (u64, u64) {
    let mut seqs: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in events {
        seqs.entry(e["audit"]["producer"].as_str().unwrap())
            .or_default()
            .push(e["audit"]["seq"].as_u64().unwrap());
    }
    let (mut missing, mut newest) = (0, 0);
    for (p, s) in &seqs {
        assert!(s.windows(2).all(|w| w[0] < w[1]), "{p}: out of order");
        missing += s[0] + s.windows(2).map(|w| w[1] - w[0] - 1).sum::<u64>();
        newest += s.last().unwrap() + 1;
    }
    (missing, newest)
}

async fn wait_until<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------
// The audit collector dead for the whole soak.

/// `envoy/audit-log.yaml`'s sink as shipped (1 MiB queue per worker, 2 s
/// timeout, backoff to 30 s), without the Envoy-log sink.
const AUDIT_CONFIG: &str = r#"{"sinks": {"http": [{
  "cluster": "collector", "authority": "collector", "path": "/ingest", "format": "ndjson",
  "batch_max_bytes": 65536, "flush_interval_ms": 1000, "queue_max_bytes": 1048576,
  "timeout_ms": 2000, "retry": {"initial_backoff_ms": 250, "max_backoff_ms": 30000}}]}}"#;
const QUEUE_CAP: i64 = 1 << 20;

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn audit_collector_dead_at_200_rps() {
    let duration = soak_duration();
    let upstream = EchoUpstream::start().await.unwrap();
    let collector = Collector::start().await.unwrap();
    collector.0.down();
    let envoy = Envoy::start(
        EnvoyOptions::new("audit-log.yaml")
            .concurrency(2)
            .upstream(upstream.port())
            .collector(collector.port())
            .plugin_config("audit_log", AUDIT_CONFIG),
    )
    .await
    .unwrap();
    let before = envoy.stats().await.unwrap();
    let sampler = Sampler::start(&envoy, "audit_log.queue_bytes", sample_period());
    let clients = Clients::new();
    let base = envoy.url("");
    let counts = steady(200, duration, 64, move |i| {
        let (clients, base) = (clients.clone(), base.clone());
        async move {
            match clients.pick(i).get(format!("{base}/soak/{i}")).send().await {
                Ok(r) => r.status().as_u16().to_string(),
                Err(e) => format!("error {e}"),
            }
        }
    })
    .await;
    let samples = sampler.stop().await;
    let after = envoy.stats().await.unwrap();
    eprintln!("outcomes: {counts:?}");
    let n = total(&counts);
    assert_eq!(
        counts.get("200").copied().unwrap_or(0) as i64,
        n,
        "{counts:?}"
    );
    assert_flat("collector dead", "queue_bytes", &samples, warm_up(duration));
    assert!(
        samples.iter().all(|s| s.stat <= 2 * QUEUE_CAP),
        "{samples:?}"
    );
    assert!(after.custom("audit_log.dropped") > 0);
    assert_eq!(after.custom("audit_log.sent"), 0);
    assert_no_vm_failure(&envoy, &before, &after);

    // The collector returns: delivery resumes (the backoff is at most
    // 30 s), the queues empty, and the books balance.
    let back = Instant::now();
    collector.0.up().await.unwrap();
    wait_until(120, "delivery after the outage", || async {
        let s = envoy.stats().await.unwrap();
        s.custom("audit_log.emitted") == n
            && s.custom("audit_log.sent") + s.custom("audit_log.dropped") == n
            && s.custom("audit_log.queue_bytes") == 0
    })
    .await;
    let s = envoy.stats().await.unwrap();
    let events = delivered_events(&collector);
    let (missing, newest) = seq_books(&events);
    eprintln!(
        "after {:.0} s back: {} events delivered, {} dropped, {} retried",
        back.elapsed().as_secs_f64(),
        events.len(),
        s.custom("audit_log.dropped"),
        s.custom("audit_log.retried")
    );
    assert_eq!(events.len() as i64, s.custom("audit_log.sent"));
    assert_eq!(missing as i64, s.custom("audit_log.dropped"));
    assert_eq!(newest as i64, n, "the newest events arrived");
    assert_eq!(producers(&events).len(), 2, "both workers");
}

// ---------------------------------------------------------------------------
// A unique token per request.

static JTI: AtomicU64 = AtomicU64::new(0);

fn unique_token(key: &TestKey, sub: &str, extra: Value) -> String {
    let jti = JTI.fetch_add(1, Ordering::Relaxed);
    let mut extra = extra;
    extra["jti"] = json!(format!("soak-{jti}"));
    key.token("RS256", &claims(ISS, AUD, sub, 7200, extra))
}

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn unique_token_per_request() {
    let duration = soak_duration();
    let key = Arc::new(TestKey::rsa("soak", 2048).unwrap());
    let upstream = EchoUpstream::start().await.unwrap();
    let server = JwksServer::start(&jwks(&[&key])).await.unwrap();
    let envoy = Envoy::start(
        EnvoyOptions::new("jwt-auth.yaml")
            .concurrency(2)
            .upstream(upstream.port())
            .jwks(server.port()),
    )
    .await
    .unwrap();
    // The first key set, before the soak starts.
    let first = Client::new()
        .get(envoy.url("/api/items"))
        .bearer_auth(unique_token(&key, "alice", json!({"scope": "read"})))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let before = envoy.stats().await.unwrap();
    let sampler = Sampler::start(&envoy, "jwt_auth.cache.miss", sample_period());
    let clients = Clients::new();
    let url = envoy.url("/api/items");
    // 100 a second: minting RS256 in the test costs about 2 ms each.
    let counts = steady(100, duration, 32, move |i| {
        let (clients, url, key) = (clients.clone(), url.clone(), key.clone());
        async move {
            let token = tokio::task::spawn_blocking(move || {
                unique_token(&key, "alice", json!({"scope": "read"}))
            })
            .await
            .unwrap();
            match clients.pick(i).get(url).bearer_auth(token).send().await {
                Ok(r) => r.status().as_u16().to_string(),
                Err(e) => format!("error {e}"),
            }
        }
    })
    .await;
    let samples = sampler.stop().await;
    let after = envoy.stats().await.unwrap();
    eprintln!("outcomes: {counts:?}");
    let n = total(&counts);
    assert_eq!(
        counts.get("200").copied().unwrap_or(0) as i64,
        n,
        "{counts:?}"
    );
    assert_flat("unique tokens", "cache.miss", &samples, warm_up(duration));
    // Every token verified once: never found in the cache.
    let delta = |name: &str| after.custom(name) - before.custom(name);
    assert_eq!(delta("jwt_auth.allowed"), n);
    assert_eq!(delta("jwt_auth.cache.hit"), 0);
    assert_eq!(delta("jwt_auth.cache.miss"), n);
    assert_eq!(server.fetches(), 1);
    assert_both_workers(&after);
    assert_no_vm_failure(&envoy, &before, &after);
}

// ---------------------------------------------------------------------------
// Mixed traffic through the chain module.

fn chain_config(jwks_port: u16) -> String {
    json!({
        "jwt_auth": {
            "providers": {"demo": {
                "issuer": ISS, "audiences": [AUD],
                "remote_jwks": {
                    "http_uri": {"uri": format!("http://127.0.0.1:{jwks_port}/jwks.json"), "cluster": "jwks", "timeout": "1s"},
                    "cache_duration": "600s"
                },
                "claim_to_headers": [{"header_name": "x-jwt-sub", "claim_name": "sub"}]
            }},
            "rules": [
                {"match": {"prefix": "/public"}},
                {"match": {"prefix": "/api", "methods": ["GET", "HEAD"]},
                 "requires": {"provider_name": "demo"},
                 "authorization": {"all": [{"claim": "scope", "contains": "read"}]}},
                {"match": {"prefix": "/api"},
                 "requires": {"provider_name": "demo"},
                 "authorization": {"all": [{"claim": "scope", "contains": "write"}]}},
                {"match": {"prefix": "/"}, "requires": {"provider_name": "demo"}}
            ]
        },
        "rate_limit": {"rules": [
            {"name": "per-user", "match": {"prefix": "/api"}, "key": [{"identity": {}}],
             "limit": {"requests_per_unit": 10, "unit": "second", "burst": 10}},
            {"name": "per-key", "match": {"prefix": "/api"}, "on_missing_key": "skip",
             "key": [{"header": {"name": "x-api-key"}}],
             "limit": {"requests_per_unit": 5, "unit": "second", "burst": 5}}
        ]},
        "audit_log": {"sinks": {"http": [{"cluster": "collector", "path": "/ingest",
            "flush_interval_ms": 500}]}}
    })
    .to_string()
}

/// The requests of the mix, by `i % 10`, and the outcomes each may have.
struct Mix {
    key: TestKey,
    users: Vec<String>,
    greedy: String,
    expired: String,
    bad_signature: String,
    wrong_audience: String,
}

impl Mix {
    fn new() -> Mix {
        let key = TestKey::rsa("mix", 2048).unwrap();
        let tok = |sub: &str, aud: &str, ttl: i64| {
            key.token(
                "RS256",
                &claims(ISS, aud, sub, ttl, json!({"scope": "read"})),
            )
        };
        let users = (0..20)
            .map(|u| tok(&format!("user-{u}"), AUD, 7200))
            .collect();
        let greedy = tok("greedy", AUD, 7200);
        let expired = tok("late", AUD, -600);
        // One character changed in the middle of the signature.
        let mut bad_signature = tok("mallory", AUD, 7200).into_bytes();
        let at = bad_signature.len() - 100;
        bad_signature[at] = if bad_signature[at] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let bad_signature = String::from_utf8(bad_signature).unwrap();
        let wrong_audience = tok("eve", "other-api", 7200);
        Mix {
            users,
            greedy,
            expired,
            bad_signature,
            wrong_audience,
            key,
        }
    }

    /// Sends request `i`; the outcome is `<class> <status> <reason or rule>`.
    async fn send(&self, client: &Client, base: &str, i: u64) -> String {
        let user = &self.users[(i / 10 % 20) as usize];
        let (class, req) = match i % 10 {
            0 => {
                // Its own subject too: a rate-limit key of its own.
                let t = unique_token(&self.key, &format!("fresh-{i}"), json!({"scope": "read"}));
                (
                    "fresh",
                    client.get(format!("{base}/api/items")).bearer_auth(t),
                )
            }
            1..=3 => (
                "valid",
                client.get(format!("{base}/api/items")).bearer_auth(user),
            ),
            4 => (
                "hot-key",
                client
                    .get(format!("{base}/api/items"))
                    .bearer_auth(user)
                    .header("x-api-key", "hot-key"),
            ),
            5 | 6 => (
                "greedy",
                client
                    .get(format!("{base}/api/items"))
                    .bearer_auth(&self.greedy),
            ),
            7 => {
                let t = match i / 10 % 3 {
                    0 => &self.expired,
                    1 => &self.bad_signature,
                    _ => &self.wrong_audience,
                };
                (
                    "bad-token",
                    client.get(format!("{base}/api/items")).bearer_auth(t),
                )
            }
            8 => ("no-token", client.get(format!("{base}/api/items"))),
            _ if (i / 10).is_multiple_of(2) => ("public", client.get(format!("{base}/public/x"))),
            _ => (
                "no-scope",
                client.post(format!("{base}/api/items")).bearer_auth(user),
            ),
        };
        match req.send().await {
            Ok(r) => {
                let status = r.status().as_u16();
                let body: Value = r.json().await.unwrap_or(Value::Null);
                let why = body["reason"]
                    .as_str()
                    .or(body["rule"].as_str())
                    .or(body["error"].as_str())
                    .unwrap_or("");
                format!("{class} {status} {why}").trim_end().to_string()
            }
            Err(e) => format!("{class} error {e}"),
        }
    }
}

/// Whether an outcome is what the READMEs document for its class.
fn documented(outcome: &str) -> bool {
    let mut parts = outcome.splitn(3, ' ');
    let class = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    let rest = rest.join(" ");
    // 503 `store_unavailable` is documented for any rate-limited class
    // (16 CAS conflicts in a row); it is counted and reported.
    if rest == "503 store_unavailable" {
        return matches!(class, "fresh" | "valid" | "hot-key" | "greedy");
    }
    match class {
        "fresh" | "valid" => rest == "200",
        "hot-key" => rest == "200" || rest == "429 per-key",
        "greedy" => rest == "200" || rest == "429 per-user",
        "bad-token" => {
            rest == "401 expired" || rest == "401 bad_signature" || rest == "403 audience_mismatch"
        }
        "no-token" => rest == "401 token_missing",
        "public" => rest == "200",
        "no-scope" => rest == "403 insufficient_scope",
        _ => false,
    }
}

async fn mixed_chain(duration: Duration, period: Duration, check_memory: bool) {
    let mix = Arc::new(Mix::new());
    let upstream = EchoUpstream::start().await.unwrap();
    let server = JwksServer::start(&jwks(&[&mix.key])).await.unwrap();
    let collector = Collector::start().await.unwrap();
    let envoy = Envoy::start(
        EnvoyOptions::new("chain.yaml")
            .concurrency(2)
            .upstream(upstream.port())
            .jwks(server.port())
            .collector(collector.port())
            .plugin_config("chain", chain_config(server.port())),
    )
    .await
    .unwrap();
    let before = envoy.stats().await.unwrap();
    let sampler = Sampler::start(&envoy, "audit_log.queue_bytes", period);
    let clients = Clients::new();
    let base = envoy.url("");
    let counts = steady(150, duration, 64, move |i| {
        let (mix, clients, base) = (mix.clone(), clients.clone(), base.clone());
        async move { mix.send(clients.pick(i), &base, i).await }
    })
    .await;
    let samples = sampler.stop().await;
    let n = total(&counts);
    eprintln!("outcomes of {n} requests:");
    for (k, v) in &counts {
        eprintln!("  {v:>8}  {k}");
    }
    let undocumented: Vec<_> = counts.iter().filter(|(k, _)| !documented(k)).collect();
    assert!(undocumented.is_empty(), "undocumented: {undocumented:?}");
    // Every class showed up, and the throttled ones were throttled.
    for class in [
        "fresh 200",
        "valid 200",
        "hot-key 429 per-key",
        "greedy 429 per-user",
        "no-token 401",
        "public 200",
        "no-scope 403",
    ] {
        assert!(
            counts.keys().any(|k| k.starts_with(class)),
            "no `{class}`: {counts:?}"
        );
    }
    let store_unavailable: u64 = counts
        .iter()
        .filter(|(k, _)| k.contains(" 503 "))
        .map(|(_, v)| *v)
        .sum();
    eprintln!("503 store_unavailable: {store_unavailable}");

    // Every event delivered, once, in order; the chains hold.
    wait_until(30, "every audit event delivered", || async {
        let s = envoy.stats().await.unwrap();
        s.custom("audit_log.emitted") == n
            && s.custom("audit_log.sent") == n
            && s.custom("audit_log.queue_bytes") == 0
    })
    .await;
    let after = envoy.stats().await.unwrap();
    assert_eq!(after.custom("audit_log.dropped"), 0);
    let events = delivered_events(&collector);
    assert_eq!(events.len() as i64, n);
    let (missing, newest) = seq_books(&events);
    assert_eq!((missing, newest as i64), (0, n));
    let text: String = events
        .iter()
        .map(|e| e.to_string() + "\n")
        .collect::<String>();
    let report = audit_log::chain_verify::verify(&text);
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.producers.len(), 2, "both workers: {report}");
    assert_no_vm_failure(&envoy, &before, &after);
    if check_memory {
        assert_flat("mixed chain", "queue_bytes", &samples, warm_up(duration));
    } else {
        report_curve("mixed chain", "queue_bytes", &samples, warm_up(duration));
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn mixed_traffic_through_the_chain() {
    mixed_chain(soak_duration(), sample_period(), true).await;
}

/// The short version, part of the default run: statuses, VM stability and
/// audit delivery (20 s is too short to judge memory).
#[tokio::test(flavor = "multi_thread")]
async fn mixed_traffic_through_the_chain_short() {
    mixed_chain(Duration::from_secs(20), Duration::from_secs(2), false).await;
}
