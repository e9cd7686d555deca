//! `cargo xtask schemas`: writes `schemas/<filter>.schema.json`, the JSON
//! Schema of each filter's configuration, generated (schemars) from the
//! config types the parsers deserialize, doc comments as descriptions. A
//! test fails while a checked-in schema differs from what this writes.

use crate::check_config::Filter;
use anyhow::{Context, Result};
use std::path::PathBuf;

/// The schema of `filter`'s plugin configuration.
pub fn schema(filter: Filter) -> serde_json::Value {
    let schema = match filter {
        Filter::Chain => chain::schema::schema(),
        Filter::JwtAuth => jwt_auth::schema::schema(),
        Filter::RateLimit => rate_limit::schema::schema(),
        Filter::AuditLog => audit_log::schema::schema(),
    };
    schema.to_value()
}

/// The file's text: pretty JSON and a final newline.
pub fn rendered(filter: Filter) -> Result<String> {
    Ok(serde_json::to_string_pretty(&schema(filter))? + "\n")
}

/// `schemas/jwt-auth.schema.json`.
pub fn path(filter: Filter) -> PathBuf {
    crate::tools::root()
        .join("schemas")
        .join(format!("{}.schema.json", filter.module()))
}

pub fn write() -> Result<()> {
    for filter in Filter::ALL {
        let path = path(filter);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, rendered(filter)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_schemas_are_current() {
        let mut stale = Vec::new();
        for filter in Filter::ALL {
            let path = path(filter);
            let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
            if on_disk != rendered(filter).unwrap() {
                stale.push(path.display().to_string());
            }
        }
        assert!(
            stale.is_empty(),
            "stale or missing: {stale:?}; run `cargo xtask schemas` and commit schemas/"
        );
    }

    #[test]
    fn serde_attributes_are_reflected() {
        let rl = schema(Filter::RateLimit);
        // deny_unknown_fields
        assert_eq!(rl["additionalProperties"], false);
        // rename = "match", default = ...: not required
        let rule = &rl["$defs"]["Rule"];
        assert!(rule["properties"]["match"].is_object(), "{rule}");
        assert_eq!(rule["required"], serde_json::json!(["name", "limit"]));
        // rename_all = "snake_case" on an enum
        assert_eq!(
            rl["$defs"]["Unit"]["enum"],
            serde_json::json!(["second", "minute", "hour", "day"])
        );
        // doc comments
        assert!(rule["properties"]["shadow"]["description"]
            .as_str()
            .unwrap()
            .contains("never rejects"));
        // the hand-written duration
        let jwt = schema(Filter::JwtAuth);
        let duration = &jwt["$defs"]["Duration"]["anyOf"];
        assert_eq!(duration[0]["type"], "string");
        assert_eq!(duration[1]["type"], "object");
        // serde(skip) leaves no trace
        let audit = schema(Filter::AuditLog);
        assert!(audit["properties"].get("redactor").is_none());
        // every section of the chain, each with its filter's schema
        let chain = schema(Filter::Chain);
        assert_eq!(chain["additionalProperties"], false);
        for section in ["jwt_auth", "rate_limit", "audit_log"] {
            assert!(chain["properties"][section].is_object(), "{section}");
        }
    }
}
