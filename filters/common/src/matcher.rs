//! Which requests a rule applies to. The JSON shape follows Envoy's
//! `RouteMatch` (`prefix`, `path`, `headers`), plus `methods` and `host`.
//! Paths are compared without their query string; Envoy normalises them
//! first when the listener sets `normalize_path` and `merge_slashes` (every
//! config in `envoy/` does).

use crate::config_error::ConfigError;
use crate::host::HttpHost;
use crate::request::RequestInfo;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RequestMatch {
    /// The path starts with this. `"/"` matches everything.
    #[serde(default)]
    pub prefix: Option<String>,
    /// The path is exactly this.
    #[serde(default)]
    pub path: Option<String>,
    /// The `:authority`, compared case-insensitively. A leading `*.`
    /// matches any subdomain.
    #[serde(default)]
    pub host: Option<String>,
    /// Any of these methods (upper case). Empty means any method.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Every one of these header conditions holds.
    #[serde(default)]
    pub headers: Vec<HeaderMatch>,
}

/// Envoy's `HeaderMatcher`, for the forms operators use.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    #[serde(default)]
    pub string_match: Option<StringMatch>,
    #[serde(default)]
    pub exact_match: Option<String>,
    #[serde(default)]
    pub prefix_match: Option<String>,
    #[serde(default)]
    pub suffix_match: Option<String>,
    #[serde(default)]
    pub present_match: Option<bool>,
    #[serde(default)]
    pub invert_match: bool,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub contains: Option<String>,
    #[serde(default)]
    pub ignore_case: bool,
}

impl RequestMatch {
    /// Checks what serde cannot: exclusive fields. Paths in errors are
    /// relative to this match.
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        if self.prefix.is_some() && self.path.is_some() {
            return Err(ConfigError::at("path", "`prefix` and `path` are exclusive"));
        }
        for m in &mut self.methods {
            if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(ConfigError::at(
                    "methods",
                    format!("`{m}` is not an HTTP method"),
                ));
            }
            *m = m.to_ascii_uppercase();
        }
        if let Some(h) = &mut self.host {
            *h = h.to_ascii_lowercase();
        }
        for (i, h) in self.headers.iter_mut().enumerate() {
            h.name = h.name.to_ascii_lowercase();
            let forms = [
                h.string_match.is_some(),
                h.exact_match.is_some(),
                h.prefix_match.is_some(),
                h.suffix_match.is_some(),
                h.present_match.is_some(),
            ];
            if forms.iter().filter(|f| **f).count() > 1 {
                return Err(ConfigError::at(
                    format!("headers[{i}]"),
                    "give only one of string_match, exact_match, prefix_match, suffix_match, present_match",
                ));
            }
            if let Some(sm) = &h.string_match {
                let n = [&sm.exact, &sm.prefix, &sm.suffix, &sm.contains]
                    .iter()
                    .filter(|f| f.is_some())
                    .count();
                if n != 1 {
                    return Err(ConfigError::at(
                        format!("headers[{i}].string_match"),
                        "give exactly one of exact, prefix, suffix, contains",
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn matches(&self, req: &RequestInfo, host: &dyn HttpHost) -> bool {
        if let Some(p) = &self.path {
            if req.path != *p {
                return false;
            }
        }
        if let Some(p) = &self.prefix {
            if !req.path.starts_with(p.as_str()) {
                return false;
            }
        }
        if !self.methods.is_empty() && !self.methods.contains(&req.method) {
            return false;
        }
        if let Some(h) = &self.host {
            if !host_matches(h, &req.host) {
                return false;
            }
        }
        self.headers
            .iter()
            .all(|h| h.matches(host.request_header(&h.name).as_deref()))
    }
}

fn host_matches(pattern: &str, authority: &str) -> bool {
    let name = strip_port(authority);
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .strip_suffix(suffix)
            .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        None => name == pattern || authority == pattern,
    }
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .split(']')
            .next()
            .map_or(authority, |h| h.get(1..).unwrap_or(h));
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

impl HeaderMatch {
    /// Envoy's semantics: `invert_match` flips the result, including absence.
    pub fn matches(&self, value: Option<&[u8]>) -> bool {
        let raw = match (self.present_match, value) {
            (Some(want), v) => v.is_some() == want,
            (None, None) => false,
            (None, Some(v)) => self.matches_value(v),
        };
        raw != self.invert_match
    }

    fn matches_value(&self, v: &[u8]) -> bool {
        if let Some(e) = &self.exact_match {
            return v == e.as_bytes();
        }
        if let Some(p) = &self.prefix_match {
            return v.starts_with(p.as_bytes());
        }
        if let Some(s) = &self.suffix_match {
            return v.ends_with(s.as_bytes());
        }
        match &self.string_match {
            Some(sm) => sm.matches(v),
            // `{ "name": "x" }` alone means "present", as in Envoy.
            None => true,
        }
    }
}

impl StringMatch {
    pub fn matches(&self, v: &[u8]) -> bool {
        let (v, fold) = if self.ignore_case {
            (v.to_ascii_lowercase(), true)
        } else {
            (v.to_vec(), false)
        };
        let pat = |s: &String| {
            if fold {
                s.to_ascii_lowercase().into_bytes()
            } else {
                s.as_bytes().to_vec()
            }
        };
        if let Some(e) = &self.exact {
            return v == pat(e);
        }
        if let Some(p) = &self.prefix {
            return v.starts_with(&pat(p));
        }
        if let Some(s) = &self.suffix {
            return v.ends_with(&pat(s));
        }
        if let Some(c) = &self.contains {
            let c = pat(c);
            return c.is_empty() || v.windows(c.len()).any(|w| w == c.as_slice());
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeHost;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn m(json: &str) -> RequestMatch {
        let mut m: RequestMatch = crate::parse_config(json.as_bytes()).unwrap();
        m.validate().unwrap();
        m
    }

    fn req(method: &str, path: &str, host: &str) -> (RequestInfo, FakeHost) {
        let h = FakeHost::request(method, path, host, &[("x-env", "prod")]);
        (RequestInfo::from_host(&h), h)
    }

    #[test]
    fn prefix_path_method_host() {
        let (r, h) = req("post", "/api/v1?x=1", "API.example.com:8443");
        assert!(m(r#"{"prefix":"/api"}"#).matches(&r, &h));
        assert!(!m(r#"{"path":"/api"}"#).matches(&r, &h));
        assert!(m(r#"{"path":"/api/v1"}"#).matches(&r, &h));
        // methods compare as sent by the client after upper-casing config only
        assert!(!m(r#"{"methods":["POST"]}"#).matches(&r, &h));
        let (r, h) = req("POST", "/api/v1", "API.example.com:8443");
        assert!(m(r#"{"methods":["post","GET"]}"#).matches(&r, &h));
        assert!(m(r#"{"host":"*.example.com"}"#).matches(&r, &h));
        assert!(m(r#"{"host":"api.example.com"}"#).matches(&r, &h));
        assert!(!m(r#"{"host":"*.api.example.com"}"#).matches(&r, &h));
        assert!(m(r#"{}"#).matches(&r, &h));
    }

    #[test]
    fn headers() {
        let (r, h) = req("GET", "/", "a");
        assert!(m(r#"{"headers":[{"name":"X-Env","exact_match":"prod"}]}"#).matches(&r, &h));
        assert!(m(
            r#"{"headers":[{"name":"x-env","string_match":{"prefix":"PR","ignore_case":true}}]}"#
        )
        .matches(&r, &h));
        assert!(
            !m(r#"{"headers":[{"name":"x-env","string_match":{"prefix":"PR"}}]}"#).matches(&r, &h)
        );
        assert!(m(r#"{"headers":[{"name":"x-missing","present_match":false}]}"#).matches(&r, &h));
        assert!(m(r#"{"headers":[{"name":"x-missing","invert_match":true}]}"#).matches(&r, &h));
        assert!(!m(r#"{"headers":[{"name":"x-env","invert_match":true}]}"#).matches(&r, &h));
        assert!(
            m(r#"{"headers":[{"name":"x-env","string_match":{"contains":"ro"}}]}"#).matches(&r, &h)
        );
    }

    #[test]
    fn invalid_matches_are_refused_with_a_path() {
        let mut bad: RequestMatch = crate::parse_config(br#"{"prefix":"/a","path":"/b"}"#).unwrap();
        assert_eq!(bad.validate().unwrap_err().path, "path");
        let mut bad: RequestMatch =
            crate::parse_config(br#"{"headers":[{"name":"a","string_match":{}}]}"#).unwrap();
        assert_eq!(bad.validate().unwrap_err().path, "headers[0].string_match");
        assert!(crate::parse_config::<RequestMatch>(br#"{"regex":"x"}"#).is_err());
    }
}
