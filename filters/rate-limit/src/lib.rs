//! rate-limit: exact rate limiting shared by all Envoy workers, with memory
//! bounded whatever clients send (see README.md).
//!
//! A request goes one way: [`view`] reads what the rules look at,
//! [`decide`] answers with a value (which rules applied, what their buckets
//! say), [`apply`] counts it, replies and records it for audit-log. The
//! pure logic knows nothing of proxy-wasm; [`glue`] is the thin proxy-wasm
//! shell, compiled only for Envoy. The `chain` module calls
//! [`RateLimiter`] and [`RateLimit`] directly.

pub mod apply;
pub mod config;
pub mod decide;
pub mod filter;
pub mod gcra;
#[cfg(all(target_os = "wasi", feature = "glue"))]
pub mod glue;
pub mod key;
pub mod limiter;
pub mod response;
#[cfg(feature = "schema")]
pub mod schema;
pub mod slots;
pub mod stats;
pub mod status;
pub mod view;

pub use config::Config;
pub use filter::RateLimit;
pub use limiter::RateLimiter;
pub use status::Reason;

/// Name used in logs and as the stats prefix.
pub const FILTER_NAME: &str = "rate_limit";

#[cfg(all(target_os = "wasi", feature = "plugin"))]
proxy_wasm::main! {{
    glue::register();
}}
