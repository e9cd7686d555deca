//! The bench's issuer: one key per algorithm (RS256, ES256, EdDSA) in one
//! JWKS that native `jwt_authn` and our jwt-auth are both given, and the
//! tokens the workloads send.
//!
//! RS256 reuses the harness's [`RsaIssuer`]; ES256 and EdDSA are minted here
//! with RustCrypto's `p256` and `ed25519-dalek`.

use anyhow::Result;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use e2e::tokens::{now_secs, RsaIssuer};
use serde_json::{json, Value};
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
    rsa: RsaIssuer,
    ec: p256::ecdsa::SigningKey,
    ed: ed25519_dalek::SigningKey,
}

impl Keys {
    pub fn generate() -> Result<Keys> {
        Ok(Keys {
            rsa: RsaIssuer::new(ISSUER, "bench-rs256")?,
            ec: p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng),
            ed: ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng),
        })
    }

    /// The public keys of all three, as one JWKS document.
    pub fn jwks(&self) -> String {
        let point = self.ec.verifying_key().to_encoded_point(false);
        let coordinate =
            |c: Option<&p256::FieldBytes>| c.map(|b| B64.encode(b)).unwrap_or_default();
        json!({ "keys": [
            self.rsa.jwk(),
            {
                "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": "bench-es256",
                "x": coordinate(point.x()), "y": coordinate(point.y()),
            },
            {
                "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "bench-eddsa",
                "x": B64.encode(self.ed.verifying_key().to_bytes()),
            },
        ]})
        .to_string()
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
        match alg {
            Alg::Rs256 => self.rsa.sign(&claims),
            Alg::Es256 => {
                use p256::ecdsa::signature::Signer;
                sign_with("ES256", "bench-es256", &claims, |input| {
                    let sig: p256::ecdsa::Signature = self.ec.sign(input);
                    // A JWS carries the raw r||s, not DER.
                    sig.to_bytes().to_vec()
                })
            }
            Alg::EdDsa => {
                use ed25519_dalek::Signer;
                sign_with("EdDSA", "bench-eddsa", &claims, |input| {
                    self.ed.sign(input).to_bytes().to_vec()
                })
            }
        }
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

fn sign_with(alg: &str, kid: &str, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", B64.encode(sig))
}
