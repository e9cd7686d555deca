//! `cargo xtask bench --calibrate [--quick]`: what each kind of proxy-wasm
//! host call costs in this Envoy, in µs of Envoy CPU per call.
//!
//! The floor module (`filters/common/examples/floor.rs`) can repeat one host
//! call N times per request. Each variant runs in its own pinned Envoy, the
//! same way the bench runs configurations (interleaved rounds, medians), and
//! a call's price is (variant − plain floor) / N. These prices are what the
//! filters' designs are judged by: a request path is as cheap as the calls
//! it makes.

use super::report::median;
use super::{flag, keys, loadgen, pin_envoy, pin_self, setups, workloads, write_scripts};
use anyhow::{Context, Result};
use e2e::envoy::{Envoy, EnvoyOptions};
use std::collections::BTreeMap;

/// Calls per request in each variant: enough to stand well above noise.
const CALLS: u32 = 20;

/// (config word, what it is) — the words floor.rs understands.
const OPS: [(&str, &str); 26] = [
    ("header", "read a request header that is present"),
    ("header_missing", "read a request header that is absent"),
    ("map", "read every request header in one call"),
    ("property", "read a string attribute (`request.protocol`)"),
    (
        "property_int",
        "read an integer attribute (`request.total_size`)",
    ),
    ("set_header", "write a request header"),
    ("remove_header", "remove a request header (absent)"),
    ("shared_get", "read one shared-data key"),
    (
        "shared_cas",
        "read one shared-data key and write it back with its CAS",
    ),
    ("filter_state", "write filter state (`set_property`)"),
    ("time", "read the host clock"),
    ("log", "a log call below the log level"),
    ("metric", "increment a counter"),
    // What audit-log reads at the end of every stream.
    (
        "log:property.connection.mtls",
        "at stream end: `connection.mtls`",
    ),
    (
        "log:property.request.protocol",
        "at stream end: `request.protocol`",
    ),
    (
        "log:property.source.address",
        "at stream end: `source.address`",
    ),
    (
        "log:property.response.code",
        "at stream end: `response.code`",
    ),
    (
        "log:property.response.code_details",
        "at stream end: `response.code_details`",
    ),
    (
        "log:property.request.total_size",
        "at stream end: `request.total_size`",
    ),
    (
        "log:property.response.total_size",
        "at stream end: `response.total_size`",
    ),
    (
        "log:property.upstream.address",
        "at stream end: `upstream.address`",
    ),
    (
        "log:property.xds.cluster_name",
        "at stream end: `xds.cluster_name`",
    ),
    (
        "log:property.xds.route_name",
        "at stream end: `xds.route_name`",
    ),
    ("log:property.request.id", "at stream end: `request.id`"),
    ("log:time", "at stream end: the host clock"),
    (
        "log:expr",
        "at stream end: one CEL expression (`expr_evaluate`) listing the attributes above",
    ),
];

pub fn calibrate(args: &[&str]) -> Result<()> {
    let quick = args.contains(&"--quick");
    let (rounds, secs) = if quick { (3, 2) } else { (5, 4) };
    loadgen::ensure_tools()?;
    super::build_modules();
    let envoy_bin = e2e::paths::ensure_envoy()?;
    let out = crate::tools::root().join("target").join("bench");
    let work = out.join("calibrate");
    std::fs::create_dir_all(&work)?;
    pin_envoy(&envoy_bin, &work)?;
    let keys = keys::Keys::generate()?;
    let workloads = workloads::all(&keys, 10, &work)?;
    let workload = workloads
        .iter()
        .find(|w| w.id == "repeated-rs256")
        .context("no repeated-rs256 workload")?;
    let scripts = write_scripts(std::slice::from_ref(workload), &work)?;
    let script = scripts.get(workload.id).context("no wrk script")?;
    pin_self(loadgen::LOAD_CORE)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let costs = rt.block_on(async {
        let only: Option<Vec<&str>> = flag(args, "--ops").map(|o| o.split(',').collect());
        let mut variants: Vec<(&str, Envoy)> = Vec::new();
        for (word, _) in [("", "")]
            .iter()
            .chain(OPS.iter())
            .filter(|(w, _)| w.is_empty() || only.as_ref().is_none_or(|o| o.contains(w)))
        {
            let config = if word.is_empty() {
                String::new()
            } else {
                format!("{word} {CALLS}")
            };
            let options = EnvoyOptions::new("bench/floor.yaml")
                .concurrency(1)
                .plugin_config("floor", config)
                .replace(setups::ROUTE, setups::DIRECT);
            eprintln!("==> start floor {word}");
            variants.push((word, Envoy::start(options).await?));
        }
        let mut cpu: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for round in 0..=rounds {
            let order: Vec<&(&str, Envoy)> = if round % 2 == 0 {
                variants.iter().collect()
            } else {
                variants.iter().rev().collect()
            };
            for (word, envoy) in order {
                let closed = tokio::task::block_in_place(|| {
                    loadgen::closed_loop(envoy.port, envoy.pid(), workload, script, secs)
                })?;
                // Round 0 warms every VM up and is not kept.
                if round > 0 && closed.failures() == 0 {
                    if let Some(us) = closed.cpu_us_per_request() {
                        cpu.entry(word).or_default().push(us);
                    }
                }
            }
            eprintln!("    round {round} done");
        }
        for (word, envoy) in &variants {
            for line in envoy
                .log()
                .lines()
                .filter(|l| l.contains("floor") || l.contains("expr"))
            {
                eprintln!("    [{word}] {line}");
            }
        }
        anyhow::Ok(cpu)
    })?;

    let base = costs.get("").cloned().and_then(median);
    println!("| host call | µs per call | floor + {CALLS} calls, CPU µs/req |");
    println!("|---|---:|---:|");
    println!(
        "| (plain floor: one header read) | – | {} |",
        base.map_or("–".into(), |b| format!("{b:.1}"))
    );
    for (word, what) in OPS {
        let m = costs.get(word).cloned().and_then(median);
        let per_call = m.zip(base).map(|(m, b)| (m - b) / f64::from(CALLS));
        println!(
            "| {what} (`{word}`) | {} | {} |",
            per_call.map_or("–".into(), |c| format!("{c:.2}")),
            m.map_or("–".into(), |m| format!("{m:.1}"))
        );
    }
    println!(
        "\n{rounds} rounds of {secs} s, interleaved, medians; command: `cargo xtask bench --calibrate{}`",
        if quick { " --quick" } else { "" }
    );
    Ok(())
}
