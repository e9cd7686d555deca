//! `cargo xtask audit-verify FILE`: checks the hash chains of an NDJSON
//! file of audit events (or `_bulk` bodies). The logic is
//! `audit_log::chain_verify`; this only reads the file and prints.

use anyhow::{bail, Context, Result};

pub fn audit_verify(file: Option<&str>) -> Result<()> {
    let Some(file) = file else {
        bail!("usage: cargo xtask audit-verify FILE");
    };
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    let report = audit_log::chain_verify::verify(&text);
    print!("{report}");
    if report.producers.is_empty() && report.malformed.is_empty() {
        bail!("{file}: no audit events");
    }
    if !report.is_ok() {
        eprintln!("{file}: the audit chain is broken");
        std::process::exit(1);
    }
    Ok(())
}
