//! What the three filters share. Nothing here knows about proxy-wasm except
//! [`proxy`], which only exists when compiling for Envoy (`wasm32-wasip1`).
//!
//! Tests in the filter crates run both on the host and under Node
//! (`wasm32-unknown-unknown`, wasm-bindgen-test). A test module opts in with
//! `#[cfg(target_arch = "wasm32")] use wasm_bindgen_test::wasm_bindgen_test as test;`.

#[cfg(target_os = "wasi")]
pub mod abi;
pub mod config_error;
pub mod context;
pub mod header_snapshot;
pub mod host;
pub mod identity;
pub mod map_codec;
pub mod matcher;
#[cfg(target_os = "wasi")]
pub mod proxy;
pub mod request;
pub mod section_timing;
pub mod testing;

pub use config_error::{nest, parse_config, parse_value, ConfigError};
pub use context::{Flow, RequestContext};
pub use header_snapshot::HeaderSnapshot;
pub use host::{code_details, CasOutcome, HostError, HttpHost, Level, Metrics, SharedData};
pub use matcher::RequestMatch;
pub use request::RequestInfo;
