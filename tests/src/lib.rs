//! Real parts for end-to-end tests and the demo: an Envoy process, an echo
//! upstream, a JWKS server whose answers can change mid-test, a collector,
//! a reader for Envoy's stats, an OCI registry, and the OCI image builder
//! `cargo xtask oci` shares with the tests.

pub mod attack;
pub mod demo_issuer;
pub mod envoy;
pub mod jwt_tokens;
pub mod oci;
pub mod paths;
pub mod registry;
pub mod servers;
pub mod stats;
pub mod tokens;

pub use envoy::{Envoy, EnvoyOptions};
pub use servers::{Collector, EchoUpstream, JwksServer};
