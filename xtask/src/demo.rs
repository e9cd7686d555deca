//! `cargo xtask demo`: the full chain in a real Envoy on 127.0.0.1:10000,
//! with a demo upstream, a demo issuer (a fresh key pair whose JWKS is
//! served locally) and a local audit collector.

use anyhow::Result;
use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::servers::{Collector, EchoUpstream, JwksServer};
use e2e::tokens::RsaIssuer;
use serde_json::json;

pub const ISSUER: &str = "https://issuer.demo.local";
pub const AUDIENCE: &str = "demo-api";

pub fn demo(tour: bool) -> Result<()> {
    crate::build::build()?;
    let envoy_bin = e2e::paths::ensure_envoy()?;
    println!(
        "envoy: {} ({})",
        envoy_bin.display(),
        e2e::paths::envoy_version(&envoy_bin)?
    );
    std::env::set_var("ENVOY_BIN", &envoy_bin);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(run(tour))
}

struct Demo {
    envoy: Envoy,
    issuer: RsaIssuer,
    collector: Collector,
    _upstream: EchoUpstream,
    _jwks: JwksServer,
}

async fn start(fixed_ports: bool) -> Result<Demo> {
    let issuer = RsaIssuer::new(ISSUER, "demo-key-1")?;
    let upstream = EchoUpstream::start().await?;
    let jwks = JwksServer::start(&issuer.jwks()).await?;
    let collector = Collector::start().await?;
    let mut opts = EnvoyOptions::new("chain.yaml")
        .upstream(upstream.port())
        .jwks(jwks.port())
        .collector(collector.port());
    if fixed_ports {
        opts = opts.fixed_ports();
    }
    let envoy = Envoy::start(opts).await?;
    Ok(Demo {
        envoy,
        issuer,
        collector,
        _upstream: upstream,
        _jwks: jwks,
    })
}

async fn run(tour: bool) -> Result<()> {
    // The tour uses ephemeral ports so it can run beside anything else.
    let demo = start(!tour).await?;
    if tour {
        return crate::tour::run(&demo.envoy, &demo.issuer, &demo.collector).await;
    }
    let base = demo.envoy.url("");
    let reader = demo.issuer.token(
        "alice",
        AUDIENCE,
        3600,
        json!({"scope": "read", "roles": ["viewer"]}),
    );
    let writer = demo.issuer.token(
        "bob",
        AUDIENCE,
        3600,
        json!({"scope": "read write", "roles": ["editor"]}),
    );
    println!(
        "\nThe full chain (envoy/chain.yaml) is listening on {base}
Envoy admin: {admin}

Try:
  curl -i {base}/api/items                                         # no token
  curl -i -H 'Authorization: Bearer {reader}' {base}/api/items
  curl -i -X POST -H 'Authorization: Bearer {reader}' {base}/api/items   # read-only token
  curl -i -X POST -H 'Authorization: Bearer {writer}' {base}/api/items
  for i in $(seq 1 20); do curl -s -o /dev/null -w '%{{http_code}} ' -H 'Authorization: Bearer {reader}' {base}/api/items; done; echo
  curl -s {admin}/stats | grep wasmcustom

Audit events are posted to a local collector and printed below as they arrive.
Press Ctrl-C to stop.",
        admin = demo.envoy.admin_url(""),
    );
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = tokio::time::sleep(std::time::Duration::from_millis(500)) => {
                let received = demo.collector.received();
                for r in received.iter().skip(seen) {
                    for line in String::from_utf8_lossy(&r.body).lines() {
                        println!("audit: {line}");
                    }
                }
                seen = received.len();
            }
        }
    }
    println!("\nstopping");
    Ok(())
}
