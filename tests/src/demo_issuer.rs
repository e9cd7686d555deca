//! The docker-compose demo's issuer: a key pair checked in under
//! `envoy/demo/` so that `cargo xtask token` can mint tokens the compose
//! Envoy accepts. DEMO ONLY: the private key is public, anyone can mint
//! tokens with it. `cargo xtask demo` makes a fresh key instead.

use crate::paths;
use crate::tokens::RsaIssuer;
use anyhow::{bail, Context, Result};
use rsa::pkcs8::DecodePrivateKey;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use std::path::PathBuf;

/// The issuer and audience of the `demo` provider in `envoy/chain.yaml`.
pub const ISSUER: &str = "https://issuer.demo.local";
pub const AUDIENCE: &str = "demo-api";

/// The private key (PKCS#8 PEM after a DEMO ONLY preamble) and the public
/// key set, under `envoy/demo/`.
pub const KEY_FILE: &str = "issuer-key.pem";
pub const JWKS_FILE: &str = "jwks.json";

/// What a token says; [`TokenRequest::default`] is what `cargo xtask token`
/// prints without flags: a reader of `/api` for an hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub sub: String,
    /// Space-separated scopes; empty means no `scope` claim.
    pub scope: String,
    pub ttl_secs: u64,
    pub audience: String,
}

impl Default for TokenRequest {
    fn default() -> Self {
        TokenRequest {
            sub: "alice".to_string(),
            scope: "read".to_string(),
            ttl_secs: 3600,
            audience: AUDIENCE.to_string(),
        }
    }
}

pub fn demo_dir() -> PathBuf {
    paths::workspace_root().join("envoy").join("demo")
}

/// The checked-in private key. Text before the PEM block (the DEMO ONLY
/// notice) is skipped.
pub fn private_key() -> Result<RsaPrivateKey> {
    let path = demo_dir().join(KEY_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let pem = text
        .find("-----BEGIN")
        .and_then(|at| text.get(at..))
        .with_context(|| format!("{}: no PEM block", path.display()))?;
    RsaPrivateKey::from_pkcs8_pem(pem)
        .with_context(|| format!("{}: not a PKCS#8 RSA private key", path.display()))
}

/// The checked-in public key set, parsed.
pub fn jwks() -> Result<Value> {
    let path = demo_dir().join(JWKS_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))
}

/// The demo issuer: the checked-in key with the `kid` of the one key in
/// `jwks.json`. Refuses a `jwks.json` that does not hold exactly this key's
/// public half, so a token it signs is one the compose Envoy can verify.
pub fn issuer() -> Result<RsaIssuer> {
    let jwks = jwks()?;
    let keys = jwks["keys"]
        .as_array()
        .with_context(|| format!("{JWKS_FILE}: no `keys` array"))?;
    let [published] = keys.as_slice() else {
        bail!(
            "{JWKS_FILE}: expected exactly one key, found {}",
            keys.len()
        );
    };
    let kid = published["kid"]
        .as_str()
        .with_context(|| format!("{JWKS_FILE}: keys[0].kid is missing"))?;
    let issuer = RsaIssuer::from_key(ISSUER, kid, private_key()?);
    let ours = issuer.jwk();
    for field in ["kty", "n", "e"] {
        if published[field] != ours[field] {
            bail!(
                "{JWKS_FILE}: keys[0].{field} does not match {KEY_FILE}; \
                 regenerate jwks.json from the key (see envoy/demo/README.md)"
            );
        }
    }
    Ok(issuer)
}

/// A token for the compose demo signed with the checked-in key.
pub fn token(req: &TokenRequest) -> Result<String> {
    if req.ttl_secs == 0 {
        bail!("ttl: must be at least 1 second");
    }
    let extra = if req.scope.trim().is_empty() {
        json!({})
    } else {
        json!({ "scope": req.scope })
    };
    Ok(issuer()?.token(&req.sub, &req.audience, req.ttl_secs, extra))
}
