//! The Envoy configurations under test, and which workloads each runs.
//!
//! Every one runs on one worker (`--concurrency 1`) and answers every route
//! with the same direct response, so the router-only configuration is the
//! ceiling for all of them and the differences are the filters' cost.

use super::ours;
use e2e::envoy::EnvoyOptions;

/// What a configuration is, for the ratios in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Ceiling,
    Native,
    Ours,
    Floor,
}

#[derive(Debug, Clone)]
pub struct Setup {
    pub id: &'static str,
    pub label: &'static str,
    pub side: Side,
    pub options: EnvoyOptions,
    /// The `.wasm` files it loads, for their sizes (crate or example names).
    pub modules: Vec<&'static str>,
    /// The native configuration it is compared with, per its own workloads.
    pub native: Option<&'static str>,
}

/// Ports and documents the configurations point at.
pub struct Env<'a> {
    pub jwks: &'a str,
    pub jwks_port: u16,
    pub collector_port: u16,
}

/// Every route answers 200 itself: the same ceiling for every configuration.
pub const ROUTE: &str = "route: { cluster: upstream }";
pub const DIRECT: &str = "direct_response: { status: 200, body: { inline_string: \"ok\" } }";
const JWT_CACHE: &str = "jwt_cache_config: { jwt_cache_size: 100 }";

fn options(config: &str, env: &Env) -> EnvoyOptions {
    EnvoyOptions::new(config)
        .concurrency(1)
        .jwks(env.jwks_port)
        .collector(env.collector_port)
        .replace(ROUTE, DIRECT)
}

fn json(v: serde_json::Value) -> String {
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

pub fn all(env: &Env) -> Vec<Setup> {
    let native = |id, label, config: &str| Setup {
        id,
        label,
        side: Side::Native,
        options: if config.contains("jwt") || config.contains("chain") {
            options(config, env).replace("BENCH_JWKS", env.jwks)
        } else {
            options(config, env)
        },
        modules: vec![],
        native: None,
    };
    vec![
        Setup {
            id: "ceiling",
            label: "router only, direct response (ceiling)",
            side: Side::Ceiling,
            options: options("bench/router.yaml", env),
            modules: vec![],
            native: None,
        },
        native(
            "native-chain",
            "native chain: jwt_authn (cache on) + local_ratelimit + JSON access log",
            "bench/native-chain.yaml",
        ),
        native(
            "native-jwt",
            "native jwt_authn, jwt_cache_config on",
            "bench/native-jwt.yaml",
        ),
        {
            let mut s = native(
                "native-jwt-nocache",
                "native jwt_authn, no jwt_cache_config (as most run it)",
                "bench/native-jwt.yaml",
            );
            s.options = s.options.replace(JWT_CACHE, "");
            s
        },
        native(
            "native-ratelimit",
            "native local_ratelimit, a bucket per x-bench-key",
            "bench/native-rate-limit.yaml",
        ),
        native(
            "native-access-log",
            "native JSON file access log",
            "bench/native-access-log.yaml",
        ),
        Setup {
            id: "floor",
            label: "floor: one trivial wasm filter (reads one header)",
            side: Side::Floor,
            options: options("bench/floor.yaml", env),
            modules: vec!["examples/floor"],
            native: None,
        },
        Setup {
            id: "ours-chain-filters",
            label: "our chain as three filters (envoy/chain-filters.yaml)",
            side: Side::Ours,
            options: options("chain-filters.yaml", env)
                .plugin_config("audit_log", json(ours::audit_log()))
                .plugin_config("jwt_auth", json(ours::jwt_auth(env.jwks)))
                .plugin_config("rate_limit", json(ours::rate_limit())),
            modules: vec!["audit-log", "jwt-auth", "rate-limit"],
            native: Some("native-chain"),
        },
        Setup {
            id: "ours-chain",
            label: "our chain as one module (envoy/chain.yaml)",
            side: Side::Ours,
            options: options("chain.yaml", env).plugin_config("chain", json(ours::chain(env.jwks))),
            modules: vec!["chain"],
            native: Some("native-chain"),
        },
        Setup {
            id: "ours-jwt",
            label: "our jwt-auth alone",
            side: Side::Ours,
            options: options("jwt-auth.yaml", env)
                .plugin_config("jwt_auth", json(ours::jwt_auth(env.jwks))),
            modules: vec!["jwt-auth"],
            native: Some("native-jwt"),
        },
        Setup {
            id: "ours-ratelimit",
            label: "our rate-limit alone",
            side: Side::Ours,
            options: options("rate-limit.yaml", env)
                .plugin_config("rate_limit", json(ours::rate_limit())),
            modules: vec!["rate-limit"],
            native: Some("native-ratelimit"),
        },
        Setup {
            id: "ours-audit",
            label: "our audit-log alone, HTTP sink to a local collector",
            side: Side::Ours,
            options: options("audit-log.yaml", env)
                .plugin_config("audit_log", json(ours::audit_log())),
            modules: vec!["audit-log"],
            native: Some("native-access-log"),
        },
    ]
}

/// Which configurations run each workload (the ceiling first, always).
pub fn matrix() -> Vec<(&'static str, Vec<&'static str>)> {
    let jwt = vec!["ceiling", "native-jwt", "ours-jwt"];
    let rl = vec!["ceiling", "native-ratelimit", "ours-ratelimit"];
    vec![
        (
            "repeated-rs256",
            vec![
                "ceiling",
                "native-chain",
                "native-jwt",
                "native-jwt-nocache",
                "ours-chain-filters",
                "ours-chain",
                "ours-jwt",
                "floor",
            ],
        ),
        ("cold-rs256", jwt.clone()),
        ("cold-es256", jwt.clone()),
        ("cold-eddsa", jwt),
        ("ratelimit-1-key", rl.clone()),
        ("ratelimit-1m-keys", rl),
        ("audit", vec!["ceiling", "native-access-log", "ours-audit"]),
    ]
}
