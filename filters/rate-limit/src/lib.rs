//! rate-limit: exact rate limiting shared by all Envoy workers, with memory
//! bounded whatever clients send (see README.md).
//!
//! The pure logic lives in the modules below and knows nothing of
//! proxy-wasm; [`glue`] is the thin proxy-wasm shell, compiled only for
//! Envoy. The `chain` module calls [`RateLimiter`] and [`RateLimit`]
//! directly.

pub mod config;
pub mod filter;
pub mod gcra;
#[cfg(all(target_os = "wasi", feature = "glue"))]
pub mod glue;
pub mod key;
pub mod response;
#[cfg(feature = "schema")]
pub mod schema;
pub mod slots;
pub mod status;

pub use config::Config;
pub use filter::{RateLimit, RateLimiter};
pub use status::Reason;

/// Name used in logs and as the stats prefix.
pub const FILTER_NAME: &str = "rate_limit";

#[cfg(all(target_os = "wasi", feature = "plugin"))]
proxy_wasm::main! {{
    glue::register();
}}
