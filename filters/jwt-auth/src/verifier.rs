//! Signature verification behind a small trait, so the core does not care
//! whether Envoy's BoringSSL ([`crate::host_crypto`]) or pure Rust checks it.

use crate::algorithm::Alg;
use crate::key_set::{Jwk, KeyMaterial};
use jwt_compact::alg::{
    Ed25519, Es256, Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key, Rsa, RsaSignature,
};
use jwt_compact::{Algorithm, AlgorithmSignature};

/// Something that can check a signature.
pub trait SignatureBackend {
    /// `Some(valid)`, or `None` when this backend cannot check this
    /// algorithm or key (the caller falls back to pure Rust).
    fn verify(&self, alg: Alg, key: &Jwk, message: &[u8], signature: &[u8]) -> Option<bool>;
}

/// Which path verified a signature (for the `jwt_auth.verify.*` metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedBy {
    Host,
    Pure,
}

/// Tries `backend`, falls back to pure Rust.
pub fn verify(
    backend: &dyn SignatureBackend,
    alg: Alg,
    key: &Jwk,
    message: &[u8],
    signature: &[u8],
) -> (bool, VerifiedBy) {
    match backend.verify(alg, key, message, signature) {
        Some(valid) => (valid, VerifiedBy::Host),
        None => (pure_verify(alg, key, message, signature), VerifiedBy::Pure),
    }
}

/// The pure-Rust path only.
#[derive(Debug, Default, Clone, Copy)]
pub struct PureRust;

impl SignatureBackend for PureRust {
    fn verify(&self, _: Alg, _: &Jwk, _: &[u8], _: &[u8]) -> Option<bool> {
        None
    }
}

/// A signature of the exact length the algorithm produces. (Some of
/// `jwt-compact`'s `try_from_slice` panic on a wrong length: never call
/// them unchecked.)
fn sig<S: AlgorithmSignature>(bytes: &[u8]) -> Option<S> {
    match S::LENGTH {
        Some(len) if bytes.len() != len.get() => None,
        _ => S::try_from_slice(bytes).ok(),
    }
}

/// Verifies with `jwt-compact` (and `p384` for ES384). A key that does not
/// fit the algorithm never verifies.
pub fn pure_verify(alg: Alg, key: &Jwk, message: &[u8], signature: &[u8]) -> bool {
    if !key.fits(alg) {
        return false;
    }
    match (&key.material, alg) {
        (KeyMaterial::Rsa { key, .. }, _) => {
            let Ok(rsa_alg) = alg.name().parse::<Rsa>() else {
                return false;
            };
            sig::<RsaSignature>(signature)
                .is_some_and(|s| rsa_alg.verify_signature(&s, key, message))
        }
        (KeyMaterial::P256 { key, .. }, Alg::ES256) => sig::<p256::ecdsa::Signature>(signature)
            .is_some_and(|s| Es256.verify_signature(&s, key, message)),
        (KeyMaterial::P384 { key, .. }, Alg::ES384) => {
            use p384::ecdsa::signature::Verifier;
            // `from_slice` checks the length and refuses zero scalars.
            p384::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|s| key.verify(message, &s).is_ok())
        }
        (KeyMaterial::Ed25519(pk), Alg::EdDSA) => sig::<ed25519_compact::Signature>(signature)
            .is_some_and(|s| Ed25519.verify_signature(&s, pk, message)),
        (KeyMaterial::Oct(k), Alg::HS256) => sig::<<Hs256 as Algorithm>::Signature>(signature)
            .is_some_and(|s| Hs256.verify_signature(&s, &Hs256Key::new(k), message)),
        (KeyMaterial::Oct(k), Alg::HS384) => sig::<<Hs384 as Algorithm>::Signature>(signature)
            .is_some_and(|s| Hs384.verify_signature(&s, &Hs384Key::new(k), message)),
        (KeyMaterial::Oct(k), Alg::HS512) => sig::<<Hs512 as Algorithm>::Signature>(signature)
            .is_some_and(|s| Hs512.verify_signature(&s, &Hs512Key::new(k), message)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::Jws;
    use crate::key_set::{JwksOptions, KeySet};
    use crate::testkit::{claims, every_key, jwks, Key, KeyName};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn set(keys: &[Key]) -> KeySet {
        let opts = JwksOptions {
            allow_oct: true,
            min_rsa_bits: 2048,
            strict: true,
        };
        KeySet::parse(jwks(keys).as_bytes(), opts).unwrap()
    }

    fn check(set: &KeySet, token: &str) -> bool {
        let jws = Jws::parse(token.as_bytes()).unwrap();
        let input = jws.signing_input(token.as_bytes());
        let ok = set
            .candidates(jws.kid.as_deref(), jws.alg)
            .any(|k| pure_verify(jws.alg, k, input, &jws.signature));
        ok
    }

    #[test]
    fn every_algorithm_verifies_and_tampering_is_caught() {
        let keys = every_key();
        let set = set(&keys);
        for key in &keys {
            for alg in key.algs() {
                let t = key.token(alg, &claims(json!({})));
                assert!(check(&set, &t), "{alg}");
                // Tampered payload: same signature, other claims.
                let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
                let evil = key.token(alg, &claims(json!({"sub": "mallory"})));
                parts[1] = evil.split('.').nth(1).unwrap().to_string();
                assert!(!check(&set, &parts.join(".")), "{alg} payload");
                // Tampered signature: one bit flipped.
                let mut sig = jws_sig(&t);
                sig[3] ^= 1;
                let t2 = format!("{}.{}", t.rsplit_once('.').unwrap().0, b64(&sig));
                assert!(!check(&set, &t2), "{alg} signature");
                // Truncated signature.
                sig.pop();
                let t3 = format!("{}.{}", t.rsplit_once('.').unwrap().0, b64(&sig));
                assert!(!check(&set, &t3), "{alg} short signature");
            }
        }
    }

    fn jws_sig(t: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(t.rsplit('.').next().unwrap())
            .unwrap()
    }

    fn b64(v: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn hmac_keyed_with_the_rsa_public_key_is_refused() {
        // The classic key confusion: sign HS256 with the RSA public key bytes.
        let rsa = Key::get(KeyName::RsaA);
        let set = set(std::slice::from_ref(&rsa));
        let public_der = set.keys[0].material.spki().unwrap().to_vec();
        let confused = Key {
            kid: "rsa-a".into(),
            secret: crate::testkit::Secret::Hmac(public_der),
        };
        let t = confused.token(Alg::HS256, &claims(json!({})));
        assert!(!check(&set, &t));
        let jws = Jws::parse(t.as_bytes()).unwrap();
        assert!(!pure_verify(Alg::HS256, &set.keys[0], b"x", &jws.signature));
    }

    #[test]
    fn ecdsa_with_zero_r_and_s_is_refused() {
        // CVE-2022-21449 ("psychic signatures").
        for (name, alg, len) in [
            (KeyName::P256, Alg::ES256, 64),
            (KeyName::P384, Alg::ES384, 96),
        ] {
            let key = Key::get(name);
            let set = set(std::slice::from_ref(&key));
            let t = key.token(alg, &claims(json!({})));
            let forged = format!("{}.{}", t.rsplit_once('.').unwrap().0, b64(&vec![0u8; len]));
            assert!(!check(&set, &forged), "{alg}");
        }
    }

    #[test]
    fn a_key_of_the_wrong_family_never_verifies() {
        let keys = every_key();
        let set = set(&keys);
        let t = keys[0].token(Alg::RS256, &claims(json!({})));
        let jws = Jws::parse(t.as_bytes()).unwrap();
        for k in &set.keys[1..] {
            assert!(!pure_verify(
                Alg::RS256,
                k,
                jws.signing_input(t.as_bytes()),
                &jws.signature
            ));
        }
    }

    #[test]
    fn pure_rust_backend_always_falls_back() {
        let keys = every_key();
        let set = set(&keys);
        let t = keys[1].token(Alg::ES256, &claims(json!({})));
        let jws = Jws::parse(t.as_bytes()).unwrap();
        let (ok, by) = verify(
            &PureRust,
            Alg::ES256,
            &set.keys[1],
            jws.signing_input(t.as_bytes()),
            &jws.signature,
        );
        assert!(ok);
        assert_eq!(by, VerifiedBy::Pure);
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use crate::key_set::{JwksOptions, KeySet};
    use crate::testkit::{jwks, Key, KeyName};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any signature bytes, any algorithm, any key: an answer, never a panic.
        #[test]
        fn never_panics_on_signature_bytes(sig in proptest::collection::vec(any::<u8>(), 0..600), alg in 0usize..12) {
            let keys: Vec<Key> = [KeyName::RsaA, KeyName::P256, KeyName::P384, KeyName::Ed25519, KeyName::Hmac]
                .into_iter()
                .map(Key::get)
                .collect();
            let opts = JwksOptions { allow_oct: true, min_rsa_bits: 2048, strict: true };
            let set = KeySet::parse(jwks(&keys).as_bytes(), opts).unwrap();
            let alg = Alg::ALL[alg];
            for k in &set.keys {
                prop_assert!(!pure_verify(alg, k, b"message", &sig));
            }
        }
    }
}
