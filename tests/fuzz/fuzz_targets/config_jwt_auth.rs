//! jwt-auth config parsing: never panics; every error names a field path
//! or the document; a config that parses builds a filter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::rc::Rc;

fuzz_target!(|data: &[u8]| {
    match jwt_auth::Config::parse(data) {
        Ok(config) => {
            let _ = jwt_auth::JwtAuth::new(Rc::new(config));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
