//! `cargo xtask test`: every check, in order, failing loudly. This is what
//! CI runs (`.ci/run`).

use crate::tools::{apt_install, cargo, has, root, run, run_tests, Tally};
use anyhow::{bail, Context, Result};
use std::process::Command;

/// Crates whose core logic must also pass under Node on wasm32.
const CORE_CRATES: [&str; 5] = [
    "filter-common",
    "jwt-auth",
    "rate-limit",
    "audit-log",
    "chain",
];

pub fn test() -> Result<()> {
    run(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--check"]),
    )?;
    run(
        "clippy (host)",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    let mut wasm_clippy = cargo();
    wasm_clippy.args(["clippy", "--target", "wasm32-wasip1"]);
    for c in CORE_CRATES {
        wasm_clippy.args(["-p", c]);
    }
    run(
        "clippy (wasm32-wasip1)",
        wasm_clippy.args(["--", "-D", "warnings"]),
    )?;
    let mut tally = Tally::default();
    run_tests(
        "unit tests (host)",
        cargo().args(["test", "--workspace", "--exclude", "e2e"]),
        &mut tally,
    )?;
    run_tests(
        "harness unit tests",
        cargo().args(["test", "-p", "e2e", "--lib"]),
        &mut tally,
    )?;
    wasm_unit_tests(&mut tally)?;
    crate::build::build()?;
    ensure_debian_packages()?;
    let envoy = e2e::paths::ensure_envoy()?;
    eprintln!(
        "envoy: {} ({})",
        envoy.display(),
        e2e::paths::envoy_version(&envoy)?
    );
    run_tests(
        "end-to-end tests (real Envoy)",
        cargo()
            .args(["test", "-p", "e2e", "--tests"])
            .env("ENVOY_BIN", &envoy),
        &mut tally,
    )?;
    eprintln!("\nall checks passed");
    // One plain closing line over every suite (ignored tests are the soaks
    // and benchmarks, run by `cargo xtask soak` and `cargo xtask bench`).
    println!(
        "xtask: {} passed, {} failed, {} skipped",
        tally.passed, tally.failed, tally.ignored
    );
    Ok(())
}

/// The core crates' tests compiled to wasm32 and run under Node by
/// wasm-bindgen-test, with the wasm-bindgen-cli version Cargo.lock pins.
fn wasm_unit_tests(tally: &mut Tally) -> Result<()> {
    if has("node", "--version").is_none() {
        bail!("node is needed for the wasm32 unit tests (wasm-bindgen-test); install Node.js 18 or newer");
    }
    let version = locked_version("wasm-bindgen")?;
    let runner = ensure_wasm_bindgen_runner(&version)?;
    let mut cmd = cargo();
    cmd.args(["test", "--target", "wasm32-unknown-unknown"]);
    for c in CORE_CRATES {
        cmd.args(["-p", c]);
    }
    // The filter crates' `plugin` feature only matters on wasm32-wasip1.
    cmd.env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", runner);
    run_tests("unit tests (wasm32 under Node)", &mut cmd, tally)
}

/// The version of a package in Cargo.lock.
fn locked_version(package: &str) -> Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let needle = format!("name = \"{package}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == needle {
            if let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
            {
                return Ok(v.trim_matches('"').to_string());
            }
        }
    }
    bail!("{package} is not in Cargo.lock")
}

/// `wasm-bindgen-test-runner` of exactly `version`, installed with cargo when
/// missing or different (cargo caches it in ~/.cargo/bin).
fn ensure_wasm_bindgen_runner(version: &str) -> Result<String> {
    let runner = "wasm-bindgen-test-runner";
    let installed = has(runner, "--version").unwrap_or_default();
    if installed.split_whitespace().last() == Some(version) {
        return Ok(runner.to_string());
    }
    eprintln!("wasm-bindgen-cli {version} is needed (found: {installed:?}); installing it (a few minutes, once)");
    run(
        &format!("cargo install wasm-bindgen-cli {version}"),
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "install",
            "wasm-bindgen-cli",
            "--version",
            version,
        ]),
    )?;
    let after = has(runner, "--version").unwrap_or_default();
    if after.split_whitespace().last() != Some(version) {
        bail!(
            "{runner} still reports {after:?} after installing {version}: is ~/.cargo/bin on PATH?"
        );
    }
    Ok(runner.to_string())
}

/// Debian packages the end-to-end tests start: `docker-registry`
/// (distribution 2.8, for the OCI round trip in tests/tests/oci.rs).
fn ensure_debian_packages() -> Result<()> {
    let registry = e2e::registry::REGISTRY_BIN;
    if std::path::Path::new(registry).is_file() {
        return Ok(());
    }
    eprintln!("{registry} is missing; installing the docker-registry package");
    apt_install("docker-registry")?;
    if !std::path::Path::new(registry).is_file() {
        bail!("{registry} is still missing after installing docker-registry");
    }
    Ok(())
}
