//! The chain module's config: one document with a section per filter.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = chain::Config::parse(data) {
        let _ = e.to_string();
    }
});
