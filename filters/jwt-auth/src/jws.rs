//! JWS compact serialization (RFC 7515 §7.1), parsed strictly: three
//! base64url parts without padding, a JSON object header and payload.
//!
//! Header parameters that point at keys (`jku`, `x5u`, `x5c`, `jwk`) are
//! never read: keys come only from the provider's configured set.

use crate::algorithm::Alg;
use crate::status::Reason;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{Map, Value};

/// Longest token we parse. Envoy's default header limit (60 KiB) is below it.
pub const MAX_TOKEN_BYTES: usize = 64 * 1024;

/// A parsed, not yet verified, token.
#[derive(Debug, Clone)]
pub struct Jws {
    pub alg: Alg,
    pub kid: Option<String>,
    pub payload: Map<String, Value>,
    /// `base64url(header) || '.' || base64url(payload)`: what was signed.
    pub signing_input_len: usize,
    pub signature: Vec<u8>,
}

impl Jws {
    /// Parses `token`. Errors are reasons, never text from the token.
    pub fn parse(token: &[u8]) -> Result<Jws, Reason> {
        if token.len() > MAX_TOKEN_BYTES || token.is_empty() {
            return Err(Reason::Malformed);
        }
        if !token
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(Reason::Malformed);
        }
        let mut parts = token.split(|b| *b == b'.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Reason::Malformed);
        };
        let header = decode_object(h)?;
        let alg = match header.get("alg") {
            Some(Value::String(name)) => Alg::from_name(name).ok_or(Reason::AlgNotAllowed)?,
            _ => return Err(Reason::Malformed),
        };
        if header.contains_key("crit") {
            // We implement no JWS extension, so every critical one is unknown.
            return Err(Reason::UnsupportedCrit);
        }
        let kid = match header.get("kid") {
            None => None,
            Some(Value::String(k)) => Some(k.clone()),
            Some(_) => return Err(Reason::Malformed),
        };
        let payload = decode_object(p)?;
        let signature = B64.decode(s).map_err(|_| Reason::Malformed)?;
        if signature.is_empty() {
            return Err(Reason::Malformed);
        }
        Ok(Jws {
            alg,
            kid,
            payload,
            signing_input_len: h.len() + 1 + p.len(),
            signature,
        })
    }

    /// The signed bytes, as a slice of the token this was parsed from.
    pub fn signing_input<'t>(&self, token: &'t [u8]) -> &'t [u8] {
        token.get(..self.signing_input_len).unwrap_or_default()
    }
}

/// The payload's base64url text (what Envoy's `forward_payload_header` sends).
pub fn payload_b64(token: &[u8]) -> Option<&[u8]> {
    token.split(|b| *b == b'.').nth(1)
}

fn decode_object(part: &[u8]) -> Result<Map<String, Value>, Reason> {
    let raw = B64.decode(part).map_err(|_| Reason::Malformed)?;
    match serde_json::from_slice(&raw) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(Reason::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{claims, Key, KeyName};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn b64(v: &Value) -> String {
        B64.encode(v.to_string())
    }

    #[test]
    fn parses_a_token() {
        let k = Key::get(KeyName::Hmac);
        let t = k.token(Alg::HS256, &claims(json!({})));
        let jws = Jws::parse(t.as_bytes()).unwrap();
        assert_eq!(jws.alg, Alg::HS256);
        assert_eq!(jws.kid.as_deref(), Some("hmac"));
        assert_eq!(jws.payload["sub"], "alice");
        assert_eq!(jws.signature.len(), 32);
        let input = jws.signing_input(t.as_bytes());
        assert_eq!(input.iter().filter(|b| **b == b'.').count(), 1);
    }

    #[test]
    fn alg_none_in_any_case_is_refused() {
        for none in ["none", "None", "NONE", "nOnE"] {
            let t = format!(
                "{}.{}.",
                b64(&json!({"alg": none})),
                b64(&claims(json!({})))
            );
            assert_eq!(
                Jws::parse(t.as_bytes()).unwrap_err(),
                Reason::AlgNotAllowed,
                "{none}"
            );
            let t = format!(
                "{}.{}.AAAA",
                b64(&json!({"alg": none})),
                b64(&claims(json!({})))
            );
            assert_eq!(
                Jws::parse(t.as_bytes()).unwrap_err(),
                Reason::AlgNotAllowed,
                "{none}"
            );
        }
    }

    #[test]
    fn crit_is_refused() {
        let t = format!(
            "{}.{}.AAAA",
            b64(&json!({"alg":"RS256","crit":["exp"],"exp":1})),
            b64(&json!({}))
        );
        assert_eq!(
            Jws::parse(t.as_bytes()).unwrap_err(),
            Reason::UnsupportedCrit
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let p = b64(&json!({}));
        let h = b64(&json!({"alg":"RS256"}));
        for bad in [
            String::new(),
            "a".into(),
            "a.b".into(),
            "a.b.c.d".into(),
            format!("{h}.{p}.AAAA.AAAA"),
            format!("{h}={p}.AAAA"),
            format!("{h}.{p}.AA==",),
            format!("{h}.{p}."),
            format!("{}.{p}.AAAA", b64(&json!("RS256"))),
            format!("{}.{p}.AAAA", b64(&json!({"alg": 5}))),
            format!("{}.{p}.AAAA", b64(&json!({"alg":"RS256","kid": 5}))),
            format!("{h}.{}.AAAA", b64(&json!([1]))),
            format!("{h}.{}.AAAA", B64.encode("{not json")),
            format!("{h}.{p}.AAAA").replace('A', "\u{e9}"),
            "x".repeat(MAX_TOKEN_BYTES + 1),
        ] {
            assert_eq!(
                Jws::parse(bad.as_bytes()).unwrap_err(),
                Reason::Malformed,
                "{bad:.60}"
            );
        }
        assert!(Jws::parse(b"\xff\xfe.\x00.\x80").is_err());
    }

    #[test]
    fn embedded_keys_are_ignored() {
        let k = Key::get(KeyName::RsaA);
        let header = json!({"alg":"RS256","kid":"rsa-a","jwk": k.jwk(),"jku":"http://evil","x5u":"http://evil","x5c":["AAAA"]});
        let t = k.sign_with_header(Alg::RS256, &header, &claims(json!({})));
        // Parses fine; the fields simply play no part.
        assert!(Jws::parse(t.as_bytes()).is_ok());
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Jws::parse(&bytes);
        }

        #[test]
        fn never_panics_on_token_shaped_text(s in "[A-Za-z0-9_.-]{0,300}") {
            let _ = Jws::parse(s.as_bytes());
        }
    }
}
