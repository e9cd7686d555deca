//! Test issuers: key pairs whose public half is served as a JWKS, and tokens
//! built by hand (so tests can also build malformed and hostile ones).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rsa::pkcs1v15::SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::Sha256;

/// An RS256 issuer with one 2048-bit key.
pub struct RsaIssuer {
    pub issuer: String,
    pub kid: String,
    key: RsaPrivateKey,
}

impl RsaIssuer {
    pub fn new(issuer: &str, kid: &str) -> anyhow::Result<Self> {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048)?;
        Ok(RsaIssuer {
            issuer: issuer.to_string(),
            kid: kid.to_string(),
            key,
        })
    }

    /// An issuer with a key it was given (the compose demo's checked-in key).
    pub fn from_key(issuer: &str, kid: &str, key: RsaPrivateKey) -> Self {
        RsaIssuer {
            issuer: issuer.to_string(),
            kid: kid.to_string(),
            key,
        }
    }

    /// The public key as one JWK.
    pub fn jwk(&self) -> Value {
        let public = self.key.to_public_key();
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": B64.encode(public.n().to_bytes_be()),
            "e": B64.encode(public.e().to_bytes_be()),
        })
    }

    /// A JWKS with this issuer's key.
    pub fn jwks(&self) -> String {
        json!({ "keys": [self.jwk()] }).to_string()
    }

    /// Signs `claims` with RS256 and this key's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        self.sign_with_header(&header, claims)
    }

    /// Signs with any header (tests of hostile headers).
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let signer = SigningKey::<Sha256>::new(self.key.clone());
        let sig = signer.sign(input.as_bytes()).to_vec();
        format!("{input}.{}", B64.encode(sig))
    }

    /// A token for `sub` valid for `ttl_secs`, with extra claims merged in.
    pub fn token(&self, sub: &str, audience: &str, ttl_secs: u64, extra: Value) -> String {
        let now = now_secs();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": sub,
            "aud": audience,
            "iat": now,
            "exp": now + ttl_secs,
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                c.insert(k.clone(), v.clone());
            }
        }
        self.sign(&claims)
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
