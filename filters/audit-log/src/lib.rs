//! audit-log: one tamper-evident audit event per request.
//!
//! The pure logic lives in the modules below and knows nothing of
//! proxy-wasm: [`config`], [`event`] (the event and what it is built
//! from), [`redact`], [`sampling`], [`hash_chain`] and [`chain_verify`],
//! [`queue`] (capped delivery queues), [`format`] (NDJSON, `_bulk`), and
//! [`filter`] tying them into a per-worker [`AuditLog`]. [`glue`] is the
//! thin proxy-wasm shell, compiled only for Envoy.

pub mod chain_verify;
pub mod config;
pub mod event;
pub mod filter;
pub mod format;
#[cfg(all(target_os = "wasi", feature = "glue"))]
pub mod glue;
pub mod hash_chain;
pub mod queue;
pub mod redact;
pub mod sampling;
#[cfg(feature = "schema")]
pub mod schema;

pub use config::Config;
pub use filter::{fill_from_filter_state, AuditLog, RequestAudit, AUDIT_KEY};
pub use queue::Dispatch;

/// Name used in logs and as the stats prefix.
pub const FILTER_NAME: &str = "audit_log";

#[cfg(all(target_os = "wasi", feature = "plugin"))]
proxy_wasm::main! {{
    glue::register();
}}
