//! A provider's keys, parsed from a JWKS (RFC 7517) once, when the set is
//! loaded or fetched, so each request only looks keys up.
//!
//! Each key keeps what both verification paths need: the parsed key for
//! pure Rust and its DER SubjectPublicKeyInfo for Envoy's `verify_signature`.

use crate::algorithm::{Alg, KeyKind};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use serde_json::{Map, Value};
use std::fmt;

/// At most this many keys in one set; a JWKS with more is refused.
pub const MAX_KEYS: usize = 64;
/// A remote JWKS larger than this is refused (the last good set stays).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// How strict to be while parsing a set.
#[derive(Debug, Clone, Copy)]
pub struct JwksOptions {
    /// Symmetric (`oct`) keys are only accepted from inline config.
    pub allow_oct: bool,
    /// RSA keys with a shorter modulus are refused.
    pub min_rsa_bits: usize,
    /// Inline sets refuse any bad key; remote sets skip it and keep the rest.
    pub strict: bool,
}

/// One verification key.
#[derive(Clone)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The JWK's own `alg`, if it names one: the token must use it.
    pub alg: Option<Alg>,
    pub material: KeyMaterial,
}

/// The key itself. Secrets are never printed (see the `Debug` impl).
#[derive(Clone)]
pub enum KeyMaterial {
    Rsa {
        key: RsaPublicKey,
        spki: Vec<u8>,
    },
    P256 {
        key: p256::ecdsa::VerifyingKey,
        spki: Vec<u8>,
    },
    P384 {
        key: p384::ecdsa::VerifyingKey,
        spki: Vec<u8>,
    },
    Ed25519(ed25519_compact::PublicKey),
    Oct(Vec<u8>),
}

impl KeyMaterial {
    pub fn kind(&self) -> KeyKind {
        match self {
            KeyMaterial::Rsa { .. } => KeyKind::Rsa,
            KeyMaterial::P256 { .. } => KeyKind::P256,
            KeyMaterial::P384 { .. } => KeyKind::P384,
            KeyMaterial::Ed25519(_) => KeyKind::Ed25519,
            KeyMaterial::Oct(_) => KeyKind::Oct,
        }
    }

    /// DER SubjectPublicKeyInfo, for the host's `verify_signature`.
    pub fn spki(&self) -> Option<&[u8]> {
        match self {
            KeyMaterial::Rsa { spki, .. }
            | KeyMaterial::P256 { spki, .. }
            | KeyMaterial::P384 { spki, .. } => Some(spki),
            _ => None,
        }
    }
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kind", &self.material.kind())
            .finish()
    }
}

impl Jwk {
    /// Whether this key may verify a token signed with `alg`: the key
    /// family must fit, and a JWK that names its `alg` only serves that one.
    pub fn fits(&self, alg: Alg) -> bool {
        if self.material.kind() != alg.key_kind() {
            return false;
        }
        if let Some(own) = self.alg {
            if own != alg {
                return false;
            }
        }
        match &self.material {
            KeyMaterial::Oct(k) => k.len() >= alg.min_hmac_key_len(),
            _ => true,
        }
    }
}

/// A parsed JWKS.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
    /// Keys skipped while parsing a remote set, with why (for the log).
    pub skipped: Vec<String>,
    /// `oct` (HMAC) keys left out because the provider does not enable HMAC
    /// (see [`KeySet::parse_without_oct`]).
    pub oct_skipped: usize,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys":[...]}`).
    pub fn parse(bytes: &[u8], opts: JwksOptions) -> Result<KeySet, String> {
        Self::parse_inner(bytes, opts, false)
    }

    /// Parses a JWKS, leaving out every `oct` (HMAC) key unread and
    /// counting it: native `jwt_authn` loads a set that mixes HMAC and
    /// public keys, and we load it too, but a provider without HMAC in
    /// `algorithms` never holds the secret, so it can verify nothing.
    pub fn parse_without_oct(bytes: &[u8], opts: JwksOptions) -> Result<KeySet, String> {
        Self::parse_inner(bytes, opts, true)
    }

    fn parse_inner(bytes: &[u8], opts: JwksOptions, skip_oct: bool) -> Result<KeySet, String> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(format!("JWKS is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("JWKS is not JSON: {e}"))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS has no `keys` array")?;
        if keys.len() > MAX_KEYS {
            return Err(format!("JWKS has more than {MAX_KEYS} keys"));
        }
        let mut set = KeySet::default();
        for (i, k) in keys.iter().enumerate() {
            if skip_oct && k.get("kty").and_then(Value::as_str) == Some("oct") {
                set.oct_skipped += 1;
                continue;
            }
            match parse_jwk(k, opts) {
                Ok(Some(jwk)) => set.keys.push(jwk),
                Ok(None) => {}
                Err(e) if opts.strict => return Err(format!("keys[{i}]: {e}")),
                Err(e) => set.skipped.push(format!("keys[{i}]: {e}")),
            }
        }
        if set.keys.is_empty() {
            return Err(match set.skipped.first() {
                Some(first) => format!("JWKS has no usable key ({first})"),
                None if set.oct_skipped > 0 => format!(
                    "JWKS has no usable key: its {} oct (HMAC) key(s) need HS256, HS384 or HS512 in `algorithms`",
                    set.oct_skipped
                ),
                None => "JWKS has no usable key".to_string(),
            });
        }
        Ok(set)
    }

    /// Keys that may verify `alg`, narrowed to `kid` when the token names one.
    pub fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Alg,
    ) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys
            .iter()
            .filter(move |k| kid.is_none() || k.kid.as_deref() == kid)
            .filter(move |k| k.fits(alg))
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

fn text<'a>(k: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, String> {
    match k.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("`{name}` is not a string")),
    }
}

/// A base64url member. Whitespace is skipped, as Envoy's decoder does:
/// Envoy's own examples fold a long `n` over several YAML lines.
fn bytes(k: &Map<String, Value>, name: &str) -> Result<Vec<u8>, String> {
    let s = text(k, name)?.ok_or_else(|| format!("`{name}` is missing"))?;
    let compact: String;
    let s = if s.bytes().any(|b| b.is_ascii_whitespace()) {
        compact = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        compact.as_str()
    } else {
        s
    };
    B64.decode(s.trim_end_matches('='))
        .map_err(|_| format!("`{name}` is not base64url"))
}

/// `Ok(None)` for a key that is not for signatures (`use` other than `sig`).
fn parse_jwk(v: &Value, opts: JwksOptions) -> Result<Option<Jwk>, String> {
    let k = v.as_object().ok_or("a key is not an object")?;
    if let Some(u) = text(k, "use")? {
        if u != "sig" {
            return Ok(None);
        }
    }
    if let Some(ops) = k.get("key_ops") {
        let ops = ops.as_array().ok_or("`key_ops` is not an array")?;
        if !ops.iter().any(|o| o.as_str() == Some("verify")) {
            return Ok(None);
        }
    }
    let kid = text(k, "kid")?.map(str::to_string);
    let alg = match text(k, "alg")? {
        None => None,
        Some(name) => {
            Some(Alg::from_name(name).ok_or_else(|| format!("unsupported alg `{name}`"))?)
        }
    };
    let kty = text(k, "kty")?.ok_or("`kty` is missing")?;
    let material = match kty {
        "RSA" => rsa_key(k, opts)?,
        "EC" => {
            let crv = text(k, "crv")?.ok_or("`crv` is missing")?;
            let (x, y) = (bytes(k, "x")?, bytes(k, "y")?);
            ec_key(crv, &x, &y)?
        }
        "OKP" => {
            let crv = text(k, "crv")?.ok_or("`crv` is missing")?;
            if crv != "Ed25519" {
                return Err(format!("unsupported OKP curve `{crv}`"));
            }
            let x = bytes(k, "x")?;
            let pk = ed25519_compact::PublicKey::from_slice(&x)
                .map_err(|_| "`x` is not an Ed25519 public key".to_string())?;
            KeyMaterial::Ed25519(pk)
        }
        "oct" => {
            if !opts.allow_oct {
                return Err("symmetric (oct) keys are only accepted in local_jwks".into());
            }
            let secret = bytes(k, "k")?;
            if secret.len() < 32 {
                return Err("an oct key must have at least 32 bytes".into());
            }
            KeyMaterial::Oct(secret)
        }
        other => return Err(format!("unsupported kty `{other}`")),
    };
    let jwk = Jwk { kid, alg, material };
    if let Some(a) = jwk.alg {
        if a.key_kind() != jwk.material.kind() {
            return Err(format!("alg `{a}` does not fit kty `{kty}`"));
        }
    }
    Ok(Some(jwk))
}

fn rsa_key(k: &Map<String, Value>, opts: JwksOptions) -> Result<KeyMaterial, String> {
    let n = BigUint::from_bytes_be(&bytes(k, "n")?);
    let e = BigUint::from_bytes_be(&bytes(k, "e")?);
    let key = RsaPublicKey::new(n, e).map_err(|e| format!("bad RSA key: {e}"))?;
    let bits = key.n().bits();
    if bits < opts.min_rsa_bits {
        return Err(format!(
            "RSA key has {bits} bits, fewer than {}",
            opts.min_rsa_bits
        ));
    }
    let spki = key
        .to_public_key_der()
        .map_err(|e| format!("bad RSA key: {e}"))?
        .as_bytes()
        .to_vec();
    Ok(KeyMaterial::Rsa { key, spki })
}

/// DER SubjectPublicKeyInfo prefixes for uncompressed EC points
/// (id-ecPublicKey with the named curve), followed by `04 || x || y`.
const P256_SPKI_PREFIX: [u8; 27] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
];
const P384_SPKI_PREFIX: [u8; 24] = [
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b,
    0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00, 0x04,
];

fn ec_key(crv: &str, x: &[u8], y: &[u8]) -> Result<KeyMaterial, String> {
    let (len, prefix): (usize, &[u8]) = match crv {
        "P-256" => (32, &P256_SPKI_PREFIX),
        "P-384" => (48, &P384_SPKI_PREFIX),
        other => return Err(format!("unsupported EC curve `{other}`")),
    };
    if x.len() != len || y.len() != len {
        return Err(format!("`x` and `y` must be {len} bytes for {crv}"));
    }
    let mut spki = prefix.to_vec();
    spki.extend_from_slice(x);
    spki.extend_from_slice(y);
    let sec1 = spki.get(prefix.len() - 1..).unwrap_or_default();
    let bad = || format!("the point is not on {crv}");
    Ok(if len == 32 {
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1).map_err(|_| bad())?;
        KeyMaterial::P256 { key, spki }
    } else {
        let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(sec1).map_err(|_| bad())?;
        KeyMaterial::P384 { key, spki }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{every_key, Key, KeyName};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const STRICT: JwksOptions = JwksOptions {
        allow_oct: true,
        min_rsa_bits: 2048,
        strict: true,
    };
    const REMOTE: JwksOptions = JwksOptions {
        allow_oct: false,
        min_rsa_bits: 2048,
        strict: false,
    };

    #[test]
    fn parses_every_key_type() {
        let keys = every_key();
        let jwks = crate::testkit::jwks(&keys);
        let set = KeySet::parse(jwks.as_bytes(), STRICT).unwrap();
        assert_eq!(set.keys.len(), 5);
        let kinds: Vec<KeyKind> = set.keys.iter().map(|k| k.material.kind()).collect();
        assert_eq!(
            kinds,
            [
                KeyKind::Rsa,
                KeyKind::P256,
                KeyKind::P384,
                KeyKind::Ed25519,
                KeyKind::Oct
            ]
        );
        // The SPKI encodings are what openssl/BoringSSL expect.
        assert_eq!(set.keys[0].material.spki().unwrap()[0], 0x30);
        assert_eq!(set.keys[1].material.spki().unwrap().len(), 91);
        assert_eq!(set.keys[2].material.spki().unwrap().len(), 120);
    }

    #[test]
    fn remote_sets_skip_bad_keys_but_inline_sets_refuse_them() {
        let good = Key::get(KeyName::RsaA).jwk();
        let weak = Key::get(KeyName::RsaWeak).jwk();
        let oct = Key::get(KeyName::Hmac).jwk();
        let doc = serde_json::json!({"keys": [good, weak, oct, {"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]}).to_string();
        let set = KeySet::parse(doc.as_bytes(), REMOTE).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.skipped.len(), 3);
        let err = KeySet::parse(doc.as_bytes(), STRICT).unwrap_err();
        assert!(err.starts_with("keys[1]: RSA key has 1024 bits"), "{err}");
    }

    #[test]
    fn oct_keys_can_be_left_out_unread() {
        let rsa = Key::get(KeyName::RsaA).jwk();
        let oct = Key::get(KeyName::Hmac).jwk();
        // Even a key that would not parse (too short) is only counted.
        let short = serde_json::json!({"kty": "oct", "kid": "short", "k": "c2hvcnQ"});
        // (keys, Ok((usable, oct skipped)) or Err(part of the message))
        type Case = (Vec<serde_json::Value>, Result<(usize, usize), &'static str>);
        let cases: [Case; 4] = [
            (vec![rsa.clone(), oct.clone(), short.clone()], Ok((1, 2))),
            (vec![rsa.clone()], Ok((1, 0))),
            (vec![oct.clone(), short.clone()], Err("need HS256")),
            (
                vec![rsa.clone(), serde_json::json!({"kty": "EC"})],
                Err("keys[1]"),
            ),
        ];
        for (keys, want) in cases {
            let doc = serde_json::json!({ "keys": keys }).to_string();
            let got = KeySet::parse_without_oct(doc.as_bytes(), STRICT)
                .map(|s| (s.keys.len(), s.oct_skipped));
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "{doc}"),
                (Err(e), Err(w)) => assert!(e.contains(w), "{doc}: {e}"),
                (g, w) => panic!("{doc}: got {g:?}, want {w:?}"),
            }
        }
        // The plain parse still reads (and here refuses) the short key.
        let doc = serde_json::json!({ "keys": [rsa, oct, short] }).to_string();
        assert!(KeySet::parse(doc.as_bytes(), STRICT).is_err());
    }

    #[test]
    fn broken_documents_are_refused() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"keys":{}}"#,
            r#"{"keys":[]}"#,
            r#"{"keys":[{"kty":"RSA","n":"!!","e":"AQAB"}]}"#,
            r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}]}"#,
            r#"{"keys":[{"kty":"OKP","crv":"X25519","x":"AAAA"}]}"#,
            r#"{"keys":[{"kty":"oct","k":"c2hvcnQ"}]}"#,
            r#"{"keys":[{"kty":"RSA","alg":"ES256","n":"AQAB","e":"AQAB"}]}"#,
        ] {
            assert!(KeySet::parse(bad.as_bytes(), STRICT).is_err(), "{bad}");
        }
        let huge = format!(r#"{{"keys":[],"pad":"{}"}}"#, "a".repeat(MAX_JWKS_BYTES));
        assert!(KeySet::parse(huge.as_bytes(), REMOTE).is_err());
    }

    #[test]
    fn an_ec_point_off_the_curve_is_refused() {
        let x = B64.encode([1u8; 32]);
        let doc = format!(r#"{{"keys":[{{"kty":"EC","crv":"P-256","x":"{x}","y":"{x}"}}]}}"#);
        let err = KeySet::parse(doc.as_bytes(), STRICT).unwrap_err();
        assert!(err.contains("not on P-256"), "{err}");
    }

    #[test]
    fn encryption_keys_are_ignored_and_alg_binds_the_key() {
        let mut enc = Key::get(KeyName::RsaA).jwk();
        enc["use"] = "enc".into();
        let mut sig = Key::get(KeyName::RsaB).jwk();
        sig["alg"] = "PS256".into();
        let doc = serde_json::json!({ "keys": [enc, sig] }).to_string();
        let set = KeySet::parse(doc.as_bytes(), STRICT).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert!(set.keys[0].fits(Alg::PS256));
        assert!(!set.keys[0].fits(Alg::RS256));
        assert!(!set.keys[0].fits(Alg::HS256));
    }
}
