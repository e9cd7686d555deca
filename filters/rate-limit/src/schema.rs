//! The JSON Schema of the plugin configuration (`schema` feature, host
//! tools only): `cargo xtask schemas` writes it to `schemas/`. Unique rule
//! names are the parser's alone.

use crate::config::Config;
use schemars::Schema;

/// The schema of rate-limit's plugin configuration.
pub fn schema() -> Schema {
    let mut schema = schemars::schema_for!(Config);
    schema.insert("title".into(), "rate-limit plugin configuration".into());
    schema
}
