//! audit-log config parsing: never panics; a config that parses builds a
//! per-worker audit log.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::rc::Rc;

fuzz_target!(|data: &[u8]| {
    match audit_log::Config::parse(data) {
        Ok(config) => {
            let log = audit_log::AuditLog::new(Rc::new(config), "fuzz/0");
            let _ = log.tick_period_ms();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
