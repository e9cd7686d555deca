//! The JWS compact parser on arbitrary bytes: never panics, and what it
//! accepts is well-formed (signing input inside the token, a signature).
#![no_main]

use jwt_auth::jws::{payload_b64, Jws};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = payload_b64(data);
    if let Ok(jws) = Jws::parse(data) {
        let input = jws.signing_input(data);
        assert_eq!(input.len(), jws.signing_input_len);
        assert!(!jws.signature.is_empty());
        assert_eq!(data.iter().filter(|b| **b == b'.').count(), 2);
    }
});
