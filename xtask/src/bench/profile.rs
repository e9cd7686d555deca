//! `cargo xtask bench --profile <configuration> [--workload <id>] [--seconds N]
//! [--without <section>,...] [--sections]`: one benchmark configuration under
//! load while `perf` samples Envoy, to see where a request's time goes before
//! changing anything. `--without audit_log` (with `ours-chain`) drops sections
//! from the chain's JSON to price one part. `--sections` loads our modules
//! built with the `section-timing` feature (into `target/sections`, so the
//! shipped modules stay as they are) and prints the time each named section
//! took inside the VM (`filter_common::section_timing`).
//!
//! V8 gives `perf` no symbols for compiled wasm, so the module's own code
//! shows up as anonymous memory (`[unknown]` / `//anon`); the split between
//! that, Envoy's host functions (header maps, shared data, properties) and
//! V8's call trampolines is what tells a hostcall problem from a Rust one.

use super::{keys, loadgen, setups, workloads, write_scripts};
use crate::build::{optimise_quietly, MODULES};
use crate::tools::{cargo, has, root, run};
use anyhow::{bail, Context, Result};
use e2e::envoy::Envoy;
use e2e::servers::{Collector, JwksServer};
use std::process::Command;
use std::time::Duration;

pub fn profile(args: &[&str]) -> Result<()> {
    let value = |name: &str| super::flag(args, name);
    let Some(setup_id) = value("--profile") else {
        bail!("--profile needs a configuration id (e.g. ours-chain, floor, native-chain)");
    };
    let workload_id = value("--workload").unwrap_or("repeated-rs256");
    let secs: u32 = value("--seconds").unwrap_or("10").parse()?;

    loadgen::ensure_tools()?;
    super::build_modules();
    let envoy_bin = e2e::paths::ensure_envoy()?;
    std::env::set_var("ENVOY_BIN", &envoy_bin);
    let out = crate::tools::root().join("target").join("bench");
    let work = out.join("profile");
    std::fs::create_dir_all(&work)?;
    let keys = keys::Keys::generate()?;
    // Cold workloads need more distinct tokens than the token cache holds.
    let tokens = if workload_id.starts_with("cold") {
        4000
    } else {
        200
    };
    let workloads = workloads::all(&keys, tokens, &work)?;
    let Some(workload) = workloads.iter().find(|w| w.id == workload_id) else {
        let ids: Vec<&str> = workloads.iter().map(|w| w.id).collect();
        bail!("no workload {workload_id}; there are {ids:?}");
    };
    let scripts = write_scripts(std::slice::from_ref(workload), &work)?;
    let script = scripts.get(workload.id).context("no wrk script")?;
    let data = out.join(format!("perf-{setup_id}-{workload_id}.data"));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let jwks_doc = keys.jwks();
        let jwks = JwksServer::start(&jwks_doc).await?;
        let collector = Collector::start().await?;
        let env = setups::Env {
            jwks: &jwks_doc,
            jwks_port: jwks.port(),
            collector_port: collector.port(),
        };
        let Some(setup) = setups::all(&env).into_iter().find(|s| s.id == setup_id) else {
            let ids: Vec<&str> = setups::all(&env).iter().map(|s| s.id).collect();
            bail!("no configuration {setup_id}; there are {ids:?}");
        };
        let mut options = setup.options.clone();
        if args.contains(&"--sections") {
            for m in setup.modules.iter().filter(|m| MODULES.contains(m)) {
                let (shipped, timed) = build_timed(m)?;
                options = options.replace(&shipped, &timed);
            }
        }
        if let Some(sections) = value("--without") {
            let mut chain = super::ours::chain(&jwks_doc);
            for section in sections.split(',') {
                if chain
                    .as_object_mut()
                    .and_then(|o| o.remove(section))
                    .is_none()
                {
                    bail!("the chain has no section {section}");
                }
            }
            options = options.plugin_config("chain", serde_json::to_string_pretty(&chain)?);
        }
        let envoy = Envoy::start(options).await?;
        let (port, pid) = (envoy.port, envoy.pid());
        // Warm-up: V8 tiers hot wasm code up before anything is sampled.
        tokio::task::block_in_place(|| loadgen::closed_loop(port, pid, workload, script, 3))?;
        let mut perf = Command::new("perf")
            .args(["record", "-F", "1999", "-g", "-o"])
            .arg(&data)
            .args(["-p", &pid.to_string(), "--", "sleep"])
            .arg(secs.to_string())
            .spawn()
            .context("starting perf (Debian: apt-get install linux-perf)")?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let closed = tokio::task::block_in_place(|| {
            loadgen::closed_loop(port, pid, workload, script, secs)
        })?;
        eprintln!(
            "load: {:.0} req/s, Envoy CPU {:.1} µs/req, {} failures",
            closed.rps(),
            closed.cpu_us_per_request().unwrap_or(0.0),
            closed.failures()
        );
        perf.wait()?;
        let log = envoy.log();
        // Envoy's prefix is `[time][thread id][level]`: the thread tells the
        // worker's VM from the main thread's (which only ticks).
        let timings: Vec<(&str, &str)> = log
            .lines()
            .filter_map(|l| {
                let (prefix, t) = l.split_once("section timing:")?;
                Some((prefix.split(['[', ']']).nth(3).unwrap_or("?"), t))
            })
            .collect();
        if !timings.is_empty() {
            println!("==> section timing, µs per call / calls, every 2 s (the last is partial)");
            for (thread, t) in timings {
                println!("   thread {thread}:{t}");
            }
        }
        drop(envoy);
        Ok(())
    })?;
    for sort in ["dso", "sym"] {
        println!("==> perf report --sort {sort}");
        let report = Command::new("perf")
            .args([
                "report",
                "--no-children",
                "--stdio",
                "-g",
                "none",
                "--percent-limit",
                "0.7",
            ])
            .args(["--sort", sort, "-i"])
            .arg(&data)
            .output()?;
        let text = String::from_utf8_lossy(&report.stdout);
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            println!("{line}");
        }
    }
    println!("perf data: {} (perf report -i …)", data.display());
    Ok(())
}

/// Builds `module` with `section-timing` in its own target directory.
/// Returns the shipped module's path and the timed one's.
fn build_timed(module: &str) -> Result<(String, String)> {
    let target = root().join("target").join("sections");
    run(
        &format!("build {module} with section-timing"),
        cargo()
            .args(["build", "--quiet", "--release", "--target", "wasm32-wasip1"])
            .args(["-p", module, "--features", "filter-common/section-timing"])
            .env("CARGO_TARGET_DIR", &target),
    )?;
    let timed = target
        .join("wasm32-wasip1")
        .join("release")
        .join(e2e::paths::wasm_file_name(module));
    if has("wasm-opt", "--version").is_some() {
        optimise_quietly(&timed);
    }
    let shipped = e2e::paths::wasm_module(module);
    Ok((shipped.display().to_string(), timed.display().to_string()))
}
