//! The plugin configuration (JSON, snake_case, unknown fields refused).
//!
//! Every field is documented here; README.md shows a complete example.

use crate::redact::{self, Redactor};
use filter_common::{nest, parse_config, ConfigError, RequestMatch};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", schemars(rename = "AuditLogConfig"))]
pub struct Config {
    /// Where events go; several sinks may be set at once. Default: the
    /// `log` sink alone.
    #[serde(default)]
    pub sinks: Sinks,
    /// Additions to the built-in redaction lists. Built-ins cannot be
    /// removed.
    #[serde(default)]
    pub redact: RedactConfig,
    /// Query parameters kept in `url.query` (the rest of the query string
    /// is dropped). A redacted parameter here is a configuration error.
    #[serde(default)]
    pub query_params: Vec<String>,
    /// Request headers copied into `labels`. A redacted header here is a
    /// configuration error.
    #[serde(default)]
    pub headers: Vec<HeaderField>,
    /// Claims of the verified token copied into `user.claims` (from those
    /// jwt-auth forwards). Empty: no claims.
    #[serde(default)]
    pub principal_claims: Vec<String>,
    /// Which allowed requests are logged. Denials and errors always are.
    #[serde(default)]
    pub sampling: Sampling,
    /// Longest value, in bytes, kept for any one string field (path, user
    /// agent, header, claim); longer values are cut and marked. Keeps an
    /// event, and so the queue, bounded whatever clients send.
    #[serde(default = "default_max_field_bytes")]
    #[cfg_attr(feature = "schema", schemars(range(min = 16)))]
    pub max_field_bytes: usize,
    /// Built from `redact` at load time.
    #[serde(skip)]
    pub redactor: Redactor,
}

fn default_max_field_bytes() -> usize {
    1024
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Sinks {
    /// One JSON line per event in Envoy's log (`info` level), for
    /// stdout-based pipelines. `{}` enables it.
    #[serde(default)]
    pub log: Option<LogSink>,
    /// Batched delivery to Envoy clusters.
    #[serde(default)]
    pub http: Vec<HttpSink>,
    /// The event JSON as filter state `wasm.portcullis.audit`, for Envoy's
    /// own access loggers (`%FILTER_STATE(wasm.portcullis.audit:PLAIN)%`).
    /// `{}` enables it.
    #[serde(default)]
    pub access_log: Option<AccessLogSink>,
}

impl Default for Sinks {
    fn default() -> Self {
        Sinks {
            log: Some(LogSink {}),
            http: Vec::new(),
            access_log: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LogSink {}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AccessLogSink {}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// One event per line (`application/x-ndjson`).
    #[default]
    Ndjson,
    /// Elasticsearch `_bulk`: a `create` action line (with `_id`
    /// `<producer>:<seq>`, so a retried batch is not indexed twice) before
    /// each event.
    ElasticsearchBulk,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HttpSink {
    /// The Envoy cluster batches are posted to.
    pub cluster: String,
    /// `:path` of the POST, e.g. `/ingest` or `/audit/_bulk`.
    #[serde(default = "default_path")]
    pub path: String,
    /// `:authority` of the POST. Default: the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub format: Format,
    /// Index named in `_bulk` action lines (`elasticsearch_bulk` only).
    #[serde(default = "default_index")]
    pub index: String,
    /// Extra request headers, e.g. `[["x-tenant", "a"]]`.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    /// A batch is sent once it holds this many bytes...
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// ...or once its oldest event has waited this long.
    #[serde(default = "default_flush_interval_ms")]
    pub flush_interval_ms: u64,
    /// Memory cap of this sink's queue (queued and in-flight events). When
    /// full, the oldest queued events are dropped and counted.
    #[serde(default = "default_queue_max_bytes")]
    pub queue_max_bytes: usize,
    /// A delivery not answered in this time has failed and is retried.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default)]
    pub retry: Retry,
}

fn default_path() -> String {
    "/".into()
}
fn default_index() -> String {
    "audit".into()
}
fn default_batch_max_bytes() -> usize {
    64 * 1024
}
fn default_flush_interval_ms() -> u64 {
    1000
}
fn default_queue_max_bytes() -> usize {
    1024 * 1024
}
fn default_timeout_ms() -> u64 {
    5000
}

/// Exponential backoff between failed deliveries of a batch (5xx, garbage
/// without a status, timeout, refused connection).
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Wait after the first failure; doubled at each failure.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest wait between attempts. Attempts never stop: the queue cap
    /// bounds what waits.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
        }
    }
}

fn default_initial_backoff_ms() -> u64 {
    250
}
fn default_max_backoff_ms() -> u64 {
    30_000
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// Request headers never logged, in addition to the built-ins
    /// (`authorization`, `cookie`, `set-cookie`, `proxy-authorization`,
    /// `x-api-key`, ...).
    #[serde(default)]
    pub headers: Vec<String>,
    /// Query parameters never logged, in addition to the built-ins
    /// (`access_token`, `id_token`, `token`, `code`, `password`, ...).
    #[serde(default)]
    pub query_params: Vec<String>,
}

/// A request header copied into the event.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HeaderField {
    /// Header name (case-insensitive).
    pub name: String,
    /// Key under `labels`. Default: the header name, lower case, with `-`
    /// replaced by `_`.
    #[serde(default)]
    pub label: Option<String>,
}

impl HeaderField {
    pub fn label(&self) -> String {
        self.label
            .clone()
            .unwrap_or_else(|| self.name.to_ascii_lowercase().replace('-', "_"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Sampling {
    /// Share of allowed requests logged, from 0.0 to 1.0. The choice is a
    /// hash of the request id, so every proxy on a request's path agrees.
    #[serde(default = "default_rate")]
    #[cfg_attr(feature = "schema", schemars(range(min = 0.0, max = 1.0)))]
    pub allowed_rate: f64,
    /// If set, only allowed requests matching one of these are logged.
    #[serde(default)]
    pub include: Vec<RequestMatch>,
    /// Allowed requests matching one of these are not logged.
    #[serde(default)]
    pub exclude: Vec<RequestMatch>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            allowed_rate: 1.0,
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

fn default_rate() -> f64 {
    1.0
}

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let mut config: Config = parse_config(bytes)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        for (i, h) in self.redact.headers.iter().enumerate() {
            if !redact::is_token(h) {
                return Err(ConfigError::at(
                    format!("redact.headers[{i}]"),
                    "not a valid header name",
                ));
            }
        }
        self.redactor = Redactor::new(&self.redact.headers, &self.redact.query_params);
        for (i, h) in self.headers.iter().enumerate() {
            if !redact::is_token(&h.name) {
                return Err(ConfigError::at(
                    format!("headers[{i}].name"),
                    "not a valid header name",
                ));
            }
            if self.redactor.is_sensitive_header(&h.name) {
                return Err(ConfigError::at(
                    format!("headers[{i}].name"),
                    format!("`{}` is redacted and can never be logged", h.name),
                ));
            }
            if h.label().is_empty() {
                return Err(ConfigError::at(format!("headers[{i}].label"), "empty"));
            }
        }
        for (i, p) in self.query_params.iter().enumerate() {
            if self.redactor.is_sensitive_param(p) {
                return Err(ConfigError::at(
                    format!("query_params[{i}]"),
                    format!("`{p}` is redacted and can never be logged"),
                ));
            }
        }
        let rate = self.sampling.allowed_rate;
        if !(0.0..=1.0).contains(&rate) {
            return Err(ConfigError::at(
                "sampling.allowed_rate",
                "must be between 0.0 and 1.0",
            ));
        }
        for (i, m) in self.sampling.include.iter_mut().enumerate() {
            m.validate()
                .map_err(|e| nest(&format!("sampling.include[{i}]"), e))?;
        }
        for (i, m) in self.sampling.exclude.iter_mut().enumerate() {
            m.validate()
                .map_err(|e| nest(&format!("sampling.exclude[{i}]"), e))?;
        }
        if self.max_field_bytes < 16 {
            return Err(ConfigError::at("max_field_bytes", "must be at least 16"));
        }
        for (i, s) in self.sinks.http.iter().enumerate() {
            s.validate()
                .map_err(|e| nest(&format!("sinks.http[{i}]"), e))?;
        }
        Ok(())
    }
}

impl HttpSink {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.cluster.is_empty() {
            return Err(ConfigError::at("cluster", "empty"));
        }
        if !self.path.starts_with('/') {
            return Err(ConfigError::at("path", "must start with `/`"));
        }
        if self.batch_max_bytes == 0 {
            return Err(ConfigError::at("batch_max_bytes", "must be positive"));
        }
        if self.queue_max_bytes < self.batch_max_bytes {
            return Err(ConfigError::at(
                "queue_max_bytes",
                "must be at least batch_max_bytes",
            ));
        }
        if self.flush_interval_ms == 0 {
            return Err(ConfigError::at("flush_interval_ms", "must be positive"));
        }
        if self.timeout_ms == 0 || self.timeout_ms > u64::from(u32::MAX) {
            return Err(ConfigError::at(
                "timeout_ms",
                "must be between 1 and 4294967295",
            ));
        }
        if self.retry.initial_backoff_ms == 0 {
            return Err(ConfigError::at(
                "retry.initial_backoff_ms",
                "must be positive",
            ));
        }
        if self.retry.max_backoff_ms < self.retry.initial_backoff_ms {
            return Err(ConfigError::at(
                "retry.max_backoff_ms",
                "must be at least initial_backoff_ms",
            ));
        }
        for (i, (name, _)) in self.headers.iter().enumerate() {
            if !redact::is_token(name) || name.starts_with(':') {
                return Err(ConfigError::at(
                    format!("headers[{i}]"),
                    "not a valid header name",
                ));
            }
        }
        Ok(())
    }

    pub fn authority(&self) -> &str {
        self.authority.as_deref().unwrap_or(&self.cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn err(json: &str) -> ConfigError {
        Config::parse(json.as_bytes()).unwrap_err()
    }

    #[test]
    fn empty_config_logs_to_envoy_log() {
        let c = Config::parse(b"{}").unwrap();
        assert!(c.sinks.log.is_some());
        assert!(c.sinks.http.is_empty());
        assert_eq!(c.sampling.allowed_rate, 1.0);
    }

    #[test]
    fn full_config_parses() {
        let c = Config::parse(
            br#"{
              "sinks": {"log": {}, "access_log": {}, "http": [
                {"cluster": "collector", "path": "/ingest", "format": "elasticsearch_bulk",
                 "headers": [["x-tenant", "a"]], "batch_max_bytes": 1000,
                 "queue_max_bytes": 5000, "retry": {"initial_backoff_ms": 10, "max_backoff_ms": 100}}]},
              "redact": {"headers": ["x-session"], "query_params": ["sid"]},
              "query_params": ["page"],
              "headers": [{"name": "X-Tenant-Id"}, {"name": "x-b", "label": "b"}],
              "principal_claims": ["scope"],
              "sampling": {"allowed_rate": 0.5, "exclude": [{"prefix": "/health"}]}
            }"#,
        )
        .unwrap();
        assert_eq!(c.sinks.http[0].format, Format::ElasticsearchBulk);
        assert_eq!(c.sinks.http[0].authority(), "collector");
        assert_eq!(c.headers[0].label(), "x_tenant_id");
        assert!(c.redactor.is_sensitive_header("X-Session"));
        assert!(c.redactor.is_sensitive_header("authorization"));
    }

    #[test]
    fn builtins_cannot_be_logged() {
        let e = err(r#"{"headers": [{"name": "x-ok"}, {"name": "Authorization"}]}"#);
        assert_eq!(e.path, "headers[1].name");
        let e = err(r#"{"query_params": ["page", "access_token"]}"#);
        assert_eq!(e.path, "query_params[1]");
        let e = err(r#"{"redact": {"headers": ["x-s"]}, "headers": [{"name": "x-s"}]}"#);
        assert_eq!(e.path, "headers[0].name");
    }

    /// The JSON block of the `audit_log` plugin in an `envoy/` file.
    fn plugin_json(yaml: &str) -> String {
        let start = yaml.find("value: |").unwrap();
        let mut lines = yaml[start..].lines().skip(1);
        let first = lines.next().unwrap();
        let indent = first.len() - first.trim_start().len();
        std::iter::once(first)
            .chain(lines.take_while(|l| l.len() - l.trim_start().len() >= indent))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn shipped_envoy_configs_parse() {
        let c =
            Config::parse(plugin_json(include_str!("../../../envoy/audit-log.yaml")).as_bytes())
                .unwrap();
        assert_eq!(c.sinks.http[0].cluster, "collector");
        let c = Config::parse(
            plugin_json(include_str!("../../../envoy/audit-log-access-log.yaml")).as_bytes(),
        )
        .unwrap();
        assert!(c.sinks.access_log.is_some());
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(err(r#"{"bogus": 1}"#).path, "bogus");
        assert_eq!(
            err(r#"{"sampling": {"allowed_rate": 1.5}}"#).path,
            "sampling.allowed_rate"
        );
        assert_eq!(
            err(r#"{"sinks": {"http": [{"cluster": "c", "batch_max_bytes": 10, "queue_max_bytes": 5}]}}"#).path,
            "sinks.http[0].queue_max_bytes"
        );
        assert_eq!(
            err(r#"{"sinks": {"http": [{"path": "/"}]}}"#).path,
            "sinks.http[0].cluster"
        );
        assert_eq!(
            err(r#"{"sinks": {"http": [{"cluster": "c", "format": "xml"}]}}"#).path,
            "sinks.http[0].format"
        );
        assert_eq!(
            err(r#"{"sampling": {"include": [{"prefix": "/a", "path": "/b"}]}}"#).path,
            "sampling.include[0].path"
        );
        assert_eq!(
            err(r#"{"sinks": {"http": [{"cluster": "c", "retry": {"initial_backoff_ms": 0}}]}}"#)
                .path,
            "sinks.http[0].retry.initial_backoff_ms"
        );
    }
}
