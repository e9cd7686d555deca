//! Config errors that name the JSON field path, so an operator reading
//! Envoy's log knows exactly which line of their config to fix.

use serde::de::DeserializeOwned;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path to the offending field, e.g. `rules[0].limit.unit`.
    /// Empty for the document root.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "(root): {}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Parses a plugin configuration, reporting the failing field's path.
///
/// serde reports a missing field at its parent; we move it onto the field
/// itself (`a.b.cluster: missing field`), which is where the operator looks.
pub fn parse_config<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ConfigError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    match parsed {
        Ok(value) => {
            de.end().map_err(|e| ConfigError::at("", e.to_string()))?;
            Ok(value)
        }
        Err(err) => {
            let path = err.path().to_string();
            let path = if path == "." { String::new() } else { path };
            Err(normalise(path, err.into_inner().to_string()))
        }
    }
}

/// Same as [`parse_config`], for a section already parsed as a JSON value
/// (the `chain` module hands each filter its own section).
pub fn parse_value<T: DeserializeOwned>(
    prefix: &str,
    value: serde_json::Value,
) -> Result<T, ConfigError> {
    let parsed: Result<T, _> = serde_path_to_error::deserialize(value);
    parsed.map_err(|err| {
        let inner = err.path().to_string();
        let path = match (prefix.is_empty(), inner == ".") {
            (_, true) => prefix.to_string(),
            (true, false) => inner,
            (false, false) if inner.starts_with('[') => format!("{prefix}{inner}"),
            (false, false) => format!("{prefix}.{inner}"),
        };
        normalise(path, err.into_inner().to_string())
    })
}

/// Prefixes the path of an error raised while validating a nested section.
pub fn nest(prefix: &str, err: ConfigError) -> ConfigError {
    let path = match (prefix.is_empty(), err.path.is_empty()) {
        (true, _) => err.path,
        (false, true) => prefix.to_string(),
        (false, false) if err.path.starts_with('[') => format!("{prefix}{}", err.path),
        (false, false) => format!("{prefix}.{}", err.path),
    };
    ConfigError {
        path,
        message: err.message,
    }
}

fn normalise(path: String, message: String) -> ConfigError {
    // serde_json appends " at line L column C"; the path is more useful.
    let message = match message.find(" at line ") {
        Some(i) => message.get(..i).unwrap_or(&message).to_string(),
        None => message,
    };
    if let Some(rest) = message.strip_prefix("missing field `") {
        if let Some(field) = rest.strip_suffix('`') {
            let path = if path.is_empty() {
                field.to_string()
            } else {
                format!("{path}.{field}")
            };
            return ConfigError::at(path, "missing field");
        }
    }
    ConfigError::at(path, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Root {
        #[allow(dead_code)]
        providers: BTreeMap<String, Provider>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Provider {
        #[allow(dead_code)]
        http_uri: HttpUri,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct HttpUri {
        #[allow(dead_code)]
        uri: String,
        #[allow(dead_code)]
        cluster: String,
    }

    #[test]
    fn missing_field_is_reported_at_the_field() {
        let err = parse_config::<Root>(br#"{"providers":{"main":{"http_uri":{"uri":"x"}}}}"#)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "providers.main.http_uri.cluster: missing field"
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let err = parse_config::<Root>(
            br#"{"providers":{"main":{"http_uri":{"uri":"x","cluster":"c","oops":1}}}}"#,
        )
        .unwrap_err();
        assert_eq!(err.path, "providers.main.http_uri.oops");
        assert!(
            err.message.starts_with("unknown field `oops`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn wrong_type_names_the_path() {
        let err =
            parse_config::<Root>(br#"{"providers":{"main":{"http_uri":{"uri":5,"cluster":"c"}}}}"#)
                .unwrap_err();
        assert_eq!(err.path, "providers.main.http_uri.uri");
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn trailing_garbage_and_bad_json_are_refused() {
        assert!(parse_config::<Root>(br#"{"providers":{}} x"#).is_err());
        assert!(parse_config::<Root>(b"\xff").is_err());
    }

    #[test]
    fn nested_values_keep_their_prefix() {
        let v = serde_json::json!({"providers":{"a":{"http_uri":{"uri":"x"}}}});
        let err = parse_value::<Root>("jwt_auth", v).unwrap_err();
        assert_eq!(err.path, "jwt_auth.providers.a.http_uri.cluster");
        let err = nest("rate_limit", ConfigError::at("rules[0].limit", "bad"));
        assert_eq!(err.to_string(), "rate_limit.rules[0].limit: bad");
    }
}
