//! JWKS parsing (inline and remote rules), then key lookup.
//! Byte 0 picks the options; the rest is the document.
#![no_main]

use jwt_auth::algorithm::Alg;
use jwt_auth::key_set::{JwksOptions, KeySet, MAX_KEYS};
use libfuzzer_sys::fuzz_target;

const ALGS: [&str; 12] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256",
    "HS384", "HS512",
];

fuzz_target!(|data: &[u8]| {
    let Some((flags, doc)) = data.split_first() else {
        return;
    };
    let opts = JwksOptions {
        allow_oct: flags & 1 != 0,
        strict: flags & 2 != 0,
        min_rsa_bits: if flags & 4 != 0 { 2048 } else { 512 },
    };
    let Ok(set) = KeySet::parse(doc, opts) else {
        return;
    };
    assert!(!set.keys.is_empty() && set.keys.len() <= MAX_KEYS);
    if opts.strict {
        assert!(set.skipped.is_empty());
    }
    for name in ALGS {
        let Some(alg) = Alg::from_name(name) else {
            continue;
        };
        for key in set.candidates(None, alg) {
            assert!(key.fits(alg));
            if let Some(kid) = &key.kid {
                assert!(set.has_kid(kid));
            }
            let _ = key.material.spki();
            let _ = format!("{key:?}");
        }
    }
});
