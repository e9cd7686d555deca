//! Live config updates: the chain's configuration arrives through ECDS
//! (`envoy/chain-ecds.yaml`, a file-based xDS source the test rewrites) and
//! changes under steady traffic from several clients, on two workers.
//!
//! * A new config takes effect without a restart (a new provider verifies,
//!   a new rule limits), and no request fails during the switch.
//! * A broken config is refused with the field path in Envoy's log; the old
//!   one keeps serving (nothing fails open, nothing goes down).
//! * Rate-limit state survives: an unchanged rule keeps its buckets; a
//!   changed rate or burst keeps the debt (in time) and rescales; a changed
//!   `slots` hands nobody a fresh bucket.
//! * A JWKS already fetched is not fetched again for an unchanged provider.
//!
//! Envoy's `update_success` / `update_rejected` stats tell when a file was
//! taken or refused (`config_reload` also counts a refused one). Workers
//! switch right after; every config carries a marker rule (`config-<v>`,
//! seen in the `RateLimit-Policy` header of `/version`) so the test can
//! see which config a worker runs.

use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::paths;
use e2e::servers::{EchoUpstream, JwksServer};
use e2e::tokens::{now_secs, RsaIssuer};
use reqwest::Client;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

const FILTER_FILE: &str = "chain-filter.yaml";
const STAT: &str = "extension_config_discovery.http_filter.chain.";
/// The second JWKS server's port in `envoy/chain-ecds.yaml`.
const JWKS_B_PORT: u16 = 8083;
const AUDIENCE: &str = "live-api";

/// The ECDS resource file: the chain's Wasm filter with `plugin` as its
/// configuration (JSON, which is YAML too).
fn resource(version: &str, plugin: &Value) -> String {
    json!({
        "version_info": version,
        "resources": [{
            "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
            "name": "chain",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "config": {
                    "name": "chain",
                    "root_id": "chain",
                    "vm_config": {
                        "vm_id": "chain",
                        "runtime": "envoy.wasm.runtime.v8",
                        "code": {"local": {"filename": paths::wasm_module("chain")}}
                    },
                    "failure_policy": "FAIL_RELOAD",
                    "configuration": {
                        "@type": "type.googleapis.com/google.protobuf.StringValue",
                        "value": plugin.to_string()
                    }
                }
            }
        }]
    })
    .to_string()
}

/// A plugin configuration: `rules` plus the version marker rule, and a
/// `jwt_auth` section if given.
fn plugin(version: &str, jwt: Option<Value>, mut rules: Vec<Value>) -> Value {
    rules.push(json!({
        "name": format!("config-{version}"),
        "match": {"prefix": "/version"},
        "key": [],
        "limit": {"requests_per_unit": 1_000_000_000, "unit": "second"}
    }));
    let mut p = json!({"rate_limit": {"headers": {"on_allowed": true}, "rules": rules}});
    if let Some(j) = jwt {
        p["jwt_auth"] = j;
    }
    p
}

fn limit_rule(name: &str, prefix: &str, rate: u32, burst: u32, slots: Option<u32>) -> Value {
    let mut r = json!({
        "name": name,
        "match": {"prefix": prefix},
        "key": [{"header": {"name": "x-client"}}],
        "limit": {"requests_per_unit": rate, "unit": "hour", "burst": burst}
    });
    if let Some(s) = slots {
        r["slots"] = json!(s);
    }
    r
}

fn provider(issuer: &RsaIssuer, cluster: &str, port: u16) -> Value {
    json!({
        "issuer": issuer.issuer,
        "audiences": [AUDIENCE],
        "remote_jwks": {
            "http_uri": {
                "uri": format!("http://127.0.0.1:{port}/jwks.json"),
                "cluster": cluster,
                "timeout": "2s"
            },
            "cache_duration": "600s"
        }
    })
}

/// A client that opens a new connection per request, so requests spread
/// over both workers.
fn fresh_client() -> Client {
    Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get(client: &Client, url: &str, headers: &[(&str, &str)]) -> u16 {
    let mut req = client.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    match req.send().await {
        Ok(r) => r.status().as_u16(),
        // A failed request is recorded as 0: never an expected status.
        Err(_) => 0,
    }
}

/// The config version a worker answered with (from the marker rule).
async fn version_seen(client: &Client, envoy: &Envoy) -> String {
    let Ok(r) = client.get(envoy.url("/version")).send().await else {
        return "(no answer)".into();
    };
    let policy = r
        .headers()
        .get("ratelimit-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    policy
        .split('"')
        .find_map(|p| p.strip_prefix("config-"))
        .unwrap_or("(none)")
        .to_string()
}

/// Waits until fresh connections keep landing on workers that run
/// `version` (16 in a row: each lands on either worker).
async fn wait_for_version(envoy: &Envoy, version: &str) {
    let client = fresh_client();
    let mut in_a_row = 0;
    let mut seen = Vec::new();
    for _ in 0..400 {
        let v = version_seen(&client, envoy).await;
        in_a_row = if v == version { in_a_row + 1 } else { 0 };
        if in_a_row == 16 {
            return;
        }
        seen.push(v);
    }
    panic!("workers did not switch to {version}: {seen:?}");
}

/// Every probe on fresh connections still answers with `version`.
async fn assert_version(envoy: &Envoy, version: &str) {
    let client = fresh_client();
    for _ in 0..16 {
        assert_eq!(version_seen(&client, envoy).await, version);
    }
}

async fn ecds_counts(envoy: &Envoy) -> (i64, i64, i64) {
    let s = envoy.stats().await.unwrap();
    (
        s.get(&format!("{STAT}update_success")),
        s.get(&format!("{STAT}update_rejected")),
        s.get(&format!("{STAT}config_fail")),
    )
}

/// Writes a new config and waits until Envoy took it (or fails if it was
/// refused), then until the workers run it.
async fn apply(envoy: &Envoy, version: &str, plugin: &Value) {
    let (ok, rejected, failed) = ecds_counts(envoy).await;
    envoy
        .replace_file(FILTER_FILE, &resource(version, plugin))
        .unwrap();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(30);
    loop {
        let now = ecds_counts(envoy).await;
        assert_eq!(
            (now.1, now.2),
            (rejected, failed),
            "{version} was refused:\n{}",
            envoy.log()
        );
        if now.0 > ok {
            break;
        }
        assert!(Instant::now() < deadline, "{version} was never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let applied = start.elapsed();
    wait_for_version(envoy, version).await;
    // For the record, not asserted.
    eprintln!(
        "{version}: applied after {applied:?}, 16 probes in a row saw it after {:?}",
        start.elapsed()
    );
}

/// Writes a config Envoy must refuse; returns what Envoy logged meanwhile.
async fn refuse(envoy: &Envoy, version: &str, plugin: &Value) -> String {
    let (ok, rejected, failed) = ecds_counts(envoy).await;
    let log_before = envoy.log().len();
    envoy
        .replace_file(FILTER_FILE, &resource(version, plugin))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = ecds_counts(envoy).await;
        assert_eq!(now.0, ok, "{version} was applied");
        if now.1 > rejected {
            assert_eq!(now.2, failed + 1, "config_fail counts the refusal");
            break;
        }
        assert!(Instant::now() < deadline, "{version} was never refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    envoy
        .log()
        .get(log_before..)
        .unwrap_or_default()
        .to_string()
}

/// One kind of request sent in a loop by its own task, and the statuses
/// it may get.
struct Plan {
    name: &'static str,
    path: &'static str,
    headers: Vec<(String, String)>,
    expected: &'static [u16],
}

/// Steady traffic: every plan in a loop (one request per 20 ms each, on
/// fresh connections), until stopped.
struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<(Plan, JoinHandle<Vec<u16>>)>,
}

impl Traffic {
    fn start(envoy: &Envoy, plans: Vec<Plan>) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = plans
            .into_iter()
            .map(|plan| {
                let url = envoy.url(plan.path);
                let headers = plan.headers.clone();
                let stop = stop.clone();
                let task = tokio::spawn(async move {
                    let client = fresh_client();
                    let headers: Vec<(&str, &str)> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let mut statuses = Vec::new();
                    let mut tick = tokio::time::interval(Duration::from_millis(20));
                    // Bounded: a test that forgets to stop still ends.
                    while !stop.load(Ordering::Relaxed) && statuses.len() < 100_000 {
                        tick.tick().await;
                        statuses.push(get(&client, &url, &headers).await);
                    }
                    statuses
                });
                (plan, task)
            })
            .collect();
        Traffic { stop, tasks }
    }

    /// Stops the traffic and checks every status; returns them per plan.
    async fn finish(self) -> Vec<(&'static str, Vec<u16>)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut out = Vec::new();
        for (plan, task) in self.tasks {
            let statuses = task.await.unwrap();
            assert!(
                statuses.len() >= 10,
                "{}: only {} requests",
                plan.name,
                statuses.len()
            );
            let unexpected: Vec<u16> = statuses
                .iter()
                .copied()
                .filter(|s| !plan.expected.contains(s))
                .collect();
            assert!(
                unexpected.is_empty(),
                "{}: unexpected statuses {unexpected:?} among {} requests (expected only {:?})",
                plan.name,
                statuses.len(),
                plan.expected
            );
            eprintln!("traffic: {}: {} requests", plan.name, statuses.len());
            out.push((plan.name, statuses));
        }
        out
    }
}

fn client_header(id: &str) -> Vec<(String, String)> {
    vec![("x-client".to_string(), id.to_string())]
}

/// Sends requests for client `id` until the first refusal; returns how
/// many passed (bounded).
async fn exhaust(envoy: &Envoy, path: &str, id: &str) -> usize {
    let client = fresh_client();
    for passed in 0..50 {
        match get(&client, &envoy.url(path), &[("x-client", id)]).await {
            200 => {}
            429 => return passed,
            other => panic!("{path} {id}: status {other}"),
        }
    }
    panic!("{path} {id}: never limited");
}

/// `n` requests for client `id` on fresh connections; the statuses.
async fn statuses(envoy: &Envoy, path: &str, id: &str, n: usize) -> Vec<u16> {
    let client = fresh_client();
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(&client, &envoy.url(path), &[("x-client", id)]).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn updates_apply_under_traffic_and_a_broken_one_changes_nothing() {
    let issuer_a = RsaIssuer::new("https://a.live.local", "a1").unwrap();
    let issuer_b = RsaIssuer::new("https://b.live.local", "b1").unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let jwks_a = JwksServer::start(&issuer_a.jwks()).await.unwrap();
    let jwks_b = JwksServer::start(&issuer_b.jwks()).await.unwrap();
    let token_a = issuer_a.token("alice", AUDIENCE, 600, json!({}));
    // Without a `kid`: before b is configured, a's check refuses it
    // without asking for a refetch of a's keys (an unknown `kid` would).
    let now = now_secs();
    let token_b = issuer_b.sign_with_header(
        &json!({"alg": "RS256", "typ": "JWT"}),
        &json!({"iss": issuer_b.issuer, "sub": "bob", "aud": AUDIENCE, "iat": now, "exp": now + 600}),
    );

    // v1: provider a guards everything but /public and /version; /partner
    // needs a too, so bob (from b) is refused there.
    let jwt_v1 = json!({
        "providers": {"a": provider(&issuer_a, "jwks", jwks_a.port())},
        "rules": [
            {"match": {"prefix": "/public"}},
            {"match": {"prefix": "/version"}},
            {"match": {"prefix": "/partner"}, "requires": {"provider_name": "a"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "a"}}
        ]
    });
    let limited = limit_rule("per-client", "/public/limited", 3, 3, None);
    let v1 = plugin("v1", Some(jwt_v1), vec![limited.clone()]);
    let envoy = Envoy::start(
        EnvoyOptions::new("chain-ecds.yaml")
            .upstream(upstream.port())
            .jwks(jwks_a.port())
            .port(JWKS_B_PORT, jwks_b.port())
            .file(FILTER_FILE, resource("v1", &v1)),
    )
    .await
    .unwrap();
    assert_version(&envoy, "v1").await;

    // Keys for a are fetched once for every worker.
    let client = fresh_client();
    let bearer_a = format!("Bearer {token_a}");
    let bearer_b = format!("Bearer {token_b}");
    for _ in 0..8 {
        assert_eq!(
            get(&client, &envoy.url("/api"), &[("authorization", &bearer_a)]).await,
            200
        );
    }
    let fetches_a = jwks_a.fetches();
    assert_eq!(fetches_a, 1, "one fetch for every worker");
    assert_eq!(
        get(
            &client,
            &envoy.url("/partner"),
            &[("authorization", &bearer_b)]
        )
        .await,
        401
    );
    // A client at its limit.
    assert_eq!(exhaust(&envoy, "/public/limited", "hot").await, 3);

    let traffic = Traffic::start(
        &envoy,
        vec![
            Plan {
                name: "alice on /api",
                path: "/api/items",
                headers: vec![("authorization".into(), bearer_a.clone())],
                expected: &[200],
            },
            Plan {
                name: "anonymous on /public",
                path: "/public/page",
                headers: vec![],
                expected: &[200],
            },
            Plan {
                name: "anonymous on /api",
                path: "/api/items",
                headers: vec![],
                expected: &[401],
            },
            Plan {
                // Refused until the update adds provider b, then let in.
                name: "bob on /partner",
                path: "/partner/items",
                headers: vec![("authorization".into(), bearer_b.clone())],
                expected: &[401, 200],
            },
            Plan {
                name: "the client at its limit",
                path: "/public/limited",
                headers: client_header("hot"),
                expected: &[429],
            },
        ],
    );

    // v2: provider b added (its keys fetched once), /partner needs b, a
    // new rule limits /public/new; provider a and per-client unchanged.
    let jwt_v2 = json!({
        "providers": {
            "a": provider(&issuer_a, "jwks", jwks_a.port()),
            "b": provider(&issuer_b, "jwks-b", jwks_b.port())
        },
        "rules": [
            {"match": {"prefix": "/public"}},
            {"match": {"prefix": "/version"}},
            {"match": {"prefix": "/partner"}, "requires": {"provider_name": "b"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "a"}}
        ]
    });
    let new_rule = json!({
        "name": "new-rule", "match": {"prefix": "/public/new"}, "key": [],
        "limit": {"requests_per_unit": 2, "unit": "hour"}
    });
    let v2 = plugin("v2", Some(jwt_v2.clone()), vec![limited.clone(), new_rule]);
    apply(&envoy, "v2", &v2).await;

    // The new provider verifies, on every worker.
    for _ in 0..8 {
        assert_eq!(
            get(
                &client,
                &envoy.url("/partner"),
                &[("authorization", &bearer_b)]
            )
            .await,
            200
        );
    }
    // The new rule limits: exactly 2 for everyone together.
    let new = statuses(&envoy, "/public/new", "anyone", 6).await;
    assert_eq!(new, [200, 200, 429, 429, 429, 429]);
    // The client at its limit stays limited; a's keys were not refetched.
    assert_eq!(
        statuses(&envoy, "/public/limited", "hot", 4).await,
        [429; 4]
    );
    assert_eq!(jwks_a.fetches(), fetches_a, "unchanged provider refetched");
    assert!(jwks_b.fetches() >= 1);
    let fetches_b = jwks_b.fetches();

    // v3 is broken: it would drop every requirement, and its new rule has
    // a zero rate. Refused, with the field path in Envoy's log.
    let jwt_v3 = json!({
        "providers": jwt_v2["providers"].clone(),
        "rules": [{"match": {"prefix": "/"}}]
    });
    let broken = json!({
        "name": "broken", "match": {"prefix": "/"}, "key": [],
        "limit": {"requests_per_unit": 0, "unit": "second"}
    });
    let v3 = plugin("v3", Some(jwt_v3), vec![limited.clone(), broken]);
    let log = refuse(&envoy, "v3", &v3).await;
    assert!(
        log.contains("rate_limit.rules[1].limit.requests_per_unit"),
        "the refusal names the field:\n{log}"
    );
    // v2 keeps serving, on every worker: nothing failed open.
    assert_version(&envoy, "v2").await;
    for _ in 0..8 {
        assert_eq!(get(&client, &envoy.url("/api/items"), &[]).await, 401);
        assert_eq!(
            get(
                &client,
                &envoy.url("/partner"),
                &[("authorization", &bearer_b)]
            )
            .await,
            200
        );
    }
    assert_eq!(statuses(&envoy, "/public/new", "anyone", 2).await, [429; 2]);

    let seen = traffic.finish().await;
    // The traffic saw the switch: bob was refused before, let in after.
    let bob = &seen
        .iter()
        .find(|(n, _)| *n == "bob on /partner")
        .unwrap()
        .1;
    assert_eq!(bob.first(), Some(&401), "{bob:?}");
    assert_eq!(bob.last(), Some(&200), "{bob:?}");
    assert_eq!(jwks_a.fetches(), fetches_a);
    assert_eq!(jwks_b.fetches(), fetches_b);
    let stats = envoy.stats().await.unwrap();
    assert_eq!(stats.get("wasm.chain.vm_reload"), 0, "no VM failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limit_state_survives_updates() {
    let upstream = EchoUpstream::start().await.unwrap();
    // steady: never changes. burst: its burst grows. rate: its rate grows.
    // moved: its table grows from 64 to 4096 slots.
    let steady = limit_rule("steady", "/steady", 3, 3, None);
    let rules = |burst: u32, rate: u32, slots: u32| {
        vec![
            steady.clone(),
            limit_rule("burst", "/burst", 3, burst, None),
            limit_rule("rate", "/rate", rate, 3, None),
            limit_rule("moved", "/moved", 1, 1, Some(slots)),
        ]
    };
    let v1 = plugin("v1", None, rules(3, 3, 64));
    let envoy = Envoy::start(
        EnvoyOptions::new("chain-ecds.yaml")
            .upstream(upstream.port())
            .file(FILTER_FILE, resource("v1", &v1)),
    )
    .await
    .unwrap();
    assert_version(&envoy, "v1").await;

    // Every client at its limit.
    let hot = ["h1", "h2", "h3", "h4"];
    for id in hot {
        assert_eq!(exhaust(&envoy, "/steady", id).await, 3, "{id}");
    }
    assert_eq!(exhaust(&envoy, "/burst", "b").await, 3);
    assert_eq!(exhaust(&envoy, "/rate", "r").await, 3);
    let moved: Vec<String> = (0..16).map(|i| format!("m{i}")).collect();
    for id in &moved {
        // 16 clients in 64 slots may share one: then the second sharer is
        // limited at once (stricter, never looser).
        assert!(exhaust(&envoy, "/moved", id).await <= 1, "{id}");
    }

    let mut plans: Vec<Plan> = hot
        .iter()
        .map(|id| Plan {
            name: "a client at its limit on /steady",
            path: "/steady",
            headers: client_header(id),
            expected: &[429],
        })
        .collect();
    for id in moved.iter().take(4) {
        plans.push(Plan {
            name: "a client at its limit on /moved",
            path: "/moved",
            headers: client_header(id),
            expected: &[429],
        });
    }
    plans.push(Plan {
        name: "no rule",
        path: "/free",
        headers: vec![],
        expected: &[200],
    });
    let traffic = Traffic::start(&envoy, plans);

    // v2 adds an unrelated rule: every bucket is kept.
    let mut v2_rules = rules(3, 3, 64);
    v2_rules.push(limit_rule("other", "/other", 1, 1, None));
    apply(&envoy, "v2", &plugin("v2", None, v2_rules)).await;
    for id in hot {
        assert_eq!(statuses(&envoy, "/steady", id, 2).await, [429; 2], "{id}");
    }
    assert_eq!(statuses(&envoy, "/burst", "b", 2).await, [429; 2]);
    assert_eq!(statuses(&envoy, "/rate", "r", 2).await, [429; 2]);

    // v3: burst 3 → 10 keeps the 3 requests' debt: 7 more pass, exactly.
    // Rate 3 → 30 per hour keeps the debt in time (an hour's worth), so
    // the client is still limited.
    apply(&envoy, "v3", &plugin("v3", None, rules(10, 30, 64))).await;
    let burst = statuses(&envoy, "/burst", "b", 12).await;
    assert_eq!(burst.iter().filter(|s| **s == 200).count(), 7, "{burst:?}");
    assert_eq!(burst.iter().filter(|s| **s == 429).count(), 5, "{burst:?}");
    assert_eq!(statuses(&envoy, "/rate", "r", 3).await, [429; 3]);

    // v4: the moved rule's table grows to 4096 slots; its clients move to
    // other slots but keep their debt.
    apply(&envoy, "v4", &plugin("v4", None, rules(10, 30, 4096))).await;
    for id in &moved {
        assert_eq!(statuses(&envoy, "/moved", id, 2).await, [429; 2], "{id}");
    }
    // Clients never seen before get their one request (each also reads
    // its slot of the 64-slot layout for a while, which holds debt with
    // probability 1/4: stricter, so not all of them need to pass).
    let mut newcomers = Vec::new();
    for i in 0..8 {
        newcomers.push(statuses(&envoy, "/moved", &format!("n{i}"), 2).await);
    }
    assert!(newcomers.iter().all(|s| s[1] == 429), "{newcomers:?}");
    assert!(newcomers.iter().any(|s| s[0] == 200), "{newcomers:?}");

    traffic.finish().await;
    for id in hot {
        assert_eq!(statuses(&envoy, "/steady", id, 1).await, [429], "{id}");
    }
}
