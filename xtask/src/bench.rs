//! `cargo xtask bench [--quick] [--only <text>[,<text>]]`: our wasm filters against
//! Envoy's native filters, side by side, on one machine with one Envoy binary.
//!
//! Every configuration runs in its own Envoy with one worker, pinned to core
//! 0; the load generators, the helper servers and this process run on core 1.
//! All the Envoys start first (their start time and memory are recorded),
//! then the runs interleave configurations (A B C A B C …, reversed every
//! other round) so that drift on a shared machine spreads evenly. Figures are
//! medians; the report gives ratios to the ceiling and to native, and the
//! raw figures go to `target/bench/results-<timestamp>.json`.

mod before;
mod calibrate;
mod keys;
mod loadgen;
mod machine;
mod ours;
mod profile;
mod report;
mod setups;
mod workloads;

use crate::tools::{cargo, has, root};
use anyhow::{bail, Context, Result};
use e2e::envoy::Envoy;
use e2e::servers::{Collector, JwksServer};
use loadgen::{Closed, Open};
use report::{CaseResult, ModuleSize, Profile, Results, SetupResult};
use setups::Setup;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use workloads::Workload;

/// The modules a configuration may load: the shipped filters and the floor.
const MODULES: [&str; 5] = [
    "jwt-auth",
    "rate-limit",
    "audit-log",
    "chain",
    "examples/floor",
];

pub fn bench(args: &[&str]) -> Result<()> {
    if args.contains(&"--profile") {
        return profile::profile(args);
    }
    if args.contains(&"--calibrate") {
        return calibrate::calibrate(args);
    }
    let quick = args.contains(&"--quick");
    let only = flag(args, "--only").map(str::to_string);
    let before_rev = flag(args, "--before").map(str::to_string);
    let profile = Profile::new(quick);
    let started = Instant::now();

    loadgen::ensure_tools()?;
    let modules = build_modules();
    let before: Vec<before::Before> = match &before_rev {
        Some(revs) => revs
            .split(',')
            .map(|rev| before::Before::build(rev, &MODULES))
            .collect::<Result<_>>()?,
        None => Vec::new(),
    };
    let envoy_bin = e2e::paths::ensure_envoy()?;
    let envoy_version = e2e::paths::envoy_version(&envoy_bin)?;
    let envoy_version = match envoy_version.split_once("version: ") {
        Some((_, v)) => v.to_string(),
        None => envoy_version,
    };
    eprintln!("envoy: {} ({envoy_version})", envoy_bin.display());

    let stamp = machine::output("date", &["-u", "+%Y%m%d-%H%M%S"]);
    let out_dir = root().join("target").join("bench");
    let work = out_dir.join(format!("run-{stamp}"));
    std::fs::create_dir_all(&work)?;
    pin_envoy(&envoy_bin, &work)?;

    eprintln!("==> keys and tokens");
    let t0 = Instant::now();
    let keys = keys::Keys::generate()?;
    let workloads = workloads::all(&keys, profile.tokens_per_alg, &work)?;
    eprintln!("    ({:.1} s)", t0.elapsed().as_secs_f64());
    let scripts = write_scripts(&workloads, &work)?;

    let machine = machine::Machine::probe(&root());
    // From here on this process, and everything it starts except Envoy,
    // shares the load generator's core.
    pin_self(loadgen::LOAD_CORE)?;

    let (wrk_version, oha_version) = loadgen::versions();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let unbuilt: Vec<&str> = modules
        .iter()
        .filter(|m| m.bytes.is_none())
        .map(|m| m.name.as_str())
        .collect();
    let measured = rt.block_on(measure(
        &profile,
        &unbuilt,
        &keys,
        &workloads,
        &scripts,
        only.as_deref(),
        &before,
    ))?;

    let results = Results {
        mode: if quick { "quick" } else { "full" }.into(),
        command: format!(
            "cargo xtask bench{}{}",
            if quick { " --quick" } else { "" },
            only.as_ref()
                .map_or(String::new(), |o| format!(" --only {o}"))
                + &before_rev
                    .as_ref()
                    .map_or(String::new(), |r| format!(" --before {r}"))
        ),
        machine,
        envoy: envoy_version,
        wrk: wrk_version,
        oha: oha_version,
        profile,
        modules,
        workloads: workloads
            .iter()
            .map(|w| report::WorkloadInfo {
                id: w.id.into(),
                label: w.label.clone(),
                open_loop: w.open_loop_capable(),
            })
            .collect(),
        setups: measured.setups,
        cases: measured.cases,
        open_rates: measured.open_rates,
        common_rates: measured.common_rates,
        elapsed_secs: started.elapsed().as_secs(),
    };
    let json_path = out_dir.join(format!("results-{stamp}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)?)?;
    let markdown = report::markdown(&results, &json_path);
    let md_path = out_dir.join(format!("results-{stamp}.md"));
    std::fs::write(&md_path, &markdown)?;
    update_benchmarks_md(&markdown)?;
    println!("{markdown}");
    println!("raw figures: {}", json_path.display());
    println!("this table:  {} (also in BENCHMARKS.md)", md_path.display());
    // Token files are large and regenerated every run.
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Release builds of every module, one cargo invocation each (the filter
/// crates' entry points must not be linked together). A module that fails
/// to build is reported, not fatal: its configurations are "not measured".
fn build_modules() -> Vec<ModuleSize> {
    let wasm_opt = has("wasm-opt", "--version").is_some();
    let mut out = Vec::new();
    for m in MODULES {
        let mut cmd = cargo();
        cmd.args(["build", "--quiet", "--release", "--target", "wasm32-wasip1"]);
        match m.strip_prefix("examples/") {
            Some(example) => cmd.args(["-p", "filter-common", "--example", example]),
            None => cmd.args(["-p", m]),
        };
        eprintln!("==> build {m} (wasm32-wasip1, release)");
        let built = match cmd.output() {
            Ok(o) if o.status.success() => true,
            Ok(o) => {
                // Another module may be mid-edit: say why, briefly, and go on.
                let stderr = String::from_utf8_lossy(&o.stderr);
                let mut first: Vec<&str> = stderr
                    .lines()
                    .filter(|l| l.starts_with("error"))
                    .take(3)
                    .collect();
                if first.is_empty() {
                    first = stderr
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .take(3)
                        .collect();
                }
                eprintln!(
                    "    build failed, its configurations will not be measured:\n    {}",
                    first.join("\n    ")
                );
                false
            }
            Err(e) => {
                eprintln!("    could not run cargo: {e}");
                false
            }
        };
        let path = e2e::paths::wasm_module(m);
        if built && wasm_opt {
            crate::build::optimise_quietly(&path);
        }
        out.push(ModuleSize {
            name: m.to_string(),
            bytes: if built {
                std::fs::metadata(&path).map(|md| md.len()).ok()
            } else {
                None
            },
            wasm_opt,
        });
    }
    out
}

/// The value after `name` in the command line (`--only chain` → `chain`).
fn flag<'a>(args: &[&'a str], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| *a == name)
        .and_then(|i| args.get(i + 1))
        .copied()
}

/// The harness starts `ENVOY_BIN`: a wrapper script in `work` pins Envoy to
/// its core.
fn pin_envoy(envoy_bin: &Path, work: &Path) -> Result<()> {
    let wrapper = work.join("envoy-pinned");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec taskset -c {} {} \"$@\"\n",
            loadgen::ENVOY_CORE,
            envoy_bin.display()
        ),
    )?;
    make_executable(&wrapper)?;
    std::env::set_var("ENVOY_BIN", &wrapper);
    Ok(())
}

fn make_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut perms = std::fs::metadata(path)?.permissions();
    perms.set_mode(0o755);
    std::fs::set_permissions(path, perms)?;
    Ok(())
}

/// Pins every thread of this process (and so its future children) to `core`.
fn pin_self(core: &str) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", core])
        .arg(std::process::id().to_string())
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset")?;
    if !status.success() {
        bail!("taskset could not pin the bench to core {core}");
    }
    Ok(())
}

fn write_scripts(workloads: &[Workload], dir: &Path) -> Result<BTreeMap<&'static str, PathBuf>> {
    let mut out = BTreeMap::new();
    for w in workloads {
        let path = dir.join(format!("{}.lua", w.id));
        std::fs::write(&path, w.wrk_script())?;
        out.insert(w.id, path);
    }
    Ok(out)
}

struct Measured {
    setups: Vec<SetupResult>,
    cases: Vec<CaseResult>,
    open_rates: BTreeMap<String, f64>,
    common_rates: BTreeMap<String, f64>,
}

/// A configuration that came up, with its Envoy.
struct Running {
    setup: Setup,
    envoy: Envoy,
}

async fn measure(
    profile: &Profile,
    unbuilt: &[&str],
    keys: &keys::Keys,
    workloads: &[Workload],
    scripts: &BTreeMap<&'static str, PathBuf>,
    only: Option<&str>,
    before: &[before::Before],
) -> Result<Measured> {
    let jwks_doc = keys.jwks();
    let jwks = JwksServer::start(&jwks_doc).await?;
    let collector = Collector::start().await?;
    let env = setups::Env {
        jwks: &jwks_doc,
        jwks_port: jwks.port(),
        collector_port: collector.port(),
    };
    let by_id: BTreeMap<&str, &Workload> = workloads.iter().map(|w| (w.id, w)).collect();
    let all_setups = || {
        let mut all = setups::all(&env);
        let twins: Vec<setups::Setup> = before.iter().flat_map(|b| b.twins(&all)).collect();
        all.extend(twins);
        all
    };
    let full = before.iter().fold(setups::matrix(), |m, b| b.matrix(m));
    let matrix: Vec<(&Workload, Vec<&'static str>)> = full
        .into_iter()
        .filter_map(|(w, s)| Some((*by_id.get(w)?, s)))
        .filter_map(|(w, s)| {
            // `--only a,b`: anything whose id contains a or b.
            let hit = |id: &str| only.is_some_and(|o| o.split(',').any(|p| id.contains(p)));
            match only {
                None => Some((w, s)),
                Some(_) if hit(w.id) => Some((w, s)),
                // The matching configurations, with the ceiling for the ratios.
                Some(_) => {
                    let kept: Vec<&'static str> = s
                        .into_iter()
                        .filter(|id| *id == "ceiling" || hit(id))
                        .collect();
                    (kept.len() > 1 || hit("ceiling")).then_some((w, kept))
                }
            }
        })
        .collect();
    let wanted: Vec<&str> = all_setups()
        .iter()
        .map(|s| s.id)
        .filter(|id| matrix.iter().any(|(_, s)| s.contains(id)))
        .collect();

    // Start each configuration alone, so its time to ready is its own.
    let mut running: Vec<Running> = Vec::new();
    let mut setup_results: Vec<SetupResult> = Vec::new();
    for setup in all_setups().into_iter().filter(|s| wanted.contains(&s.id)) {
        eprintln!("==> start {}", setup.id);
        let t0 = Instant::now();
        let mut result = SetupResult::new(&setup);
        // A module that did not build may still be on disk from an older build.
        if let Some(m) = setup.modules.iter().find(|m| unbuilt.contains(m)) {
            result.not_measured = Some(format!("the {m} module did not build"));
            eprintln!("    not measured: the {m} module did not build");
            setup_results.push(result);
            continue;
        }
        match Envoy::start(setup.options.clone()).await {
            Ok(envoy) => {
                result.ready_ms = Some(t0.elapsed().as_millis() as u64);
                tokio::time::sleep(Duration::from_millis(300)).await;
                result.rss_idle = memory(envoy.pid()).0;
                running.push(Running { setup, envoy });
            }
            Err(e) => {
                result.not_measured =
                    Some(format!("Envoy refused the configuration: {}", reason(&e)));
                eprintln!(
                    "    not measured: {}",
                    result.not_measured.as_deref().unwrap_or("")
                );
            }
        }
        setup_results.push(result);
    }
    let find = |id: &str| running.iter().find(|r| r.setup.id == id);

    // A case runs only if one request through it gets a 200.
    let mut cases: Vec<CaseResult> = Vec::new();
    for (w, ids) in &matrix {
        for id in ids {
            let mut case = CaseResult::new(w.id, id);
            match find(id) {
                None => case.not_measured = Some("configuration did not start".into()),
                Some(r) => {
                    if let Err(e) = probe(&r.envoy, w).await {
                        case.not_measured = Some(e);
                    }
                }
            }
            if let Some(why) = &case.not_measured {
                eprintln!("    {} / {id}: not measured: {why}", w.id);
            }
            cases.push(case);
        }
    }
    let live = |cases: &Vec<CaseResult>, w: &str, s: &str| {
        cases
            .iter()
            .position(|c| c.workload == w && c.setup == s && c.not_measured.is_none())
    };

    // Warm every VM up (V8 tiers hot code up) with its first workload.
    for r in &running {
        if let Some((w, _)) = matrix
            .iter()
            .find(|(w, s)| s.contains(&r.setup.id) && live(&cases, w.id, r.setup.id).is_some())
        {
            eprintln!("==> warm up {} ({})", r.setup.id, w.id);
            let _ = blocking(|| {
                loadgen::closed_loop(
                    r.envoy.port,
                    r.envoy.pid(),
                    w,
                    &scripts[w.id],
                    profile.warmup_secs,
                )
            });
        }
    }

    // Closed loop, interleaved, alternating direction every round.
    for round in 0..profile.repeats {
        for (w, ids) in &matrix {
            for id in interleaved(ids, round) {
                let (Some(i), Some(r)) = (live(&cases, w.id, id), find(id)) else {
                    continue;
                };
                let res: Result<Closed> = blocking(|| {
                    loadgen::closed_loop(
                        r.envoy.port,
                        r.envoy.pid(),
                        w,
                        &scripts[w.id],
                        profile.closed_secs,
                    )
                });
                match res {
                    Ok(c) => {
                        eprintln!(
                            "    round {} {:<18} {:<20} {:>9.0} req/s{}",
                            round + 1,
                            w.id,
                            id,
                            c.rps(),
                            if c.failures() > 0 {
                                format!("  ({} failed)", c.failures())
                            } else {
                                String::new()
                            }
                        );
                        cases[i].closed.push(c);
                    }
                    Err(e) => cases[i].errors.push(format!("{e:#}")),
                }
                collector.0.clear();
            }
        }
    }

    // Open loop at half the ceiling's capacity for that workload (the
    // issue's rate). The latency target's workload also runs at half the
    // slowest configuration's capacity, where no configuration queues, so
    // that "p50 added" measures a request and not a backlog.
    let capacity = |w: &str, id: &str| {
        let i = live(&cases, w, id)?;
        let c = cases.get(i)?;
        c.valid()
            .then(|| report::median(c.closed.iter().map(Closed::rps).collect()))?
    };
    let mut open_rates = BTreeMap::new();
    let mut common_rates = BTreeMap::new();
    for (w, ids) in matrix.iter().filter(|(w, _)| w.open_loop_capable()) {
        if let Some(rps) = capacity(w.id, "ceiling") {
            open_rates.insert(w.id.to_string(), (rps / 2.0).floor());
        }
        if w.id == report::LATENCY_WORKLOAD {
            let slowest = ids
                .iter()
                .filter_map(|id| capacity(w.id, id))
                .reduce(f64::min);
            if let Some(rps) = slowest {
                common_rates.insert(w.id.to_string(), (rps / 2.0).floor());
            }
        }
    }
    for (common, rates) in [(false, &open_rates), (true, &common_rates)] {
        for round in 0..profile.repeats {
            for (w, ids) in &matrix {
                let Some(rate) = rates.get(w.id).copied() else {
                    continue;
                };
                for id in interleaved(ids, round) {
                    let (Some(i), Some(r)) = (live(&cases, w.id, id), find(id)) else {
                        continue;
                    };
                    let res: Result<Open> =
                        blocking(|| loadgen::open_loop(r.envoy.port, w, rate, profile.open_secs));
                    match res {
                        Ok(o) => {
                            eprintln!(
                            "    open{} {} {:<18} {:<20} p50 {:>7.0} µs  p99 {:>7.0} µs  ({:.0}/{:.0} req/s)",
                            if common { " (common rate)" } else { "" },
                            round + 1,
                            w.id,
                            id,
                            o.p50_us,
                            o.p99_us,
                            o.achieved_rps,
                            o.target_rps
                        );
                            if common {
                                cases[i].open_common.push(o);
                            } else {
                                cases[i].open.push(o);
                            }
                        }
                        Err(e) => cases[i].errors.push(format!("{e:#}")),
                    }
                    collector.0.clear();
                }
            }
        }
    }

    for r in &running {
        if let Some(s) = setup_results.iter_mut().find(|s| s.id == r.setup.id) {
            let (rss, hwm) = memory(r.envoy.pid());
            s.rss_after = rss;
            s.rss_peak = hwm;
            s.heap_allocated = heap_allocated(&r.envoy).await;
            if let Ok(stats) = r.envoy.stats().await {
                for part in ["wasmcustom.", "jwt_authn.", "bench_rate_limit", "wasm."] {
                    s.stats.extend(stats.matching(part));
                }
            }
        }
    }
    drop(running);
    Ok(Measured {
        setups: setup_results,
        cases,
        open_rates,
        common_rates,
    })
}

/// A workload's configurations in run order: reversed every other round,
/// so drift on a shared machine spreads over all of them.
fn interleaved<'a>(ids: &'a [&'static str], round: usize) -> Vec<&'a &'static str> {
    let mut order: Vec<_> = ids.iter().collect();
    if round % 2 == 1 {
        order.reverse();
    }
    order
}

/// Runs a blocking load generator without starving the helper servers.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// One request with the workload's headers must get a 200.
async fn probe(envoy: &Envoy, w: &Workload) -> std::result::Result<(), String> {
    let client = reqwest::Client::new();
    let mut req = client.get(envoy.url(workloads::PATH));
    for (k, v) in w.sample_headers() {
        req = req.header(k, v);
    }
    let resp = req.send().await.map_err(|e| format!("probe failed: {e}"))?;
    let status = resp.status();
    if status.as_u16() == 200 {
        return Ok(());
    }
    let body = resp.text().await.unwrap_or_default();
    Err(format!(
        "a probe request got {status} ({}), not 200",
        body.chars().take(160).collect::<String>().trim()
    ))
}

/// tcmalloc's live bytes, from the admin `/memory` (a JSON string).
async fn heap_allocated(envoy: &Envoy) -> Option<u64> {
    let body: serde_json::Value = reqwest::get(envoy.admin_url("/memory"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body.get("allocated")?.as_str()?.parse().ok()
}

/// `(VmRSS, VmHWM)` of a process, in bytes.
fn memory(pid: u32) -> (Option<u64>, Option<u64>) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The informative lines of a failed start (Envoy's critical/error lines).
fn reason(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("[critical]") || l.contains("[error]"))
        .map(|l| l.rsplit("] ").next().unwrap_or(l))
        .collect();
    let picked = if lines.is_empty() {
        text.lines().next().unwrap_or("").to_string()
    } else {
        lines.join(" / ")
    };
    picked.chars().take(300).collect()
}

const BEGIN: &str = "<!-- bench:results:begin (written by `cargo xtask bench`) -->";
const END: &str = "<!-- bench:results:end -->";

/// Replaces the results block of BENCHMARKS.md, keeping the prose around it.
fn update_benchmarks_md(markdown: &str) -> Result<()> {
    let path = root().join("BENCHMARKS.md");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let block = format!("{BEGIN}\n{markdown}\n{END}");
    let new = match (text.find(BEGIN), text.find(END)) {
        (Some(a), Some(b)) if b > a => format!("{}{block}{}", &text[..a], &text[b + END.len()..]),
        _ => format!("{text}\n{block}\n"),
    };
    std::fs::write(&path, new).with_context(|| format!("writing {}", path.display()))
}
