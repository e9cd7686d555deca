//! rate-limit config parsing: never panics; a config that parses compiles
//! its rules.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match rate_limit::Config::parse(data) {
        Ok(config) => {
            assert!(config.slots <= rate_limit::config::MAX_SLOTS);
            let _ = config.compile();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
