//! Test keys for every JWS algorithm jwt-auth accepts, and a minter for
//! tokens, hostile ones included (any header, any claims, raw parts).

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::{Sha256, Sha384, Sha512};

/// A signing key with its `kid`.
pub struct TestKey {
    pub kid: String,
    secret: Secret,
}

enum Secret {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Ed25519(ed25519_compact::KeyPair),
    Hmac(Vec<u8>),
}

impl TestKey {
    pub fn rsa(kid: &str, bits: usize) -> anyhow::Result<Self> {
        let key = RsaPrivateKey::new(&mut rand::thread_rng(), bits)?;
        Ok(Self::with(kid, Secret::Rsa(Box::new(key))))
    }
    pub fn p256(kid: &str) -> Self {
        Self::with(
            kid,
            Secret::P256(p256::ecdsa::SigningKey::random(&mut rand::thread_rng())),
        )
    }
    pub fn p384(kid: &str) -> Self {
        Self::with(
            kid,
            Secret::P384(p384::ecdsa::SigningKey::random(&mut rand::thread_rng())),
        )
    }
    pub fn ed25519(kid: &str) -> Self {
        Self::with(kid, Secret::Ed25519(ed25519_compact::KeyPair::generate()))
    }
    pub fn hmac(kid: &str, secret: &[u8]) -> Self {
        Self::with(kid, Secret::Hmac(secret.to_vec()))
    }
    fn with(kid: &str, secret: Secret) -> Self {
        TestKey {
            kid: kid.to_string(),
            secret,
        }
    }

    /// The algorithms this key signs with.
    pub fn algs(&self) -> &'static [&'static str] {
        match self.secret {
            Secret::Rsa(_) => &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
            Secret::P256(_) => &["ES256"],
            Secret::P384(_) => &["ES384"],
            Secret::Ed25519(_) => &["EdDSA"],
            Secret::Hmac(_) => &["HS256", "HS384", "HS512"],
        }
    }

    /// The public JWK (the secret itself for HMAC).
    pub fn jwk(&self) -> Value {
        let b = |v: &[u8]| B64.encode(v);
        match &self.secret {
            Secret::Rsa(k) => {
                json!({"kty": "RSA", "kid": self.kid, "use": "sig",
                       "n": b(&k.n().to_bytes_be()), "e": b(&k.e().to_bytes_be())})
            }
            Secret::P256(k) => {
                let p = k.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-256", "kid": self.kid,
                       "x": b(&p.x().map(|x| x.to_vec()).unwrap_or_default()),
                       "y": b(&p.y().map(|y| y.to_vec()).unwrap_or_default())})
            }
            Secret::P384(k) => {
                let p = k.verifying_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-384", "kid": self.kid,
                       "x": b(&p.x().map(|x| x.to_vec()).unwrap_or_default()),
                       "y": b(&p.y().map(|y| y.to_vec()).unwrap_or_default())})
            }
            Secret::Ed25519(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": b(k.pk.as_ref())})
            }
            Secret::Hmac(k) => json!({"kty": "oct", "kid": self.kid, "k": b(k)}),
        }
    }

    /// A JWS signature over `input` (`r || s` for ECDSA).
    pub fn sign_bytes(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        let mut rng = rand::thread_rng();
        match (&self.secret, alg) {
            (Secret::Rsa(k), "RS256") => rsa::pkcs1v15::SigningKey::<Sha256>::new((**k).clone())
                .sign(input)
                .to_vec(),
            (Secret::Rsa(k), "RS384") => rsa::pkcs1v15::SigningKey::<Sha384>::new((**k).clone())
                .sign(input)
                .to_vec(),
            (Secret::Rsa(k), "RS512") => rsa::pkcs1v15::SigningKey::<Sha512>::new((**k).clone())
                .sign(input)
                .to_vec(),
            (Secret::Rsa(k), "PS256") => rsa::pss::SigningKey::<Sha256>::new((**k).clone())
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            (Secret::Rsa(k), "PS384") => rsa::pss::SigningKey::<Sha384>::new((**k).clone())
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            (Secret::Rsa(k), _) => rsa::pss::SigningKey::<Sha512>::new((**k).clone())
                .sign_with_rng(&mut rng, input)
                .to_vec(),
            (Secret::P256(k), _) => {
                let s: p256::ecdsa::Signature = k.sign(input);
                s.to_bytes().to_vec()
            }
            (Secret::P384(k), _) => {
                let s: p384::ecdsa::Signature = k.sign(input);
                s.to_bytes().to_vec()
            }
            (Secret::Ed25519(k), _) => k.sk.sign(input, None).to_vec(),
            (Secret::Hmac(k), "HS256") => mac::<Hmac<Sha256>>(k, input),
            (Secret::Hmac(k), "HS384") => mac::<Hmac<Sha384>>(k, input),
            (Secret::Hmac(k), _) => mac::<Hmac<Sha512>>(k, input),
        }
    }

    /// A token with this key's `kid`.
    pub fn token(&self, alg: &str, claims: &Value) -> String {
        self.sign_with_header(&json!({"alg": alg, "typ": "JWT", "kid": self.kid}), claims)
    }

    /// Signs with any header; the `alg` in it picks the algorithm.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let alg = header["alg"].as_str().unwrap_or("RS256").to_string();
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self.sign_bytes(&alg, input.as_bytes());
        format!("{input}.{}", B64.encode(sig))
    }
}

fn mac<M: Mac + hmac::digest::KeyInit>(key: &[u8], input: &[u8]) -> Vec<u8> {
    match <M as hmac::digest::KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(input);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// A JWKS with these keys' public halves.
pub fn jwks(keys: &[&TestKey]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
}

/// Claims for `sub` from `iss` to `aud`, valid from a minute ago for
/// `ttl` seconds; `extra` is merged in (a `null` removes a claim).
pub fn claims(iss: &str, aud: &str, sub: &str, ttl: i64, extra: Value) -> Value {
    let now = crate::tokens::now_secs() as i64;
    let mut c = json!({"iss": iss, "aud": aud, "sub": sub, "iat": now - 60, "exp": now + ttl});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

/// A token from raw parts (for `alg: none` and other forgeries).
pub fn raw(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string()),
        B64.encode(signature)
    )
}
