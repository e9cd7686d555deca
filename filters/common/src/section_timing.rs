//! Time spent in named sections inside the VM, for `cargo xtask bench
//! --profile <configuration> --sections`.
//!
//! `perf` cannot see into V8's compiled wasm, so it cannot tell a slow host
//! call from slow Rust, nor which filter is slow. This can: each [`timed!`]
//! section adds its host-clock time (a host call measured at ~0 µs) to a
//! per-worker table, and every two seconds the table goes to Envoy's log at
//! `warn` as `section timing: <name>=<µs per call>/<calls> …`. Host calls
//! made inside a section count as the section's.
//!
//! Off unless the `section-timing` feature is on (only `--sections` builds
//! turn it on): then [`start`] and [`record`] are empty and inlined away.
//!
//! [`timed!`]: crate::timed

/// Runs `$body` as the named section (a string literal).
#[macro_export]
macro_rules! timed {
    ($name:literal, $body:expr) => {{
        let started = $crate::section_timing::start();
        let out = $body;
        $crate::section_timing::record($name, started);
        out
    }};
}

#[cfg(all(feature = "section-timing", feature = "proxy", target_os = "wasi"))]
mod on {
    use std::cell::RefCell;

    const REPORT_EVERY_NANOS: u64 = 2_000_000_000;

    #[derive(Default)]
    struct Table {
        /// (name, total nanoseconds, calls).
        sections: Vec<(&'static str, u64, u64)>,
        since: u64,
    }

    thread_local! {
        static TABLE: RefCell<Table> = RefCell::new(Table::default());
    }

    pub fn start() -> u64 {
        crate::proxy::now_nanos()
    }

    pub fn record(name: &'static str, started: u64) {
        let now = crate::proxy::now_nanos();
        TABLE.with(|t| {
            let Ok(mut t) = t.try_borrow_mut() else {
                return;
            };
            let spent = now.saturating_sub(started);
            match t.sections.iter_mut().find(|(n, _, _)| *n == name) {
                Some(entry) => {
                    entry.1 = entry.1.saturating_add(spent);
                    entry.2 += 1;
                }
                None => t.sections.push((name, spent, 1)),
            }
            if t.since == 0 {
                t.since = now;
            }
            if now.saturating_sub(t.since) >= REPORT_EVERY_NANOS {
                let mut line = String::from("section timing:");
                t.sections.sort_unstable_by_key(|(n, _, _)| *n);
                for (name, total, calls) in &t.sections {
                    let per_call = *total as f64 / (*calls).max(1) as f64 / 1000.0;
                    line.push_str(&format!(" {name}={per_call:.2}/{calls}"));
                }
                crate::proxy::log(crate::Level::Warn, &line);
                t.sections.clear();
                t.since = now;
            }
        });
    }
}

#[cfg(not(all(feature = "section-timing", feature = "proxy", target_os = "wasi")))]
mod on {
    #[inline(always)]
    pub fn start() -> u64 {
        0
    }

    #[inline(always)]
    pub fn record(_name: &'static str, _started: u64) {}
}

pub use on::{record, start};
