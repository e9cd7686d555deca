//! What rate-limit costs per request, next to Envoy's native
//! `local_ratelimit` with the same limit: Envoy's CPU time (user + system,
//! all threads, from /proc) per request, minus that of the same Envoy with
//! no rate limiting. Measured, never asserted: these tests are `#[ignore]`d
//! and print a table (`cargo test -p e2e --test rate_limit_bench --
//! --ignored --nocapture --test-threads 1`; `cargo xtask bench` can run them).
//! `BENCH_REQUESTS` and `BENCH_KEYS` change the sizes (defaults 40000 and
//! 200000; the README's figures used BENCH_KEYS=1000000).

use e2e::envoy::{Envoy, EnvoyOptions};
use reqwest::Client;

const WASM_CONFIG: &str = r#"{"rules": [{"name": "bench", "key": [{"header": {"name": "x-api-key"}}],
  "limit": {"requests_per_unit": 1000000000, "unit": "second"}}]}"#;

/// The wasm filter block of envoy/rate-limit.yaml (as rendered), to swap
/// for others.
fn wasm_block() -> String {
    let text = EnvoyOptions::new("rate-limit.yaml").render().unwrap();
    let start = text.find("          - name: rate_limit\n").unwrap();
    let end = text
        .find("          - name: envoy.filters.http.router")
        .unwrap();
    text[start..end].to_string()
}

const NATIVE_ONE_KEY: &str = r#"          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: bench
              token_bucket: { max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s }
              filter_enabled: { default_value: { numerator: 100, denominator: HUNDRED } }
              filter_enforced: { default_value: { numerator: 100, denominator: HUNDRED } }
"#;

/// Per-value buckets: a descriptor entry without a value makes one bucket
/// per distinct `x-api-key`, kept in an LRU of `max_dynamic_descriptors`.
const NATIVE_PER_KEY: &str = r#"          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: bench
              token_bucket: { max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s }
              filter_enabled: { default_value: { numerator: 100, denominator: HUNDRED } }
              filter_enforced: { default_value: { numerator: 100, denominator: HUNDRED } }
              max_dynamic_descriptors: 65536
              rate_limits:
              - actions: [{ request_headers: { header_name: x-api-key, descriptor_key: key } }]
              descriptors:
              - entries: [{ key: key }]
                token_bucket: { max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s }
"#;

const ROUTE: &str = "route: { cluster: upstream }";
const DIRECT: &str = "direct_response: { status: 204 }";

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// utime + stime of every thread, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `n` requests from 8 keep-alive clients; key `i + from` when `distinct`.
async fn load(envoy: &Envoy, from: usize, n: usize, distinct: bool) {
    let clients = 8;
    let mut tasks = Vec::new();
    for c in 0..clients {
        let url = envoy.url("/api/bench");
        tasks.push(tokio::spawn(async move {
            let client = Client::new();
            for i in (c..n).step_by(clients) {
                let key = if distinct {
                    format!("key-{}", from + i)
                } else {
                    "one".to_string()
                };
                let s = client
                    .get(&url)
                    .header("x-api-key", key)
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert_eq!(s, 204);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// Envoy CPU microseconds per request over `n` requests, after `warm`
/// (distinct keys continue numbering after the warm-up).
async fn measure(opts: EnvoyOptions, warm: usize, n: usize, distinct: bool) -> f64 {
    let envoy = Envoy::start(opts).await.unwrap();
    load(&envoy, 0, warm, distinct).await;
    let before = cpu_ticks(envoy.pid());
    load(&envoy, warm, n, distinct).await;
    let ticks = cpu_ticks(envoy.pid()) - before;
    ticks as f64 * 10_000.0 / n as f64
}

fn options() -> EnvoyOptions {
    EnvoyOptions::new("rate-limit.yaml")
        .concurrency(1)
        .replace(ROUTE, DIRECT)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn cost_per_request() {
    let n = env("BENCH_REQUESTS", 40_000);
    let keys = env("BENCH_KEYS", 200_000);
    let block = wasm_block();
    let base = measure(options().replace(&block, ""), 2_000, n, false).await;
    let wasm_empty = measure(options().plugin_config("rate_limit", "{}"), 2_000, n, false).await;
    let wasm_one = measure(
        options().plugin_config("rate_limit", WASM_CONFIG),
        2_000,
        n,
        false,
    )
    .await;
    let native_one = measure(options().replace(&block, NATIVE_ONE_KEY), 2_000, n, false).await;
    // Many keys: first `keys - n` distinct keys, then `n` measured ones.
    let warm = keys.saturating_sub(n).max(2_000);
    let wasm_many = measure(
        options().plugin_config("rate_limit", WASM_CONFIG),
        warm,
        n,
        true,
    )
    .await;
    let native_many = measure(options().replace(&block, NATIVE_PER_KEY), warm, n, true).await;
    println!("\nEnvoy CPU per request (µs), {n} requests measured, 1 worker:");
    println!("  no rate limiting                      {base:7.1}");
    println!(
        "  rate-limit (wasm), no rules (floor)   {wasm_empty:7.1}  (+{:.1})",
        wasm_empty - base
    );
    println!(
        "  rate-limit (wasm), one key            {wasm_one:7.1}  (+{:.1})",
        wasm_one - base
    );
    println!(
        "  local_ratelimit (native), one key     {native_one:7.1}  (+{:.1})",
        native_one - base
    );
    println!(
        "  rate-limit (wasm), {keys} keys      {wasm_many:7.1}  (+{:.1})",
        wasm_many - base
    );
    println!(
        "  local_ratelimit (native), {keys} keys {native_many:7.1}  (+{:.1})",
        native_many - base
    );
}
