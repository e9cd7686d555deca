//! The JSON Schema of the plugin configuration (`schema` feature, host
//! tools only): `cargo xtask schemas` writes it to `schemas/`.
//!
//! Generated from [`ConfigJson`], the document as written, so the doc
//! comments are the descriptions. Rules between fields (HMAC needs `oct`
//! keys, providers named by rules exist, ...) are the parser's alone.

use crate::config::ConfigJson;
use crate::duration::Millis;
use crate::native::Refused;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;

/// The proto-JSON duration [`crate::duration::parse`] accepts.
impl JsonSchema for Millis {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A protobuf JSON duration: seconds with up to nine decimals and an `s`, e.g. `\"600s\"` or `\"0.5s\"`, or `{\"seconds\": 600}` (at most ten years).",
            "anyOf": [
                { "type": "string", "pattern": "^[0-9]{1,9}(\\.[0-9]{0,9})?s$" },
                {
                    "type": "object",
                    "properties": {
                        "seconds": { "type": ["integer", "string"] },
                        "nanos": { "type": "integer", "minimum": 0 }
                    },
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// A native `jwt_authn` field we refuse (`native.rs`): no value is valid.
impl JsonSchema for Refused {
    fn schema_name() -> Cow<'static, str> {
        "Refused".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        Schema::from(false)
    }
}

/// A list of strings that may also be written as one string (`audiences: api`).
pub fn one_or_many(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "anyOf": [
            { "type": "string" },
            { "type": "array", "items": { "type": "string" } }
        ]
    })
}

/// The schema of jwt-auth's plugin configuration.
pub fn schema() -> Schema {
    let mut schema = schemars::schema_for!(ConfigJson);
    schema.insert("title".into(), "jwt-auth plugin configuration".into());
    schema
}
