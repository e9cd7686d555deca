//! audit-log: one tamper-evident audit event per request.
//!
//! The pure logic lives in the modules below and knows nothing of
//! proxy-wasm. A request's audit is four steps: [`capture`] (host reads
//! into plain values), [`build`] (the [`event`]), [`seal`] (the
//! [`hash_chain`], over the [`canonical`] form) and enqueue ([`queue`],
//! records in a sink's [`mod@format`]); [`filter`] composes them into a
//! per-worker [`AuditLog`], with [`config`], [`redact`], [`sampling`],
//! [`stats`] and [`time`] beside them and [`chain_verify`] for readers of
//! the log. `glue` is the thin proxy-wasm shell and `plugin` the
//! standalone entry point, compiled only for Envoy.

pub mod build;
pub mod canonical;
pub mod capture;
pub mod chain_verify;
pub mod config;
pub mod event;
pub mod filter;
pub mod format;
#[cfg(all(target_os = "wasi", feature = "glue"))]
pub mod glue;
pub mod hash_chain;
#[cfg(all(target_os = "wasi", feature = "plugin"))]
pub mod plugin;
pub mod queue;
pub mod redact;
pub mod sampling;
#[cfg(feature = "schema")]
pub mod schema;
pub mod seal;
pub mod stats;
pub mod summed_gauges;
pub mod time;

pub use capture::fill_from_filter_state;
pub use config::Config;
pub use filter::{AuditLog, RequestAudit, AUDIT_KEY};
pub use queue::Dispatch;
pub use stats::AuditStats;

/// Name used in logs and as the stats prefix.
pub const FILTER_NAME: &str = "audit_log";

#[cfg(all(target_os = "wasi", feature = "plugin"))]
proxy_wasm::main! {{
    plugin::register();
}}

/// A decision for unit tests from its JSON form (the filter-state wire
/// format), which does not change with how its fields are typed.
#[cfg(test)]
pub(crate) fn test_decision<T: serde::de::DeserializeOwned>(json: serde_json::Value) -> T {
    serde_json::from_value(json).unwrap()
}
