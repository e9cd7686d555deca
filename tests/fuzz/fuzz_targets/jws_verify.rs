//! Signature verification over a fixed key set (every key type).
//!
//! Input starting with `e` (as every JWS does) is a token: parsed, then
//! checked against each candidate key as jwt-auth does. Any other input
//! drives `pure_verify` directly: byte 0 picks the algorithm, byte 1 the
//! key, byte 2 where the message ends; the rest is message then signature
//! (wrong lengths included: some signature parsers panic on them).
#![no_main]

use jwt_auth::algorithm::Alg;
use jwt_auth::jws::Jws;
use jwt_auth::key_set::{JwksOptions, KeySet};
use jwt_auth::verifier::{pure_verify, verify, PureRust};
use libfuzzer_sys::fuzz_target;
use portcullis_fuzz::Keys;
use std::sync::OnceLock;

const ALGS: [&str; 12] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

fn key_set() -> &'static KeySet {
    static SET: OnceLock<KeySet> = OnceLock::new();
    SET.get_or_init(|| {
        let keys = Keys::load().expect("test keys");
        let opts = JwksOptions {
            allow_oct: true,
            min_rsa_bits: 2048,
            strict: true,
        };
        KeySet::parse(keys.jwks(true).to_string().as_bytes(), opts).expect("test JWKS")
    })
}

fuzz_target!(|data: &[u8]| {
    let set = key_set();
    if data.first() == Some(&b'e') {
        let Ok(jws) = Jws::parse(data) else { return };
        let input = jws.signing_input(data);
        for key in set.candidates(jws.kid.as_deref(), jws.alg).take(8) {
            let _ = verify(&PureRust, jws.alg, key, input, &jws.signature);
        }
        return;
    }
    let [a, k, split, rest @ ..] = data else {
        return;
    };
    let Some(alg) = ALGS
        .get(usize::from(*a) % ALGS.len())
        .and_then(|n| Alg::from_name(n))
    else {
        return;
    };
    let Some(key) = set.keys.get(usize::from(*k) % set.keys.len()) else {
        return;
    };
    let (message, signature) = rest.split_at(usize::from(*split).min(rest.len()));
    // A key that does not fit must never verify.
    let valid = pure_verify(alg, key, message, signature);
    assert!(!valid || key.fits(alg));
});
