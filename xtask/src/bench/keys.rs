//! The bench's issuer: one key per algorithm (RS256, ES256, EdDSA) in one
//! JWKS that native `jwt_authn` and our jwt-auth are both given, and the
//! tokens the workloads send. The keys are the harness's test keys
//! ([`e2e::jwt_tokens`]).

use anyhow::Result;
use e2e::jwt_tokens::{self, TestKey};
use e2e::tokens::now_secs;
use serde_json::json;
use std::path::Path;

pub const ISSUER: &str = "https://issuer.bench.local";
pub const AUDIENCE: &str = "bench-api";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Es256,
    EdDsa,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }
}

pub struct Keys {
    rsa: TestKey,
    ec: TestKey,
    ed: TestKey,
}

impl Keys {
    pub fn generate() -> Result<Keys> {
        Ok(Keys {
            rsa: TestKey::rsa("bench-rs256", 2048)?,
            ec: TestKey::p256("bench-es256"),
            ed: TestKey::ed25519("bench-eddsa"),
        })
    }

    /// The public keys of all three, as one JWKS document.
    pub fn jwks(&self) -> String {
        jwt_tokens::jwks(&[&self.rsa, &self.ec, &self.ed])
    }

    /// A token valid for a day; `n` makes it unique (`jti`, `sub`).
    pub fn token(&self, alg: Alg, n: u64) -> String {
        let now = now_secs();
        let claims = json!({
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": format!("user-{n}"),
            "jti": format!("bench-{n}"),
            "iat": now,
            "exp": now + 86_400,
            "scope": "read write",
        });
        let key = match alg {
            Alg::Rs256 => &self.rsa,
            Alg::Es256 => &self.ec,
            Alg::EdDsa => &self.ed,
        };
        key.token(alg.name(), &claims)
    }

    /// Writes `count` distinct tokens, one a line, signing on every core.
    pub fn write_tokens(&self, alg: Alg, count: u64, path: &Path) -> Result<()> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let per = count.div_ceil(threads);
        let parts: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    s.spawn(move || {
                        let end = ((t + 1) * per).min(count);
                        let mut out = String::new();
                        for n in t * per..end {
                            out.push_str(&self.token(alg, n));
                            out.push('\n');
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        std::fs::write(path, parts.concat())?;
        Ok(())
    }
}
