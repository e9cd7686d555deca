//! The plugin configuration (JSON, snake_case, unknown fields refused).
//!
//! ```json
//! {"rules": [{"name": "per-client",
//!             "match": {"prefix": "/api", "methods": ["POST"]},
//!             "key": [{"client_ip": {}}],
//!             "limit": {"requests_per_unit": 10, "unit": "second", "burst": 5},
//!             "shadow": false}]}
//! ```
//!
//! The doc comments on the types below are the reference documentation of
//! every field.

use crate::gcra::Limit as Gcra;
use filter_common::{nest, parse_config, ConfigError, RequestMatch};
use serde::Deserialize;

/// Default number of state slots per rule (see the README for the memory
/// cost and the collision probability).
pub const DEFAULT_SLOTS: u32 = 65_536;
/// More slots than this would make the pre-created table dominate Envoy's
/// memory (about 130 bytes a slot).
pub const MAX_SLOTS: u32 = 1 << 22;
/// Longest rule name; it appears in metric names, shared data keys and headers.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", schemars(rename = "RateLimitConfig"))]
pub struct Config {
    /// The rate-limit rules. Every rule whose `match` matches a request
    /// applies to it; the request is limited when any of them says so.
    /// Example: `[{"name": "per-client", "limit": {"requests_per_unit": 10, "unit": "second"}}]`.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Number of state slots per rule, shared by all workers. Keys are
    /// hashed into slots; keys that collide share one bucket (stricter,
    /// never looser). Memory is fixed: about 130 bytes per slot, allocated
    /// at startup. Default 65536; at most 4194304. Example: `65536`.
    #[serde(default = "default_slots")]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_SLOTS)))]
    pub slots: u32,
    /// HTTP status sent when a request is over a limit. Default 429.
    /// Example: `429`.
    #[serde(default = "default_status")]
    #[cfg_attr(feature = "schema", schemars(range(min = 400, max = 599)))]
    pub status: u16,
    /// Which rate-limit headers to send besides those on a limited response.
    #[serde(default)]
    pub headers: HeadersConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rules: Vec::new(),
            slots: DEFAULT_SLOTS,
            status: default_status(),
            headers: HeadersConfig::default(),
        }
    }
}

/// Response headers. Limited responses always carry `Retry-After`,
/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HeadersConfig {
    /// Also send `RateLimit-Policy` and `RateLimit` on allowed responses,
    /// for every enforced rule that applied. Example: `true`.
    #[serde(default)]
    pub on_allowed: bool,
    /// Also send the legacy `X-RateLimit-Limit`, `X-RateLimit-Remaining`
    /// and `X-RateLimit-Reset` headers (for the tightest rule). Example: `true`.
    #[serde(default)]
    pub x_ratelimit: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Names the rule in responses, metrics (`rate_limit.<name>.allowed`)
    /// and audit events. Letters, digits, `-` and `_`; unique.
    /// Example: `"per-client"`.
    #[cfg_attr(feature = "schema", schemars(pattern(r"^[A-Za-z0-9_-]{1,64}$")))]
    pub name: String,
    /// Which requests the rule applies to: `prefix` or `path`, `host`,
    /// `methods`, `headers` (Envoy's header matchers). Default: every request.
    /// Example: `{"prefix": "/api", "methods": ["POST"]}`.
    #[serde(default, rename = "match")]
    pub matcher: RequestMatch,
    /// What identifies a client: the parts are combined into one key, one
    /// bucket per distinct key. Default `[{"client_ip": {}}]`; `[]` makes one
    /// bucket for every request the rule matches.
    /// Example: `[{"header": {"name": "x-api-key"}}, {"method": {}}]`.
    #[serde(default = "default_key")]
    pub key: Vec<KeySource>,
    /// The rate and the burst.
    pub limit: LimitConfig,
    /// When true, the rule counts and reports (metric `shadow_limited`,
    /// audit outcome `shadow_limited`) but never rejects for its limit.
    /// A request whose key header is ambiguous is still refused (400
    /// `ambiguous_key`): it is malformed input, not a limit. Default false.
    #[serde(default)]
    pub shadow: bool,
    /// What to do when a part of the key is missing from a request
    /// (e.g. the header is absent). Default `shared`.
    #[serde(default)]
    pub on_missing_key: OnMissingKey,
    /// What to do when the shared state cannot be updated (compare-and-swap
    /// retries exhausted, or the host refused the write). Default `deny`.
    #[serde(default)]
    pub failure_mode: FailureMode,
    /// Slots for this rule, overriding the top-level `slots`.
    /// A rule with `"key": []` always uses one slot. Example: `1024`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_SLOTS)))]
    pub slots: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// Steady rate: this many requests per `unit`. At least 1.
    /// Example: `10`.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_RATE)))]
    pub requests_per_unit: u32,
    /// `second`, `minute`, `hour` or `day`.
    pub unit: Unit,
    /// Bucket size: after an idle period this many requests pass at once,
    /// then requests pass at the steady rate. Over any interval of length
    /// t, at most `burst + requests_per_unit × t / unit` requests pass.
    /// Default `requests_per_unit`. Example: `5`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = MAX_RATE)))]
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    pub fn seconds(self) -> u64 {
        match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
        }
    }
}

/// One part of a rate-limit key.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// The client's IP address: the connection's peer (`source.address`) by
    /// default. Example: `{"client_ip": {"trusted_hops": 1}}`.
    ClientIp(ClientIp),
    /// The value of a request header (bytes, compared exactly; a comma
    /// list in one line is one value). Sent more than once with different
    /// values, the request is refused (400 `ambiguous_key`), also by a
    /// shadow rule; identical lines are one value.
    /// Example: `{"header": {"name": "x-api-key"}}`.
    Header(HeaderKey),
    /// The caller verified by `jwt-auth` (`issuer|subject`). Missing when no
    /// token was verified. Example: `{"identity": {}}`.
    Identity(Empty),
    /// The request path, without the query string. Example: `{"path": {}}`.
    Path(Empty),
    /// The request method. Example: `{"method": {}}`.
    Method(Empty),
    /// The name of the Envoy route the request took. Example: `{"route": {}}`.
    Route(Empty),
    /// The first URI SAN of the client's TLS certificate (mTLS).
    /// Example: `{"peer_uri_san": {}}`.
    PeerUriSan(Empty),
}

/// A key source without options: `{}`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClientIp {
    /// 0 (the default): the connection's peer as Envoy reports it
    /// (`source.address`); `X-Forwarded-For`, which clients can forge, is
    /// ignored. The listener must set `use_remote_address: true`, or Envoy
    /// itself takes `source.address` from `X-Forwarded-For`.
    /// N > 0: the N-th entry from the right of `X-Forwarded-For` as it
    /// reaches the filter; with fewer entries, the peer. With
    /// `use_remote_address: true` Envoy has already appended the peer, so
    /// behind one trusted load balancer use 2. A value too small makes the
    /// proxy the key (stricter), never the client's own claim.
    /// Example: `2`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(max = 64)))]
    pub trusted_hops: u32,
    /// Group IPv6 clients by this prefix length (1 to 128; default 128).
    /// One host often owns a whole /64: `64` stops it from spraying
    /// addresses. Example: `64`.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 128)))]
    pub ipv6_prefix_len: Option<u8>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HeaderKey {
    /// Header name (case-insensitive). Example: `"x-api-key"`.
    pub name: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OnMissingKey {
    /// Every request missing a part of the key shares one bucket: leaving
    /// the header out cannot dodge the limit.
    #[default]
    Shared,
    /// The rule does not apply to the request.
    Skip,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Reject the request (503, reason `store_unavailable`).
    #[default]
    Deny,
    /// Let the request through.
    Allow,
}

fn default_slots() -> u32 {
    DEFAULT_SLOTS
}
fn default_status() -> u16 {
    429
}
fn default_key() -> Vec<KeySource> {
    vec![KeySource::ClientIp(ClientIp::default())]
}

/// A rule after validation, with what the request path needs precomputed.
#[derive(Debug, Clone)]
pub struct CompiledRule {
    pub rule: Rule,
    pub gcra: Gcra,
    pub slots: u32,
    /// Earlier slot counts still read (set at configuration from shared
    /// data; see `slots::update_layout`).
    pub previous: Vec<crate::slots::Previous>,
    /// Some key part is a request header (which can be ambiguous).
    pub keys_on_header: bool,
}

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let mut config: Config = parse_config(bytes)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot and normalises names (lower-case headers).
    pub fn validate(&mut self) -> Result<(), ConfigError> {
        if self.slots == 0 || self.slots > MAX_SLOTS {
            return Err(ConfigError::at(
                "slots",
                format!("must be between 1 and {MAX_SLOTS}"),
            ));
        }
        if !(400..=599).contains(&self.status) {
            return Err(ConfigError::at("status", "must be between 400 and 599"));
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, rule) in self.rules.iter_mut().enumerate() {
            rule.validate()
                .map_err(|e| nest(&format!("rules[{i}]"), e))?;
            if names.contains(&rule.name.as_str()) {
                return Err(ConfigError::at(
                    format!("rules[{i}].name"),
                    format!("`{}` is used by another rule", rule.name),
                ));
            }
            names.push(&rule.name);
        }
        Ok(())
    }

    /// The validated rules, ready for the request path.
    pub fn compile(&self) -> Vec<CompiledRule> {
        self.rules
            .iter()
            .map(|rule| {
                let slots = if rule.key.is_empty() {
                    1
                } else {
                    rule.slots.unwrap_or(self.slots)
                };
                CompiledRule {
                    gcra: rule.limit.gcra(),
                    slots,
                    previous: Vec::new(),
                    keys_on_header: rule.key.iter().any(|k| matches!(k, KeySource::Header(_))),
                    rule: rule.clone(),
                }
            })
            .collect()
    }
}

impl Rule {
    fn validate(&mut self) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || self.name.len() > MAX_NAME_LEN
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(ConfigError::at(
                "name",
                format!("must be 1 to {MAX_NAME_LEN} letters, digits, `-` or `_`"),
            ));
        }
        self.matcher.validate().map_err(|e| nest("match", e))?;
        if let Some(s) = self.slots {
            if s == 0 || s > MAX_SLOTS {
                return Err(ConfigError::at(
                    "slots",
                    format!("must be between 1 and {MAX_SLOTS}"),
                ));
            }
        }
        for (i, source) in self.key.iter_mut().enumerate() {
            match source {
                KeySource::Header(h) => {
                    h.name = h.name.to_ascii_lowercase();
                    if h.name.is_empty() || h.name.bytes().any(|b| b <= b' ' || b == 0x7f) {
                        return Err(ConfigError::at(
                            format!("key[{i}].header.name"),
                            "must be a header name",
                        ));
                    }
                }
                KeySource::ClientIp(c) => {
                    if c.trusted_hops > 64 {
                        return Err(ConfigError::at(
                            format!("key[{i}].client_ip.trusted_hops"),
                            "must be at most 64",
                        ));
                    }
                    if matches!(c.ipv6_prefix_len, Some(p) if p == 0 || p > 128) {
                        return Err(ConfigError::at(
                            format!("key[{i}].client_ip.ipv6_prefix_len"),
                            "must be between 1 and 128",
                        ));
                    }
                }
                _ => {}
            }
        }
        self.limit.validate().map_err(|e| nest("limit", e))
    }
}

/// Large enough for any real API, small enough that the exact arithmetic
/// (u128, scaled by the rate) can never overflow.
const MAX_RATE: u32 = 1_000_000_000;

impl LimitConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.requests_per_unit == 0 || self.requests_per_unit > MAX_RATE {
            return Err(ConfigError::at(
                "requests_per_unit",
                format!("must be between 1 and {MAX_RATE}"),
            ));
        }
        if matches!(self.burst, Some(b) if b == 0 || b > MAX_RATE) {
            return Err(ConfigError::at(
                "burst",
                format!("must be between 1 and {MAX_RATE}"),
            ));
        }
        Ok(())
    }

    pub fn burst(&self) -> u32 {
        self.burst.unwrap_or(self.requests_per_unit)
    }

    pub fn gcra(&self) -> Gcra {
        Gcra::new(self.requests_per_unit, self.unit.seconds(), self.burst())
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
    fn empty_config_is_valid() {
        let c = Config::parse(b"{}").unwrap();
        assert!(c.rules.is_empty());
        assert_eq!(c.slots, DEFAULT_SLOTS);
        assert_eq!(c.status, 429);
    }

    #[test]
    fn the_issue_example_parses_with_defaults() {
        let c = Config::parse(
            br#"{"rules": [{"name": "per-client", "match": {"prefix": "/api", "methods": ["post"]},
                "key": [{"client_ip": {}}],
                "limit": {"requests_per_unit": 10, "unit": "second", "burst": 5},
                "shadow": false}]}"#,
        )
        .unwrap();
        let r = &c.rules[0];
        assert_eq!(r.matcher.methods, vec!["POST"]);
        assert_eq!(r.limit.burst(), 5);
        assert_eq!(r.on_missing_key, OnMissingKey::Shared);
        assert_eq!(r.failure_mode, FailureMode::Deny);
        let r = Config::parse(
            br#"{"rules":[{"name":"a","limit":{"requests_per_unit":7,"unit":"day"}}]}"#,
        )
        .unwrap();
        assert_eq!(r.rules[0].limit.burst(), 7);
        assert_eq!(
            r.rules[0].key,
            vec![KeySource::ClientIp(ClientIp::default())]
        );
    }

    #[test]
    fn every_key_source_parses() {
        let c = Config::parse(
            br#"{"rules":[{"name":"a","limit":{"requests_per_unit":1,"unit":"hour"},
                "key":[{"client_ip":{"trusted_hops":2,"ipv6_prefix_len":64}},{"header":{"name":"X-Key"}},
                       {"identity":{}},{"path":{}},{"method":{}},{"route":{}},{"peer_uri_san":{}}],
                "on_missing_key":"skip","failure_mode":"allow","slots":16}]}"#,
        )
        .unwrap();
        let r = &c.rules[0];
        assert_eq!(r.key.len(), 7);
        assert_eq!(
            r.key[1],
            KeySource::Header(HeaderKey {
                name: "x-key".into()
            })
        );
        assert_eq!(c.compile()[0].slots, 16);
    }

    #[test]
    fn errors_name_the_field() {
        let base = |limit: &str| format!(r#"{{"rules":[{{"name":"a","limit":{limit}}}]}}"#);
        assert_eq!(
            err(&base(r#"{"requests_per_unit":10,"unit":"week"}"#)).path,
            "rules[0].limit.unit"
        );
        assert_eq!(
            err(&base(r#"{"requests_per_unit":0,"unit":"second"}"#)).path,
            "rules[0].limit.requests_per_unit"
        );
        assert_eq!(
            err(&base(
                r#"{"requests_per_unit":1,"unit":"second","burst":0}"#
            ))
            .path,
            "rules[0].limit.burst"
        );
        assert_eq!(
            err(&base(r#"{"unit":"second"}"#)).path,
            "rules[0].limit.requests_per_unit"
        );
        assert_eq!(err(r#"{"rules":[{"name":"a"}]}"#).path, "rules[0].limit");
        assert_eq!(
            err(r#"{"rules":[{"name":"a b","limit":{"requests_per_unit":1,"unit":"second"}}]}"#)
                .path,
            "rules[0].name"
        );
        assert_eq!(
            err(
                r#"{"rules":[{"name":"a","limit":{"requests_per_unit":1,"unit":"second"}},
                              {"name":"a","limit":{"requests_per_unit":1,"unit":"second"}}]}"#
            )
            .path,
            "rules[1].name"
        );
        assert_eq!(
            err(r#"{"rules":[{"name":"a","match":{"prefix":"/","path":"/"},"limit":{"requests_per_unit":1,"unit":"second"}}]}"#).path,
            "rules[0].match.path"
        );
        assert_eq!(
            err(r#"{"rules":[{"name":"a","key":[{"header":{"name":""}}],"limit":{"requests_per_unit":1,"unit":"second"}}]}"#).path,
            "rules[0].key[0].header.name"
        );
        assert_eq!(
            err(r#"{"rules":[{"name":"a","key":[{"client_ip":{"ipv6_prefix_len":0}}],"limit":{"requests_per_unit":1,"unit":"second"}}]}"#).path,
            "rules[0].key[0].client_ip.ipv6_prefix_len"
        );
        assert!(err(r#"{"rules":[{"name":"a","key":[{"cookie":{}}],"limit":{"requests_per_unit":1,"unit":"second"}}]}"#).path.starts_with("rules[0].key[0]"));
        assert_eq!(err(r#"{"slots":0}"#).path, "slots");
        assert_eq!(err(r#"{"status":200}"#).path, "status");
        assert_eq!(err(r#"{"headers":{"bogus":true}}"#).path, "headers.bogus");
        assert_eq!(err(r#"{"bogus_field":1}"#).path, "bogus_field");
    }

    #[test]
    fn a_keyless_rule_uses_one_slot() {
        let c = Config::parse(
            br#"{"slots":8,"rules":[{"name":"g","key":[],"limit":{"requests_per_unit":1,"unit":"second"}},
                                    {"name":"h","limit":{"requests_per_unit":1,"unit":"second"}}]}"#,
        )
        .unwrap();
        let compiled = c.compile();
        assert_eq!(compiled[0].slots, 1);
        assert_eq!(compiled[1].slots, 8);
        // Its stat names: `stats::tests::every_rule_has_its_counters`.
        assert!(!compiled[1].keys_on_header);
        let c = Config::parse(
            br#"{"rules":[{"name":"k","key":[{"client_ip":{}},{"header":{"name":"x-k"}}],
                           "limit":{"requests_per_unit":1,"unit":"second"}}]}"#,
        )
        .unwrap();
        let compiled = c.compile();
        assert!(compiled[0].keys_on_header);
    }
}
