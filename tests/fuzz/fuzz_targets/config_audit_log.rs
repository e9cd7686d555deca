//! audit-log config parsing: never panics; a config that parses builds a
//! per-worker audit log.
#![no_main]

use filter_common::testing::FakeMetrics;
use libfuzzer_sys::fuzz_target;
use std::rc::Rc;

fuzz_target!(|data: &[u8]| {
    match audit_log::Config::parse(data) {
        Ok(config) => {
            let mut metrics = FakeMetrics::default();
            let log = audit_log::AuditLog::new(Rc::new(config), "fuzz/0", &mut metrics)
                .expect("FakeMetrics defines every stat");
            let _ = log.tick_period_ms();
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
