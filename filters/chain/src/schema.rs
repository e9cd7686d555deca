//! The JSON Schema of the chain's configuration (`schema` feature, host
//! tools only): one optional section per filter, each with that filter's
//! own schema, as [`crate::Config::parse`] hands each section to its parser.

use schemars::{JsonSchema, Schema};

/// One JSON document with a section per filter; any section may be left
/// out (or `null`).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ChainConfig {
    /// audit-log's configuration.
    #[serde(default)]
    audit_log: Option<audit_log::Config>,
    /// jwt-auth's configuration.
    #[serde(default)]
    jwt_auth: Option<jwt_auth::config::ConfigJson>,
    /// rate-limit's configuration.
    #[serde(default)]
    rate_limit: Option<rate_limit::Config>,
}

/// The schema of the chain's plugin configuration.
pub fn schema() -> Schema {
    let mut schema = schemars::schema_for!(ChainConfig);
    schema.insert("title".into(), "chain plugin configuration".into());
    schema
}
