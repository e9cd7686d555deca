//! One JSON document with a section per filter; any section may be left out.

use filter_common::{nest, parse_config, ConfigError};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Default)]
pub struct Config {
    pub audit_log: Option<audit_log::Config>,
    pub jwt_auth: Option<jwt_auth::Config>,
    pub rate_limit: Option<rate_limit::Config>,
}

/// The raw sections, so each filter parses its own with its own rules.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Sections {
    #[serde(default)]
    audit_log: Option<Value>,
    #[serde(default)]
    jwt_auth: Option<Value>,
    #[serde(default)]
    rate_limit: Option<Value>,
}

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let sections: Sections = parse_config(bytes)?;
        Ok(Config {
            audit_log: section("audit_log", sections.audit_log, audit_log::Config::parse)?,
            jwt_auth: section("jwt_auth", sections.jwt_auth, jwt_auth::Config::parse)?,
            rate_limit: section("rate_limit", sections.rate_limit, rate_limit::Config::parse)?,
        })
    }
}

fn section<T>(
    name: &str,
    value: Option<Value>,
    parse: impl FnOnce(&[u8]) -> Result<T, ConfigError>,
) -> Result<Option<T>, ConfigError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let bytes = serde_json::to_vec(&v).map_err(|e| ConfigError::at(name, e.to_string()))?;
            parse(&bytes).map(Some).map_err(|e| nest(name, e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn sections_are_optional() {
        let c = Config::parse(b"{}").unwrap();
        assert!(c.jwt_auth.is_none() && c.rate_limit.is_none() && c.audit_log.is_none());
    }

    #[test]
    fn unknown_section_is_refused() {
        let e = Config::parse(br#"{"jwt":{}}"#).unwrap_err();
        assert_eq!(e.path, "jwt");
    }

    #[test]
    fn errors_inside_a_section_carry_its_name() {
        let e = Config::parse(br#"{"rate_limit":{"nope":1}}"#).unwrap_err();
        assert_eq!(e.path, "rate_limit.nope");
    }
}
