//! What the fuzz targets share: the fixed test keys, the configs under
//! test, and a small text format for a request (so seeds stay readable and
//! libFuzzer's mutations stay meaningful).
//!
//! A request input is lines separated by `\n`; requests in a sequence are
//! separated by a `---` line:
//!
//! ```text
//! GET /api/items?page=2            first line: method, space, path
//! :authority: api.test             header `name: value` (value is raw bytes)
//! authorization: Bearer eyJ...
//! @source.address: 10.0.0.1:1234   property (dotted path), raw bytes
//! @response.code#: 200             `#`: a decimal integer, sent as 8 bytes LE
//! !now: 1700000000                 host clock, seconds
//! !hs256: {"sub":"x"}              a token over these claims, HS256 with the
//!                                  test `oct` key, as `Authorization: Bearer`
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use filter_common::testing::FakeHost;
use jwt_compact::alg::{Hs256, Hs256Key, Rsa, RsaPrivateKey};
use jwt_compact::{Algorithm, AlgorithmSignature};
use rsa::pkcs8::DecodePrivateKey;
use rsa::traits::PublicKeyParts;
use serde_json::{json, Value};

/// The clock of every target unless a request sets `!now` (seconds).
pub const NOW: u64 = 1_700_000_000;
pub const NANOS: u64 = 1_000_000_000;
/// The `oct` key of the test JWKS (64 bytes, so HS256/384/512 all fit).
pub const HMAC_KEY: [u8; 64] = [0x44; 64];
pub const ISSUER: &str = "https://issuer.test";

const RSA_A_DER: &[u8] = include_bytes!("../../../filters/jwt-auth/src/testdata/rsa_a.der");

/// The test keys (fixed; the same ones jwt-auth's unit tests use).
pub struct Keys {
    pub rsa: RsaPrivateKey,
    pub p256: p256::ecdsa::SigningKey,
    pub p384: p384::ecdsa::SigningKey,
    pub ed25519: ed25519_compact::KeyPair,
}

impl Keys {
    /// `None` only if the checked-in key material is broken.
    pub fn load() -> Option<Keys> {
        Some(Keys {
            rsa: RsaPrivateKey::from_pkcs8_der(RSA_A_DER).ok()?,
            p256: p256::ecdsa::SigningKey::from_slice(&[0x11; 32]).ok()?,
            p384: p384::ecdsa::SigningKey::from_slice(&[0x22; 48]).ok()?,
            ed25519: ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([0x33; 32])),
        })
    }

    /// The public JWKS, with the `oct` key when `with_oct`.
    pub fn jwks(&self, with_oct: bool) -> Value {
        let b = |v: &[u8]| B64.encode(v);
        let rsa = self.rsa.to_public_key();
        let p256 = self.p256.verifying_key().to_encoded_point(false);
        let p384 = self.p384.verifying_key().to_encoded_point(false);
        let mut keys = vec![
            json!({"kty":"RSA","kid":"rsa-a","n":b(&rsa.n().to_bytes_be()),"e":b(&rsa.e().to_bytes_be())}),
            json!({"kty":"EC","crv":"P-256","kid":"ec-256","x":b(p256.x().map_or(&[][..], |x| &x[..])),"y":b(p256.y().map_or(&[][..], |y| &y[..]))}),
            json!({"kty":"EC","crv":"P-384","kid":"ec-384","x":b(p384.x().map_or(&[][..], |x| &x[..])),"y":b(p384.y().map_or(&[][..], |y| &y[..]))}),
            json!({"kty":"OKP","crv":"Ed25519","kid":"ed","x":b(self.ed25519.pk.as_ref())}),
        ];
        if with_oct {
            keys.push(json!({"kty":"oct","kid":"hmac","k":b(&HMAC_KEY)}));
        }
        json!({ "keys": keys })
    }

    /// A compact JWS over `claims` with `alg` (one of RS256, PS256, ES256,
    /// ES384, EdDSA, HS256) and the matching key's `kid`.
    pub fn token(&self, alg: &str, claims: &Value) -> String {
        let kid = match alg {
            "RS256" | "RS384" | "RS512" | "PS256" | "PS384" | "PS512" => "rsa-a",
            "ES256" => "ec-256",
            "ES384" => "ec-384",
            "EdDSA" => "ed",
            _ => "hmac",
        };
        let header = json!({"alg": alg, "typ": "JWT", "kid": kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self.sign(alg, input.as_bytes());
        format!("{input}.{}", B64.encode(sig))
    }

    fn sign(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        match alg {
            "ES256" => {
                use p256::ecdsa::signature::Signer;
                let s: p256::ecdsa::Signature = self.p256.sign(input);
                s.to_bytes().to_vec()
            }
            "ES384" => {
                use p384::ecdsa::signature::Signer;
                let s: p384::ecdsa::Signature = self.p384.sign(input);
                s.to_bytes().to_vec()
            }
            "EdDSA" => self.ed25519.sk.sign(input, None).to_vec(),
            a if a.starts_with("RS") || a.starts_with("PS") => Rsa::with_name(a)
                .sign(&self.rsa, input)
                .as_bytes()
                .into_owned(),
            _ => hs256(input),
        }
    }
}

fn hs256(input: &[u8]) -> Vec<u8> {
    Hs256
        .sign(&Hs256Key::new(HMAC_KEY), input)
        .as_bytes()
        .into_owned()
}

/// An HS256 token over raw claim bytes (need not be JSON: the fuzzer
/// chooses), signed with [`HMAC_KEY`], so fuzzed claims get past the
/// signature check.
pub fn hs256_token(claims: &[u8]) -> String {
    let header = br#"{"alg":"HS256","typ":"JWT","kid":"hmac"}"#;
    let input = format!("{}.{}", B64.encode(header), B64.encode(claims));
    let sig = hs256(input.as_bytes());
    format!("{input}.{}", B64.encode(sig))
}

/// Claims valid for the providers of [`jwt_auth_config`] at [`NOW`].
pub fn claims(extra: Value) -> Value {
    let now = NOW as i64;
    let mut c =
        json!({"iss": ISSUER, "sub": "alice", "aud": "api", "iat": now - 10, "exp": now + 600});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    c
}

/// The jwt-auth config of the `jwt_check` target: every key type, every
/// requirement form, every authorization condition, every token location.
pub fn jwt_auth_config(keys: &Keys) -> Value {
    json!({
        "realm": "fuzz",
        "providers": {
            "main": {
                "issuer": ISSUER,
                "audiences": ["api"],
                "algorithms": ["RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512"],
                "local_jwks": {"inline_string": keys.jwks(true).to_string()},
                "from_headers": [{"name": "authorization", "value_prefix": "Bearer "}, {"name": "x-jwt"}],
                "from_params": ["access_token"],
                "from_cookies": ["session"],
                "claim_to_headers": [
                    {"header_name": "x-sub", "claim_name": "sub"},
                    {"header_name": "x-tier", "claim_name": "org.tier"},
                    {"header_name": "x-roles", "claim_name": "roles"}
                ],
                "forward_payload_header": "x-jwt-payload",
                "max_lifetime": "3600s"
            },
            "other": {
                "issuer": "https://other.test",
                "algorithms": ["HS256"],
                "local_jwks": {"inline_string": json!({"keys": [{"kty":"oct","kid":"hmac","k": B64.encode(HMAC_KEY)}]}).to_string()},
                "from_headers": [{"name": "x-other-token"}],
                "forward": true,
                "require_expiration": true,
                "clock_skew_seconds": 0
            }
        },
        "rules": [
            {"match": {"prefix": "/public"}},
            {"match": {"prefix": "/internal"}, "peer_principals": ["spiffe://cluster.local/ns/shop/*", "spiffe://exact"]},
            {"match": {"prefix": "/api", "methods": ["GET", "HEAD"]}, "requires": {"provider_name": "main"},
             "authorization": {"all": [{"claim": "scope", "contains": "read"}],
                               "any": [{"claim": "org.tier", "equals": "gold"}, {"claim": "roles", "any_of": ["admin", "editor"]}, {"claim": "vip", "present": true}]}},
            {"match": {"prefix": "/api"}, "requires": {"provider_name": "main"},
             "authorization": {"all": [{"claim": "scope", "contains": "write"}, {"claim": "banned", "present": false}]}},
            {"match": {"prefix": "/any"}, "requires": {"requires_any": {"requirements": [{"provider_name": "main"}, {"provider_name": "other"}]}}},
            {"match": {"prefix": "/all"}, "requires": {"requires_all": {"requirements": [{"provider_name": "main"}, {"provider_name": "other"}]}}},
            {"match": {"prefix": "/optional"}, "requires": {"requires_any": {"requirements": [{"provider_name": "main"}, {"allow_missing": {}}]}}},
            {"match": {"prefix": "/lenient"}, "requires": {"allow_missing_or_failed": {}}},
            {"match": {"prefix": "/", "host": "*.admin.test", "headers": [{"name": "x-mode", "exact_match": "strict"}]},
             "requires": {"requires_all": {"requirements": [{"provider_name": "main"}, {"provider_name": "main"}]}}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "main"}}
        ]
    })
}

/// The rate-limit config of the `rate_limit_key` target: every key source,
/// small tables (memory is checked to stay exactly this size).
pub const RATE_LIMIT_CONFIG: &str = r#"{
  "slots": 8,
  "headers": {"on_allowed": true, "x_ratelimit": true},
  "rules": [
    {"name": "ip", "key": [{"client_ip": {"trusted_hops": 2, "ipv6_prefix_len": 64}}],
     "limit": {"requests_per_unit": 2, "unit": "second", "burst": 2}},
    {"name": "peer", "key": [{"client_ip": {}}],
     "limit": {"requests_per_unit": 3, "unit": "minute"}},
    {"name": "api-key", "match": {"prefix": "/api"},
     "key": [{"header": {"name": "x-api-key"}}, {"method": {}}, {"path": {}}],
     "limit": {"requests_per_unit": 1, "unit": "minute"}, "on_missing_key": "skip"},
    {"name": "who", "key": [{"identity": {}}, {"route": {}}, {"peer_uri_san": {}}],
     "limit": {"requests_per_unit": 5, "unit": "hour", "burst": 1}, "shadow": true, "slots": 4},
    {"name": "gold", "match": {"host": "*.example.com", "methods": ["POST"], "headers": [{"name": "x-tier", "exact_match": "gold"}]},
     "key": [], "limit": {"requests_per_unit": 1000000000, "unit": "day"}, "failure_mode": "allow"}
  ]
}"#;

/// The audit-log config of the `audit_event` target: every sink, redaction,
/// labels, claims, sampling, and a small field cap.
pub const AUDIT_LOG_CONFIG: &str = r#"{
  "sinks": {"log": {}, "access_log": {},
            "http": [{"cluster": "collector", "path": "/_bulk", "format": "elasticsearch_bulk",
                      "batch_max_bytes": 2048, "queue_max_bytes": 4096, "flush_interval_ms": 10,
                      "headers": [["x-tenant", "fuzz"]]},
                     {"cluster": "ndjson", "batch_max_bytes": 1024, "queue_max_bytes": 1024}]},
  "redact": {"headers": ["x-session-token"], "query_params": ["session_id"]},
  "query_params": ["page", "q"],
  "headers": [{"name": "x-tenant-id", "label": "tenant"}, {"name": "X-Trace"}],
  "principal_claims": ["scope", "roles", "org.tier"],
  "sampling": {"allowed_rate": 0.5, "exclude": [{"prefix": "/health"}]},
  "max_field_bytes": 64
}"#;

/// Sum of `queue_max_bytes` in [`AUDIT_LOG_CONFIG`].
pub const AUDIT_QUEUE_CAP: usize = 4096 + 1024;

/// Splits a multi-request input at `---` lines.
pub fn split_requests(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < data.len() {
        let line_end = data[i..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(data.len(), |p| i + p);
        if &data[i..line_end] == b"---" {
            out.push(&data[start..i]);
            start = (line_end + 1).min(data.len());
        }
        i = line_end + 1;
    }
    out.push(&data[start.min(data.len())..]);
    out
}

/// One request of the text format, as a [`FakeHost`].
pub fn parse_request(data: &[u8]) -> FakeHost {
    let mut host = FakeHost {
        now_nanos: NOW * NANOS,
        ..FakeHost::default()
    };
    let mut lines = data.split(|b| *b == b'\n');
    if let Some(first) = lines.next() {
        let (method, path) = match first.iter().position(|b| *b == b' ') {
            Some(p) => (&first[..p], &first[p + 1..]),
            None => (first, &b"/"[..]),
        };
        host.request_headers
            .push((":method".into(), method.to_vec()));
        host.request_headers.push((":path".into(), path.to_vec()));
    }
    for line in lines {
        // `: ` after the first byte, so `:authority: x` splits after `:authority`.
        let Some(sep) = line
            .windows(2)
            .skip(1)
            .position(|w| w == b": ")
            .map(|p| p + 1)
        else {
            continue;
        };
        let (name, value) = (&line[..sep], &line[sep + 2..]);
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        if let Some(prop) = name.strip_prefix('@') {
            if let Some(int_prop) = prop.strip_suffix('#') {
                let n: i64 = std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                host.properties
                    .insert(int_prop.to_string(), n.to_le_bytes().to_vec());
            } else {
                host.properties.insert(prop.to_string(), value.to_vec());
            }
        } else if let Some(directive) = name.strip_prefix('!') {
            match directive {
                "now" => {
                    let secs: u64 = std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(NOW);
                    host.now_nanos = secs.saturating_mul(NANOS);
                }
                "hs256" => {
                    let token = hs256_token(value);
                    host.request_headers.push((
                        "authorization".into(),
                        format!("Bearer {token}").into_bytes(),
                    ));
                }
                _ => {}
            }
        } else {
            host.request_headers.push((name, value.to_vec()));
        }
    }
    host
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
