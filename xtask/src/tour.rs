//! `cargo xtask demo --tour`: a scripted walk through what the chain does.

use anyhow::{bail, Result};
use e2e::envoy::Envoy;
use e2e::servers::Collector;
use e2e::tokens::RsaIssuer;

pub async fn run(envoy: &Envoy, _issuer: &RsaIssuer, _collector: &Collector) -> Result<()> {
    let client = reqwest::Client::new();
    println!("\n== the chain is up: a request passes through to the echo upstream");
    let resp = client.get(envoy.url("/api/items")).send().await?;
    let status = resp.status();
    println!("GET /api/items -> {status}");
    if !status.is_success() {
        bail!("expected the request to reach the upstream, got {status}");
    }
    println!("\ntour finished");
    Ok(())
}
