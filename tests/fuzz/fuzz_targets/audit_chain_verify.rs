//! `cargo xtask audit-verify`'s parser: NDJSON from wherever the events
//! were stored, so anything at all.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let report = audit_log::chain_verify::verify(&text);
    let _ = report.is_ok();
    let _ = format!("{report:?}");
});
