//! Test keys for every algorithm and a token minter that can also build
//! hostile tokens. Keys are fixed (no key generation: it is slow in wasm).

use crate::algorithm::Alg;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jwt_compact::alg::{Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key, Rsa, RsaPrivateKey};
use jwt_compact::Algorithm;
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyName {
    RsaA,
    RsaB,
    RsaWeak,
    P256,
    P384,
    Ed25519,
    Hmac,
}

pub enum Secret {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    Ed25519(ed25519_compact::KeyPair),
    Hmac(Vec<u8>),
}

pub struct Key {
    pub kid: String,
    pub secret: Secret,
}

impl Key {
    pub fn get(name: KeyName) -> Key {
        let rsa = |der: &[u8]| Secret::Rsa(Box::new(RsaPrivateKey::from_pkcs8_der(der).unwrap()));
        let (kid, secret) = match name {
            KeyName::RsaA => ("rsa-a", rsa(include_bytes!("testdata/rsa_a.der"))),
            KeyName::RsaB => ("rsa-b", rsa(include_bytes!("testdata/rsa_b.der"))),
            KeyName::RsaWeak => ("rsa-weak", rsa(include_bytes!("testdata/rsa_weak.der"))),
            KeyName::P256 => (
                "ec-256",
                Secret::P256(p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).unwrap()),
            ),
            KeyName::P384 => (
                "ec-384",
                Secret::P384(p384::ecdsa::SigningKey::from_slice(&[0x22; 48]).unwrap()),
            ),
            KeyName::Ed25519 => (
                "ed",
                Secret::Ed25519(ed25519_compact::KeyPair::from_seed(
                    ed25519_compact::Seed::new([0x33; 32]),
                )),
            ),
            KeyName::Hmac => ("hmac", Secret::Hmac(vec![0x44; 64])),
        };
        Key {
            kid: kid.to_string(),
            secret,
        }
    }

    /// The public JWK (the secret itself for HMAC).
    pub fn jwk(&self) -> Value {
        let b = |v: &[u8]| B64.encode(v);
        match &self.secret {
            Secret::Rsa(k) => {
                let p = k.to_public_key();
                json!({"kty":"RSA","kid":self.kid,"n":b(&p.n().to_bytes_be()),"e":b(&p.e().to_bytes_be())})
            }
            Secret::P256(k) => {
                let pt = k.verifying_key().to_encoded_point(false);
                json!({"kty":"EC","crv":"P-256","kid":self.kid,"x":b(pt.x().unwrap()),"y":b(pt.y().unwrap())})
            }
            Secret::P384(k) => {
                let pt = k.verifying_key().to_encoded_point(false);
                json!({"kty":"EC","crv":"P-384","kid":self.kid,"x":b(pt.x().unwrap()),"y":b(pt.y().unwrap())})
            }
            Secret::Ed25519(kp) => {
                json!({"kty":"OKP","crv":"Ed25519","kid":self.kid,"x":b(kp.pk.as_ref())})
            }
            Secret::Hmac(k) => json!({"kty":"oct","kid":self.kid,"k":b(k)}),
        }
    }

    /// The algorithms this key signs with.
    pub fn algs(&self) -> Vec<Alg> {
        match &self.secret {
            Secret::Rsa(_) => vec![
                Alg::RS256,
                Alg::RS384,
                Alg::RS512,
                Alg::PS256,
                Alg::PS384,
                Alg::PS512,
            ],
            Secret::P256(_) => vec![Alg::ES256],
            Secret::P384(_) => vec![Alg::ES384],
            Secret::Ed25519(_) => vec![Alg::EdDSA],
            Secret::Hmac(_) => vec![Alg::HS256, Alg::HS384, Alg::HS512],
        }
    }

    /// Raw signature over `input` (JWS form: `r || s` for ECDSA).
    pub fn sign_bytes(&self, alg: Alg, input: &[u8]) -> Vec<u8> {
        use jwt_compact::AlgorithmSignature;
        match (&self.secret, alg) {
            (Secret::Rsa(k), _) => {
                let r = Rsa::with_name(alg.name());
                r.sign(k, input).as_bytes().into_owned()
            }
            (Secret::P256(k), _) => {
                use p256::ecdsa::signature::Signer;
                let s: p256::ecdsa::Signature = k.sign(input);
                s.to_bytes().to_vec()
            }
            (Secret::P384(k), _) => {
                use p384::ecdsa::signature::Signer;
                let s: p384::ecdsa::Signature = k.sign(input);
                s.to_bytes().to_vec()
            }
            (Secret::Ed25519(kp), _) => kp.sk.sign(input, None).to_vec(),
            (Secret::Hmac(k), Alg::HS256) => {
                Hs256.sign(&Hs256Key::new(k), input).as_bytes().into_owned()
            }
            (Secret::Hmac(k), Alg::HS384) => {
                Hs384.sign(&Hs384Key::new(k), input).as_bytes().into_owned()
            }
            (Secret::Hmac(k), _) => Hs512.sign(&Hs512Key::new(k), input).as_bytes().into_owned(),
        }
    }

    /// A token with this key's `kid` and `alg`.
    pub fn token(&self, alg: Alg, claims: &Value) -> String {
        let header = json!({"alg": alg.name(), "typ": "JWT", "kid": self.kid});
        self.sign_with_header(alg, &header, claims)
    }

    pub fn sign_with_header(&self, alg: Alg, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self.sign_bytes(alg, input.as_bytes());
        format!("{input}.{}", B64.encode(sig))
    }
}

/// One key of every type (RSA, P-256, P-384, Ed25519, HMAC).
pub fn every_key() -> Vec<Key> {
    [
        KeyName::RsaA,
        KeyName::P256,
        KeyName::P384,
        KeyName::Ed25519,
        KeyName::Hmac,
    ]
    .into_iter()
    .map(Key::get)
    .collect()
}

/// A JWKS of these keys' public halves.
pub fn jwks(keys: &[Key]) -> String {
    json!({ "keys": keys.iter().map(Key::jwk).collect::<Vec<_>>() }).to_string()
}

/// Now, in seconds, for tests (fixed).
pub const NOW: i64 = 1_700_000_000;

/// Standard claims for issuer `https://issuer.test`, audience `api`.
pub fn claims(extra: Value) -> Value {
    let mut c = json!({
        "iss": "https://issuer.test",
        "sub": "alice",
        "aud": "api",
        "iat": NOW - 10,
        "exp": NOW + 600,
    });
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
