//! `cargo xtask build`: every filter as a release `.wasm` for Envoy.

use crate::tools::{cargo, has, run};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The modules we ship, by crate name.
pub const MODULES: [&str; 4] = ["jwt-auth", "rate-limit", "audit-log", "chain"];

/// Builds every module and prints its size. Returns their paths.
pub fn build() -> Result<Vec<PathBuf>> {
    // One cargo invocation per module: features unify within an invocation,
    // and the filter crates' `plugin` feature (their entry point) must stay
    // off when they are linked into `chain`.
    for m in MODULES {
        run(
            &format!("build {m} (wasm32-wasip1, release)"),
            cargo().args([
                "build",
                "--quiet",
                "--release",
                "--target",
                "wasm32-wasip1",
                "-p",
                m,
            ]),
        )?;
    }
    let wasm_opt = has("wasm-opt", "--version");
    let mut out = Vec::new();
    println!("\nmodules:");
    for m in MODULES {
        let path = e2e::paths::wasm_module(m);
        let raw = std::fs::metadata(&path)
            .with_context(|| format!("{} was not built", path.display()))?
            .len();
        if wasm_opt.is_some() {
            optimise(&path)?;
        }
        let size = std::fs::metadata(&path)?.len();
        let note = if wasm_opt.is_some() {
            format!(" (wasm-opt: {:.1} KiB before)", raw as f64 / 1024.0)
        } else {
            String::new()
        };
        println!(
            "  {:<44} {:>8.1} KiB{note}",
            path.display(),
            size as f64 / 1024.0
        );
        out.push(path);
    }
    if wasm_opt.is_none() {
        println!("  (wasm-opt not found: modules are not size-optimised; install binaryen to shrink them)");
    }
    Ok(out)
}

/// Runs wasm-opt on a module in place; keeps the module if wasm-opt fails.
pub fn optimise(path: &Path) -> Result<()> {
    let tmp = path.with_extension("opt.wasm");
    let status = Command::new("wasm-opt")
        .args([
            "-O3",
            "--enable-bulk-memory",
            "--enable-sign-ext",
            "--enable-nontrapping-float-to-int",
            "--enable-mutable-globals",
        ])
        .arg(path)
        .arg("-o")
        .arg(&tmp)
        .status()?;
    if status.success() {
        std::fs::rename(&tmp, path)?;
    } else {
        eprintln!(
            "wasm-opt failed on {}; keeping the unoptimised module",
            path.display()
        );
    }
    Ok(())
}

/// [`optimise`], for callers that go on whatever happens.
pub fn optimise_quietly(path: &Path) {
    if let Err(e) = optimise(path) {
        eprintln!("wasm-opt on {}: {e:#}", path.display());
    }
}
