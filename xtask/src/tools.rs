//! Running commands, loudly.

use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::process::Command;

pub fn root() -> PathBuf {
    e2e::paths::workspace_root()
}

pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

/// Runs a command, failing with its name when it fails.
pub fn run(step: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("==> {step}");
    let status = cmd
        .status()
        .with_context(|| format!("{step}: could not start {cmd:?}"))?;
    if !status.success() {
        bail!("{step}: failed ({status})");
    }
    Ok(())
}

/// Is a program on PATH (and does it run)?
pub fn has(program: &str, version_arg: &str) -> Option<String> {
    let out = Command::new(program).arg(version_arg).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
