//! What the three filters share. Nothing here knows about proxy-wasm except
//! [`proxy`] and [`abi`], which only exist with the `proxy` feature when
//! compiling for Envoy (`wasm32-wasip1`): without it this crate (and every
//! filter core built on it) has no proxy-wasm dependency at all.
//!
//! Tests in the filter crates run both on the host and under Node
//! (`wasm32-unknown-unknown`, wasm-bindgen-test). A test module opts in with
//! `#[cfg(target_arch = "wasm32")] use wasm_bindgen_test::wasm_bindgen_test as test;`.

#[cfg(all(target_os = "wasi", feature = "proxy"))]
pub mod abi;
pub mod callout;
pub mod config_error;
pub mod context;
pub mod header_snapshot;
pub mod host;
pub mod identity;
pub mod map_codec;
pub mod matcher;
pub mod outcome;
#[cfg(all(target_os = "wasi", feature = "proxy"))]
pub mod proxy;
pub mod rate_limit_reason;
pub mod request;
pub mod section_timing;
pub mod stats;
/// In-memory hosts for unit tests (the `testing` feature).
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use config_error::{nest, parse_config, parse_value, ConfigError};
pub use context::{Flow, RequestContext};
pub use header_snapshot::HeaderSnapshot;
pub use host::{
    code_details, Callout, Callouts, CasOutcome, HostError, HttpHost, Level, Metrics, SharedData,
};
pub use matcher::RequestMatch;
pub use outcome::{JwtOutcome, RateLimitOutcome};
pub use rate_limit_reason::RateLimitReason;
pub use request::RequestInfo;
pub use stats::{Counter, CounterSet, Gauge, Label};
