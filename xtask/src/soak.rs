//! `cargo xtask soak`: the long drills kept out of `cargo xtask test`
//! (`#[ignore]`d end-to-end tests: a million distinct rate-limit keys with
//! Envoy's memory watched, and the like).

use crate::tools::{cargo, run};
use anyhow::Result;

/// Test files holding `#[ignore]`d soaks.
const SOAKS: [&str; 1] = ["rate_limit"];

pub fn soak() -> Result<()> {
    crate::build::build()?;
    let envoy = e2e::paths::ensure_envoy()?;
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
