//! jwt-auth: JWT validation and claim-based authorization.
//!
//! The pure logic lives in the modules below and knows nothing of
//! proxy-wasm; [`glue`] is the thin proxy-wasm shell, compiled only for
//! Envoy. A request flows: [`extractor`] finds tokens, [`jws`] parses them,
//! [`key_set`] and [`verifier`] check signatures ([`host_crypto`] through
//! Envoy's BoringSSL when it can), [`claims`] checks time, issuer and
//! audience, [`requirements`] combines providers as a rule asks,
//! [`authorization`] checks claim conditions, and [`response`] words the
//! rejection. [`filter`] ties them together; [`key_store`] keeps and
//! refreshes the keys.

pub mod algorithm;
pub mod authorization;
pub mod claims;
pub mod config;
pub mod duration;
pub mod extractor;
pub mod filter;
#[cfg(all(target_os = "wasi", feature = "glue"))]
pub mod glue;
pub mod host_crypto;
pub mod jws;
pub mod key_set;
pub mod key_store;
pub mod native;
pub mod requirements;
pub mod response;
#[cfg(feature = "schema")]
pub mod schema;
pub mod status;
pub mod token_cache;
pub mod verifier;

#[cfg(test)]
pub(crate) mod testkit;

pub use config::Config;
pub use filter::{Check, JwtAuth, Mode};
pub use status::Reason;
pub use verifier::{PureRust, SignatureBackend};

/// Name used in logs and as the stats prefix.
pub const FILTER_NAME: &str = "jwt_auth";

#[cfg(all(target_os = "wasi", feature = "plugin"))]
proxy_wasm::main! {{
    glue::register();
}}
