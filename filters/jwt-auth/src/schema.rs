//! The JSON Schema of the plugin configuration (`schema` feature, host
//! tools only): `cargo xtask schemas` writes it to `schemas/`.
//!
//! Generated from [`ConfigJson`], the document as written, so the doc
//! comments are the descriptions. Rules between fields (HMAC needs `oct`
//! keys, providers named by rules exist, ...) are the parser's alone.

use crate::config::ConfigJson;
use crate::duration::Millis;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;

/// The proto-JSON duration [`crate::duration::parse`] accepts.
impl JsonSchema for Millis {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A protobuf JSON duration: seconds with up to nine decimals and an `s`, e.g. `\"600s\"` or `\"0.5s\"` (at most ten years).",
            "type": "string",
            "pattern": "^[0-9]{1,9}(\\.[0-9]{0,9})?s$"
        })
    }
}

/// The schema of jwt-auth's plugin configuration.
pub fn schema() -> Schema {
    let mut schema = schemars::schema_for!(ConfigJson);
    schema.insert("title".into(), "jwt-auth plugin configuration".into());
    schema
}
