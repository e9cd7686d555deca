//! `cargo xtask token`: prints a token for the docker-compose demo, signed
//! with the DEMO ONLY key checked in under `envoy/demo/` (anyone can mint
//! these; see envoy/demo/README.md). Only the token goes to stdout, so
//! `TOKEN=$(cargo xtask token)` works; what it says goes to stderr.

use anyhow::{bail, Context, Result};
use e2e::demo_issuer::{self, TokenRequest};

const USAGE: &str =
    "usage: cargo xtask token [--sub S] [--scope \"a b\"] [--ttl SECONDS] [--aud A]";

pub fn token(args: &[&str]) -> Result<()> {
    if args.iter().any(|a| matches!(*a, "-h" | "--help")) {
        println!("{USAGE}");
        return Ok(());
    }
    let req = parse(args)?;
    let token = demo_issuer::token(&req)?;
    eprintln!(
        "token for iss={} aud={} sub={} scope={:?}, valid {} s (DEMO ONLY key, envoy/demo/)",
        demo_issuer::ISSUER,
        req.audience,
        req.sub,
        req.scope,
        req.ttl_secs
    );
    println!("{token}");
    Ok(())
}

fn parse(args: &[&str]) -> Result<TokenRequest> {
    let mut req = TokenRequest::default();
    let mut it = args.iter();
    while let Some(&flag) = it.next() {
        let mut value = || {
            it.next()
                .map(|v| v.to_string())
                .with_context(|| format!("{flag} needs a value"))
        };
        match flag {
            "--sub" => req.sub = value()?,
            "--scope" => req.scope = value()?,
            "--aud" => req.audience = value()?,
            "--ttl" => {
                let v = value()?;
                req.ttl_secs = v
                    .parse()
                    .with_context(|| format!("--ttl: `{v}` is not a number of seconds"))?;
            }
            other => bail!("token: unknown argument `{other}`\n{USAGE}"),
        }
    }
    Ok(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_defaults() {
        let req = parse(&[
            "--sub",
            "bob",
            "--scope",
            "read write",
            "--ttl",
            "60",
            "--aud",
            "x",
        ])
        .unwrap();
        assert_eq!(
            req,
            TokenRequest {
                sub: "bob".into(),
                scope: "read write".into(),
                ttl_secs: 60,
                audience: "x".into(),
            }
        );
        assert_eq!(parse(&[]).unwrap(), TokenRequest::default());
    }

    #[test]
    fn refuses_unknown_flags_missing_values_and_bad_ttls() {
        assert!(parse(&["--role", "x"]).is_err());
        assert!(parse(&["--sub"]).is_err());
        assert!(parse(&["--ttl", "soon"]).is_err());
        assert!(parse(&["--ttl", "-5"]).is_err());
    }
}
