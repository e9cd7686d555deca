//! The load generators, installed when missing, pinned to the load core:
//! `wrk` (Debian) for closed-loop maximum throughput, its Lua varying headers
//! per request; `oha` (crates.io) for open-loop latency at a fixed rate with
//! coordinated-omission correction.

use super::workloads::{Workload, PATH};
use crate::tools::{apt_install, has, run};
use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::path::Path;
use std::process::Command;

/// Connections held open by either generator (both keep-alive, HTTP/1.1).
pub const CONNECTIONS: u32 = 16;

/// The core the load generator (and this process) runs on; Envoy gets the other.
pub const LOAD_CORE: &str = "1";
pub const ENVOY_CORE: &str = "0";

/// Installs `wrk` with apt and `oha` with cargo when they are missing.
pub fn ensure_tools() -> Result<()> {
    if !runs("wrk", "-v") {
        apt_install("wrk")?;
    }
    if has("oha", "--version").is_none() {
        run(
            "cargo install oha --locked (once, a few minutes)",
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .args(["install", "oha", "--locked"]),
        )?;
    }
    if has("taskset", "--version").is_none() {
        bail!(
            "taskset (util-linux) is needed to pin Envoy and the load generator to separate cores"
        );
    }
    Ok(())
}

/// `wrk -v` exits non-zero; does it start at all?
fn runs(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).output().is_ok()
}

pub fn versions() -> (String, String) {
    let wrk = Command::new("wrk")
        .arg("-v")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines().next().unwrap_or("wrk").trim().to_string()
        })
        .unwrap_or_else(|_| "wrk".into());
    let oha = has("oha", "--version").unwrap_or_else(|| "oha".into());
    (wrk, oha)
}

/// One closed-loop run.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Closed {
    pub requests: u64,
    pub duration_us: u64,
    pub connect_errors: u64,
    pub read_errors: u64,
    pub write_errors: u64,
    pub timeouts: u64,
    pub non_2xx: u64,
    /// Closed-loop latencies (not corrected: for context only).
    pub latency_us: ClosedLatency,
    /// CPU time Envoy used during the run (user + system, all threads).
    #[serde(default)]
    pub envoy_cpu_us: Option<u64>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct ClosedLatency {
    pub mean: f64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

impl Closed {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }
    /// Envoy's CPU time per request: what the filters cost, even when
    /// other processes took part of Envoy's core (throughput then drops,
    /// this does not).
    pub fn cpu_us_per_request(&self) -> Option<f64> {
        Some(self.envoy_cpu_us? as f64 / self.requests.max(1) as f64)
    }
    pub fn failures(&self) -> u64 {
        self.non_2xx + self.connect_errors + self.read_errors + self.write_errors + self.timeouts
    }
}

/// `wrk -t1 -c16 -d<secs>s` with the workload's script, on the load core.
pub fn closed_loop(
    port: u16,
    pid: u32,
    workload: &Workload,
    script: &Path,
    secs: u32,
) -> Result<Closed> {
    let cpu_before = cpu_us(pid);
    let out = Command::new("taskset")
        .args(["-c", LOAD_CORE, "wrk", "-t1"])
        .arg(format!("-c{CONNECTIONS}"))
        .arg(format!("-d{secs}s"))
        .arg("-s")
        .arg(script)
        .arg(format!("http://127.0.0.1:{port}{PATH}"))
        .output()
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH_JSON "))
        .with_context(|| {
            format!(
                "wrk ({}) printed no summary:\n{stdout}\n{}",
                workload.id,
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let mut closed: Closed =
        serde_json::from_str(line).with_context(|| format!("parsing wrk's summary {line}"))?;
    closed.envoy_cpu_us = cpu_before
        .zip(cpu_us(pid))
        .map(|(a, b)| b.saturating_sub(a));
    Ok(closed)
}

/// User + system CPU time of a process so far, in µs (`/proc/<pid>/stat`).
fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// One open-loop run.
#[derive(Debug, Clone, Serialize)]
pub struct Open {
    pub target_rps: f64,
    pub achieved_rps: f64,
    pub requests: u64,
    pub non_2xx: u64,
    pub errors: u64,
    /// Corrected for coordinated omission (latency from the scheduled send).
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
}

/// `oha -q <rate> --latency-correction` for `secs`, on the load core.
pub fn open_loop(port: u16, workload: &Workload, rate: f64, secs: u32) -> Result<Open> {
    let mut cmd = Command::new("taskset");
    cmd.args([
        "-c",
        LOAD_CORE,
        "oha",
        "--no-tui",
        "--output-format",
        "json",
    ])
    .arg("-z")
    .arg(format!("{secs}s"))
    .arg("-c")
    .arg(CONNECTIONS.to_string())
    .arg("-q")
    .arg(format!("{rate:.0}"))
    .arg("--latency-correction");
    for (k, v) in workload.sample_headers() {
        cmd.arg("-H").arg(format!("{k}: {v}"));
    }
    cmd.arg(format!("http://127.0.0.1:{port}{PATH}"));
    let out = cmd.output().context("running oha")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "oha ({}) printed no JSON:\n{}",
            workload.id,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let us = |k: &str| v["latencyPercentiles"][k].as_f64().unwrap_or(f64::NAN) * 1e6;
    let mut ok = 0;
    let mut requests = 0;
    if let Some(codes) = v["statusCodeDistribution"].as_object() {
        for (code, n) in codes {
            let n = n.as_u64().unwrap_or(0);
            requests += n;
            if code.starts_with('2') {
                ok += n;
            }
        }
    }
    let errors = v["errorDistribution"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(|n| n.as_u64()).sum());
    Ok(Open {
        target_rps: rate,
        achieved_rps: v["summary"]["requestsPerSec"].as_f64().unwrap_or(0.0),
        requests,
        non_2xx: requests - ok,
        errors,
        p50_us: us("p50"),
        p90_us: us("p90"),
        p99_us: us("p99"),
    })
}
