//! `cargo xtask soak`: the long drills kept out of `cargo xtask test`
//! (`#[ignore]`d end-to-end tests): a million distinct rate-limit keys with
//! Envoy's memory watched; the audit collector dead at a steady rate; a
//! unique JWT per request; mixed traffic through the chain module.
//! `SOAK_SECONDS` (default 600) sets how long each timed soak runs and
//! `SOAK_SAMPLE_SECONDS` (default 10) how often Envoy's RSS is read; both
//! reach the tests through the environment.

use crate::tools::{cargo, run};
use anyhow::Result;

/// Test files holding `#[ignore]`d soaks.
const SOAKS: [&str; 2] = ["rate_limit", "soaks"];

pub fn soak() -> Result<()> {
    crate::build::build()?;
    let envoy = e2e::paths::ensure_envoy()?;
    let seconds = std::env::var("SOAK_SECONDS").unwrap_or_else(|_| "600".into());
    eprintln!("soak: {seconds} s per timed soak (SOAK_SECONDS)");
    for file in SOAKS {
        run(
            &format!("soak: {file}"),
            cargo()
                .args(["test", "-p", "e2e", "--test", file, "--"])
                .args(["--ignored", "--nocapture", "--test-threads", "1"])
                .env("ENVOY_BIN", &envoy),
        )?;
    }
    Ok(())
}
