//! Envoy's `verify_signature` foreign function (BoringSSL, ~30× faster than
//! pure Rust compiled to wasm). Its arguments and result are protobuf
//! messages, encoded here by hand (two tiny messages do not justify a
//! protobuf crate):
//!
//! ```text
//! VerifySignatureArguments { string hash_function = 1; bytes public_key = 2;
//!                            bytes signature = 3; bytes text = 4; }
//! VerifySignatureResult    { bool result = 1; string error = 2; }
//! ```
//!
//! Envoy handles RSA PKCS#1 v1.5 and ECDSA (with a DER signature: a JWS
//! carries raw `r || s`), not RSA-PSS nor Ed25519; those and HMAC stay on
//! the pure-Rust path.

use crate::algorithm::Alg;
use crate::key_set::Jwk;
use crate::verifier::SignatureBackend;
use std::cell::Cell;

/// The foreign function's name in Envoy.
pub const FUNCTION: &str = "verify_signature";

/// Whether Envoy's function can verify this algorithm.
pub fn host_supports(alg: Alg) -> bool {
    matches!(
        alg,
        Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::ES256 | Alg::ES384
    )
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push((number << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encodes `VerifySignatureArguments`.
pub fn encode_arguments(hash: &str, spki_der: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + spki_der.len() + signature.len() + text.len());
    field(&mut out, 1, hash.as_bytes());
    field(&mut out, 2, spki_der);
    field(&mut out, 3, signature);
    field(&mut out, 4, text);
    out
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Decodes `VerifySignatureResult` into its `result`; `None` if garbled.
/// (An empty message is proto3 for `result = false`.)
pub fn decode_result(bytes: &[u8]) -> Option<bool> {
    let mut pos = 0;
    let mut result = false;
    while pos < bytes.len() {
        let key = read_varint(bytes, &mut pos)?;
        match (key >> 3, key & 7) {
            (1, 0) => result = read_varint(bytes, &mut pos)? != 0,
            (_, 0) => {
                read_varint(bytes, &mut pos)?;
            }
            (_, 2) => {
                let len = usize::try_from(read_varint(bytes, &mut pos)?).ok()?;
                pos = pos.checked_add(len).filter(|end| *end <= bytes.len())?;
            }
            _ => return None,
        }
    }
    Some(result)
}

/// JWS ECDSA `r || s` (RFC 7518 §3.4) to DER `SEQUENCE { INTEGER r, INTEGER s }`.
/// `None` for a wrong length or a zero `r` or `s` (CVE-2022-21449).
pub fn ecdsa_jws_to_der(sig: &[u8], scalar_len: usize) -> Option<Vec<u8>> {
    if sig.len() != 2 * scalar_len {
        return None;
    }
    let (r, s) = sig.split_at(scalar_len);
    let mut body = Vec::with_capacity(2 * scalar_len + 8);
    for int in [r, s] {
        let first = int.iter().position(|b| *b != 0)?;
        let int = int.get(first..)?;
        let pad = int.first().is_some_and(|b| b & 0x80 != 0);
        body.push(0x02);
        body.push(u8::try_from(int.len() + usize::from(pad)).ok()?);
        if pad {
            body.push(0);
        }
        body.extend_from_slice(int);
    }
    let mut out = vec![0x30];
    // At most 2 * (1 + 1 + 1 + 48) = 102 bytes: short form until 127.
    let len = body.len();
    if len < 0x80 {
        out.push(u8::try_from(len).ok()?);
    } else {
        out.push(0x81);
        out.push(u8::try_from(len).ok()?);
    }
    out.extend_from_slice(&body);
    Some(out)
}

/// Why a foreign-function call gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallError {
    /// The host has no such function: stop asking.
    Unavailable,
    /// The host refused these arguments (e.g. a key it cannot import).
    Refused,
}

/// A foreign-function call.
pub type ForeignCall<'a> = dyn Fn(&[u8]) -> Result<Vec<u8>, CallError> + 'a;

/// [`SignatureBackend`] over Envoy's `verify_signature`. After the first
/// "not available" answer it stops asking.
pub struct HostCrypto<'a> {
    call: &'a ForeignCall<'a>,
    available: &'a Cell<bool>,
}

impl<'a> HostCrypto<'a> {
    /// `available` persists across requests (per worker), so a host without
    /// the function is asked once.
    pub fn new(call: &'a ForeignCall<'a>, available: &'a Cell<bool>) -> Self {
        HostCrypto { call, available }
    }
}

impl SignatureBackend for HostCrypto<'_> {
    fn verify(&self, alg: Alg, key: &Jwk, message: &[u8], signature: &[u8]) -> Option<bool> {
        if !self.available.get() || !host_supports(alg) || !key.fits(alg) {
            return None;
        }
        let spki = key.material.spki()?;
        let der;
        let signature = match alg {
            Alg::ES256 | Alg::ES384 => {
                let len = if alg == Alg::ES256 { 32 } else { 48 };
                match ecdsa_jws_to_der(signature, len) {
                    Some(d) => {
                        der = d;
                        der.as_slice()
                    }
                    // Wrong length or zero scalar: invalid, whoever checks it.
                    None => return Some(false),
                }
            }
            _ => signature,
        };
        let args = encode_arguments(alg.hash().name(), spki, signature, message);
        match (self.call)(&args) {
            Ok(reply) => decode_result(&reply),
            Err(CallError::Refused) => None,
            Err(CallError::Unavailable) => {
                self.available.set(false);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::Jws;
    use crate::key_set::{JwksOptions, KeySet};
    use crate::testkit::{claims, every_key, jwks, Key, KeyName};
    use crate::verifier::{pure_verify, verify, VerifiedBy};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn encodes_arguments_as_protobuf() {
        let out = encode_arguments("sha256", &[1, 2], &[3], b"hi");
        assert_eq!(
            out,
            [
                0x0a, 6, b's', b'h', b'a', b'2', b'5', b'6', 0x12, 2, 1, 2, 0x1a, 1, 3, 0x22, 2,
                b'h', b'i'
            ]
        );
        // Lengths over 127 take a two-byte varint.
        let long = encode_arguments("", &[], &[0; 300], &[]);
        assert_eq!(&long[..7], &[0x0a, 0, 0x12, 0, 0x1a, 0xac, 0x02]);
    }

    #[test]
    fn decodes_results() {
        assert_eq!(decode_result(&[0x08, 0x01]), Some(true));
        assert_eq!(decode_result(&[]), Some(false));
        assert_eq!(decode_result(&[0x12, 2, b'n', b'o']), Some(false));
        assert_eq!(decode_result(&[0x08, 0x01, 0x12, 1, b'x']), Some(true));
        assert_eq!(decode_result(&[0x12, 9, b'x']), None);
        assert_eq!(decode_result(&[0x08]), None);
        assert_eq!(decode_result(&[0x0d, 0, 0, 0, 0]), None);
    }

    #[test]
    fn converts_raw_ecdsa_signatures_to_der() {
        let mut sig = vec![0u8; 64];
        sig[31] = 1; // r = 1
        sig[32] = 0x80; // s has its top bit set: needs a 0x00 pad
        let der = ecdsa_jws_to_der(&sig, 32).unwrap();
        assert_eq!(&der[..5], &[0x30, 3 + 2 + 33, 0x02, 1, 1]);
        assert_eq!(&der[5..8], &[0x02, 33, 0x00]);
        assert_eq!(der.len(), 2 + 3 + 35);
        assert!(ecdsa_jws_to_der(&[0; 64], 32).is_none());
        assert!(ecdsa_jws_to_der(&sig[..63], 32).is_none());
        let big = vec![0xff; 96];
        let der = ecdsa_jws_to_der(&big, 48).unwrap();
        assert_eq!(&der[..3], &[0x30, 2 * 51, 0x02]);
        // The p384 crate reads it back as the same signature.
        let parsed = p384::ecdsa::Signature::from_der(&der);
        assert!(parsed.is_err(), "0xff.. is out of range for P-384");
    }

    #[test]
    fn der_round_trips_through_the_ecdsa_crates() {
        let key = Key::get(KeyName::P256);
        let t = key.token(Alg::ES256, &claims(json!({})));
        let jws = Jws::parse(t.as_bytes()).unwrap();
        let der = ecdsa_jws_to_der(&jws.signature, 32).unwrap();
        let from_der = p256::ecdsa::Signature::from_der(&der).unwrap();
        assert_eq!(&from_der.to_bytes()[..], jws.signature.as_slice());
        let key = Key::get(KeyName::P384);
        let t = key.token(Alg::ES384, &claims(json!({})));
        let jws = Jws::parse(t.as_bytes()).unwrap();
        let der = ecdsa_jws_to_der(&jws.signature, 48).unwrap();
        let from_der = p384::ecdsa::Signature::from_der(&der).unwrap();
        assert_eq!(&from_der.to_bytes()[..], jws.signature.as_slice());
    }

    /// A stand-in for Envoy: decodes the arguments and verifies with the
    /// RustCrypto crates from the DER key and DER signature, as BoringSSL
    /// would. It proves the encoding carries what the host needs.
    fn fake_host(args: &[u8]) -> Result<Vec<u8>, CallError> {
        use rsa::pkcs8::DecodePublicKey;
        use rsa::signature::Verifier;
        let mut fields: Vec<Vec<u8>> = vec![Vec::new(); 5];
        let mut pos = 0;
        while pos < args.len() {
            let key = read_varint(args, &mut pos).unwrap() as usize;
            let len = read_varint(args, &mut pos).unwrap() as usize;
            fields[key >> 3] = args[pos..pos + len].to_vec();
            pos += len;
        }
        let (hash, spki, sig, text) = (&fields[1], &fields[2], &fields[3], &fields[4]);
        let ok = if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(spki) {
            let s = rsa::pkcs1v15::Signature::try_from(sig.as_slice()).unwrap();
            match hash.as_slice() {
                b"sha256" => rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(k)
                    .verify(text, &s)
                    .is_ok(),
                b"sha384" => rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(k)
                    .verify(text, &s)
                    .is_ok(),
                _ => rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(k)
                    .verify(text, &s)
                    .is_ok(),
            }
        } else if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(spki) {
            p256::ecdsa::Signature::from_der(sig).is_ok_and(|s| k.verify(text, &s).is_ok())
        } else if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_der(spki) {
            p384::ecdsa::Signature::from_der(sig).is_ok_and(|s| k.verify(text, &s).is_ok())
        } else {
            return Err(CallError::Refused);
        };
        Ok(if ok {
            vec![0x08, 0x01]
        } else {
            vec![0x12, 3, b'b', b'a', b'd']
        })
    }

    #[test]
    fn host_path_agrees_with_pure_rust_on_every_token() {
        let keys = every_key();
        let opts = JwksOptions {
            allow_oct: true,
            min_rsa_bits: 2048,
            strict: true,
        };
        let set = KeySet::parse(jwks(&keys).as_bytes(), opts).unwrap();
        let call: &ForeignCall = &fake_host;
        let available = Cell::new(true);
        let host = HostCrypto::new(call, &available);
        let mut host_used = 0;
        for (key, jwk) in keys.iter().zip(&set.keys) {
            for alg in key.algs() {
                let good = key.token(alg, &claims(json!({})));
                let mut bad = good.clone().into_bytes();
                let n = bad.len();
                bad[n - 5] = if bad[n - 5] == b'A' { b'B' } else { b'A' };
                let zero = format!("{}.{}", good.rsplit_once('.').unwrap().0, "AAAA");
                for t in [good.as_bytes(), &bad[..], zero.as_bytes()] {
                    let jws = Jws::parse(t).unwrap();
                    let input = jws.signing_input(t);
                    let (host_says, by) = verify(&host, alg, jwk, input, &jws.signature);
                    let pure_says = pure_verify(alg, jwk, input, &jws.signature);
                    assert_eq!(host_says, pure_says, "{alg}");
                    assert_eq!(by == VerifiedBy::Host, host_supports(alg), "{alg}");
                    host_used += usize::from(by == VerifiedBy::Host);
                }
            }
        }
        assert_eq!(host_used, 15);
    }

    #[test]
    fn a_host_without_the_function_is_asked_once() {
        let key = Key::get(KeyName::RsaA);
        let opts = JwksOptions {
            allow_oct: false,
            min_rsa_bits: 2048,
            strict: true,
        };
        let set = KeySet::parse(jwks(std::slice::from_ref(&key)).as_bytes(), opts).unwrap();
        let calls = Cell::new(0);
        let missing = |_: &[u8]| -> Result<Vec<u8>, CallError> {
            calls.set(calls.get() + 1);
            Err(CallError::Unavailable)
        };
        let available = Cell::new(true);
        let host = HostCrypto::new(&missing, &available);
        let t = key.token(Alg::RS256, &claims(json!({})));
        let jws = Jws::parse(t.as_bytes()).unwrap();
        for _ in 0..3 {
            let (ok, by) = verify(
                &host,
                Alg::RS256,
                &set.keys[0],
                jws.signing_input(t.as_bytes()),
                &jws.signature,
            );
            assert!(ok);
            assert_eq!(by, VerifiedBy::Pure);
        }
        assert_eq!(calls.get(), 1);
    }
}
