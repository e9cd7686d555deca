//! jwt-auth: the pure logic lives in the modules below and knows nothing of
//! proxy-wasm; [`glue`] is the thin proxy-wasm shell, compiled only for Envoy.

pub mod config;
#[cfg(target_os = "wasi")]
pub mod glue;

pub use config::Config;

/// Name used in logs and as the stats prefix.
pub const FILTER_NAME: &str = "jwt_auth";

#[cfg(all(target_os = "wasi", feature = "plugin"))]
proxy_wasm::main! {{
    glue::register();
}}
