//! The JSON Schema of the plugin configuration (`schema` feature, host
//! tools only): `cargo xtask schemas` writes it to `schemas/`. Rules between
//! fields (a redacted header cannot be logged, ...) are the parser's alone.

use crate::config::Config;
use schemars::Schema;

/// The schema of audit-log's plugin configuration.
pub fn schema() -> Schema {
    let mut schema = schemars::schema_for!(Config);
    schema.insert("title".into(), "audit-log plugin configuration".into());
    schema
}
