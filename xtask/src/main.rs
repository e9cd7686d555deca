//! `cargo xtask <command>`: the project's build, run and test automation.

mod audit_verify;
mod bench;
mod build;
mod check_config;
mod demo;
mod fuzz;
mod oci;
#[cfg(test)]
mod schema_agreement;
mod schemas;
mod soak;
mod test;
mod token;
mod toolchain;
mod tools;
mod tour;

use anyhow::{bail, Result};
use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  build           release build of every filter for wasm32-wasip1, sizes printed
  envoy           find (or install) Envoy and print its version
  demo [--tour]   the full chain in Envoy on 127.0.0.1:10000 with a demo upstream and issuer;
                  --tour runs a scripted tour and exits
  bench [--quick] our wasm filters against Envoy's native ones, side by side (BENCHMARKS.md);
                  --quick finishes in under 5 minutes, --only <text> keeps matching cases,
                  --before <git rev> also measures ours built at that revision, side by side;
                  --profile <configuration> [--workload <id>] [--seconds N] samples one
                  configuration under load with perf and prints where the time goes;
                  --calibrate prices each kind of host call (µs per call, medians)
  audit-verify FILE
                  check the hash chains of an NDJSON file of audit events; reports the
                  first deleted, reordered or altered event per producer, exits non-zero
  check-config FILE [--filter chain|jwt-auth|rate-limit|audit-log]
                  check plugin configurations offline with the filters' own parsers: a JSON
                  configuration (with --filter), an Istio WasmPlugin (its pluginConfig, for the
                  module its url names) or an Envoy config (every wasm filter in it); prints
                  what Envoy would log, exits non-zero when one is refused
  schemas         write schemas/<filter>.schema.json from the config types
  fuzz [--seconds N] [TARGET...]
                  every cargo-fuzz target in tests/fuzz for N seconds (default 30), then the
                  executions each reached (needs the nightly toolchain; installs cargo-fuzz)
  oci [--variant compat|oci] [--module NAME] [--push HOST:PORT/REPO:TAG]
                  each module as an OCI image for Istio's WasmPlugin, built without Docker:
                  target/oci/<variant>/<module>/ (image layout), <module>.tar and
                  <module>.wasmplugin.yaml; prints the manifest digest and the module's sha256;
                  --push sends one module's image to a registry (plain HTTP on loopback)
  soak            the long drills kept out of `test` (a million rate-limit keys, ...)
  token [--sub S] [--scope \"a b\"] [--ttl SECONDS] [--aud A]
                  prints a token for the docker-compose demo (envoy/docker-compose.yaml),
                  signed with the DEMO ONLY key in envoy/demo/ (defaults: alice, read, 3600)
  test            fmt, clippy (host and wasm32), unit tests (host and wasm32 under Node),
                  end-to-end tests in real Envoy
";

/// An expected failure (a step failed, a tool is missing) prints its error
/// chain on one line, not a backtrace.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Commands that compile for wasm32 first add what `rust-toolchain.toml` lists.
const BUILDS: [&str; 6] = ["build", "demo", "test", "bench", "soak", "oci"];

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let command = args.first().map(String::as_str);
    if command.is_some_and(|c| BUILDS.contains(&c)) {
        toolchain::ensure()?;
    }
    match command {
        Some("build") => build::build().map(|_| ()),
        Some("envoy") => {
            let envoy = e2e::paths::ensure_envoy()?;
            println!(
                "envoy: {} ({})",
                envoy.display(),
                e2e::paths::envoy_version(&envoy)?
            );
            Ok(())
        }
        Some("demo") => demo::demo(rest.contains(&"--tour")),
        Some("test") => test::test(),
        Some("soak") => soak::soak(),
        Some("token") => token::token(&rest),
        Some("fuzz") => fuzz::fuzz(&rest),
        Some("oci") => oci::oci(&rest),
        Some("audit-verify") => audit_verify::audit_verify(rest.first().copied()),
        Some("bench") => bench::bench(&rest),
        Some("check-config") => check_config::check_config(&rest),
        Some("schemas") => schemas::write(),
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}
