//! The three filters in one module and one HTTP context: a request crosses
//! the wasm boundary once instead of three times.

pub mod config;
#[cfg(all(target_os = "wasi", feature = "glue"))]
pub mod glue;
pub mod internal_error;
#[cfg(feature = "schema")]
pub mod schema;

pub use config::Config;

pub const FILTER_NAME: &str = "chain";

#[cfg(all(target_os = "wasi", feature = "plugin"))]
proxy_wasm::main! {{
    glue::register();
}}
