//! `cargo xtask fuzz [--seconds N] [TARGET...]`: every cargo-fuzz target in
//! `tests/fuzz` for a bounded time each (default 30 s), then the executions
//! each reached. Not part of `cargo xtask test`: it needs nightly and time.
//!
//! New inputs go to a scratch corpus under the target directory; the
//! checked-in seeds (`tests/fuzz/corpus/<target>`) are only read. A crash
//! leaves its input in `tests/fuzz/artifacts/<target>/` and fails the run.

use crate::tools::root;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const FUZZ_DIR: &str = "tests/fuzz";
const DEFAULT_SECONDS: u64 = 30;

/// How one target's run ended.
struct Outcome {
    target: String,
    runs: Option<u64>,
    crash: Option<String>,
    log: PathBuf,
}

pub fn fuzz(args: &[&str]) -> Result<()> {
    let mut seconds = DEFAULT_SECONDS;
    let mut only = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--seconds" => {
                seconds = it
                    .next()
                    .and_then(|s| s.parse().ok())
                    .filter(|s| *s > 0)
                    .context("--seconds takes a positive number")?;
            }
            t if !t.starts_with('-') => only.push(t.to_string()),
            other => bail!("fuzz: unknown option `{other}`"),
        }
    }
    ensure_cargo_fuzz()?;
    let targets: Vec<String> = list_targets()?
        .into_iter()
        .filter(|t| only.is_empty() || only.contains(t))
        .collect();
    if targets.is_empty() {
        bail!("fuzz: no target matches {only:?}");
    }
    eprintln!("==> build fuzz targets (nightly, sanitizers)");
    let status = nightly()
        .args(["fuzz", "build", "--fuzz-dir", FUZZ_DIR])
        .status()
        .context("could not run cargo +nightly fuzz build")?;
    if !status.success() {
        bail!("fuzz: build failed ({status})");
    }
    let scratch = fuzz_dir();
    let mut outcomes = Vec::new();
    for t in &targets {
        outcomes.push(run_target(t, seconds, &scratch)?);
    }
    println!("\n{:<22} {:>14}  result", "target", "executions");
    for o in &outcomes {
        let runs = o.runs.map_or("?".to_string(), |n| n.to_string());
        let result = o.crash.as_deref().unwrap_or("ok");
        println!("{:<22} {runs:>14}  {result}", o.target);
    }
    println!(
        "({seconds} s per target; logs in {})",
        scratch.join("logs").display()
    );
    let crashed: Vec<_> = outcomes.iter().filter(|o| o.crash.is_some()).collect();
    if !crashed.is_empty() {
        for o in &crashed {
            eprintln!("{}: see {}", o.target, o.log.display());
        }
        bail!("fuzz: {} target(s) crashed", crashed.len());
    }
    Ok(())
}

/// `cargo +nightly`, with the pinned toolchain's variables cleared so the
/// nightly one is used all the way down (cargo-fuzz calls cargo again), and
/// its own target directory: nightly artifacts beside the pinned
/// toolchain's make the next stable build fail (E0514).
fn nightly() -> Command {
    let mut c = Command::new("cargo");
    c.arg("+nightly")
        .current_dir(root())
        .env("RUSTUP_TOOLCHAIN", "nightly")
        .env("CARGO_TARGET_DIR", fuzz_dir())
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC");
    c
}

/// Where nightly builds, the scratch corpora and the logs go.
fn fuzz_dir() -> PathBuf {
    e2e::paths::target_dir().join("fuzz")
}

fn ensure_cargo_fuzz() -> Result<()> {
    let present = nightly()
        .args(["fuzz", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    eprintln!("==> cargo install cargo-fuzz");
    let status = nightly()
        .args(["install", "--locked", "cargo-fuzz"])
        .status()
        .context("could not run cargo install")?;
    if !status.success() {
        bail!("fuzz: installing cargo-fuzz failed ({status})");
    }
    Ok(())
}

fn list_targets() -> Result<Vec<String>> {
    let out = nightly()
        .args(["fuzz", "list", "--fuzz-dir", FUZZ_DIR])
        .output()
        .context("could not run cargo +nightly fuzz list")?;
    if !out.status.success() {
        bail!(
            "fuzz: cargo fuzz list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

fn run_target(target: &str, seconds: u64, scratch: &Path) -> Result<Outcome> {
    let corpus = scratch.join("corpus").join(target);
    let logs = scratch.join("logs");
    std::fs::create_dir_all(&corpus)?;
    std::fs::create_dir_all(&logs)?;
    let log_path = logs.join(format!("{target}.log"));
    let mut log = File::create(&log_path)?;
    let seeds = root().join(FUZZ_DIR).join("corpus").join(target);
    eprintln!("==> fuzz {target} ({seconds} s)");
    let mut child = nightly()
        .args(["fuzz", "run", "--fuzz-dir", FUZZ_DIR, target])
        .arg(&corpus)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        // An input slower than this is reported as a hang.
        .arg("-timeout=10")
        .arg("-print_final_stats=1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("could not run cargo fuzz run {target}"))?;
    let mut runs = None;
    let mut crash = None;
    if let Some(err) = child.stderr.take() {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            writeln!(log, "{line}")?;
            if let Some(n) = executions(&line) {
                runs = Some(n);
            }
            if let Some(path) = line.split("Test unit written to ").nth(1) {
                crash = Some(format!("CRASH, input in {}", path.trim()));
            } else if crash.is_none() && line.contains("ERROR: libFuzzer") {
                crash = Some("CRASH (see log)".to_string());
            }
        }
    }
    let status = child.wait()?;
    if !status.success() && crash.is_none() {
        crash = Some(format!("failed ({status})"));
    }
    Ok(Outcome {
        target: target.to_string(),
        runs,
        crash,
        log: log_path,
    })
}

/// Executions from libFuzzer's final lines: `stat::number_of_executed_runs: N`
/// or `#N DONE ...`.
fn executions(line: &str) -> Option<u64> {
    if let Some(n) = line.strip_prefix("stat::number_of_executed_runs:") {
        return n.trim().parse().ok();
    }
    let rest = line.strip_prefix('#')?;
    let mut words = rest.split_whitespace();
    let n = words.next()?.parse().ok()?;
    (words.next() == Some("DONE")).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::executions;

    #[test]
    fn reads_libfuzzer_totals() {
        assert_eq!(
            executions("stat::number_of_executed_runs: 123456"),
            Some(123456)
        );
        assert_eq!(
            executions("#98765\tDONE   cov: 3315 ft: 5580 corp: 20/7238b"),
            Some(98765)
        );
        assert_eq!(executions("#4096\tpulse  cov: 3315"), None);
        assert_eq!(executions("INFO: Seed: 1"), None);
    }
}
