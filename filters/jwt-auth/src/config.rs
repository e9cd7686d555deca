//! The plugin configuration: Envoy's `JwtAuthentication` JSON for the fields
//! we support (snake_case proto-JSON, so a native config can be pasted),
//! plus our additions. Unknown fields are refused by name.
//!
//! [`ConfigJson`] is the document as written (its doc comments are the
//! reference); [`Config`] is the validated form the filter runs on.

use crate::algorithm::Alg;
use crate::authorization::Authorization;
use crate::claims::ClaimRules;
use crate::duration::Millis;
use crate::extractor::{default_locations, Location};
use crate::key_set::{JwksOptions, KeySet};
use crate::native::{self, AsyncFetchJson, JwtCacheConfigJson, Refused};
use crate::requirements::{ProviderIndex, Requirement, RequirementJson};
use filter_common::matcher::HeaderMatch;
use filter_common::{nest, parse_config, ConfigError, Level, Metrics, RequestMatch, SharedData};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::rc::Rc;

/// The whole plugin configuration.
///
/// ```json
/// {"providers": {"demo": {"issuer": "https://issuer.demo.local",
///                         "audiences": ["demo-api"],
///                         "remote_jwks": {"http_uri": {"uri": "http://127.0.0.1:8081/jwks.json",
///                                                      "cluster": "jwks", "timeout": "1s"},
///                                         "cache_duration": "600s"}}},
///  "rules": [{"match": {"prefix": "/public"}},
///            {"match": {"prefix": "/"}, "requires": {"provider_name": "demo"}}]}
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", schemars(rename = "JwtAuthConfig"))]
pub struct ConfigJson {
    /// Token issuers by name (Envoy's `providers` map of `JwtProvider`).
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderJson>,
    /// Ordered; the first rule whose `match` fits the request applies. A
    /// request that matches no rule needs no token (Envoy's semantics).
    #[serde(default)]
    pub rules: Vec<RuleJson>,
    /// Ours: the `realm` in `WWW-Authenticate` (default `portcullis`).
    #[serde(default)]
    pub realm: Option<String>,
    /// Ours: the cache of verified tokens (on by default).
    #[serde(default)]
    pub token_cache: TokenCacheJson,
    /// Requirements by name, for a rule's `requirement_name`.
    #[serde(default)]
    pub requirement_map: BTreeMap<String, RequirementJson>,
    /// CORS preflights (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`) pass without a token.
    #[serde(default)]
    pub bypass_cors_preflight: bool,
    /// Accepted, no effect (see [`native::STAT_PREFIX`]).
    #[serde(default)]
    pub stat_prefix: Option<String>,
    #[serde(default, deserialize_with = "native::filter_state_rules")]
    pub filter_state_rules: Option<Refused>,
    #[serde(default, deserialize_with = "native::strip_failure_response")]
    pub strip_failure_response: bool,
}

/// Envoy's `JwtProvider`, for the fields we support, plus ours.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProviderJson {
    /// The token's `iss` must equal this. Unchecked when absent.
    #[serde(default)]
    pub issuer: Option<String>,
    /// The token's `aud` (a string or an array) must contain one of these.
    /// Unchecked when empty.
    #[serde(default, deserialize_with = "native::one_or_many")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::one_or_many")
    )]
    pub audiences: Vec<String>,
    /// Keys given inline: `{"inline_string": "<JWKS JSON>"}`.
    #[serde(default)]
    pub local_jwks: Option<LocalJwksJson>,
    /// Keys fetched from a JWKS URI through an Envoy cluster.
    #[serde(default)]
    pub remote_jwks: Option<RemoteJwksJson>,
    /// Ours: keys found through OpenID Connect discovery: the `jwks_uri` of
    /// `<issuer>/.well-known/openid-configuration`, both fetched through
    /// `cluster`. Needs `issuer`; the document's `issuer` must equal it.
    #[serde(default)]
    pub oidc_discovery: Option<OidcDiscoveryJson>,
    /// Headers holding the token: `[{"name": "x-jwt", "value_prefix": ""}]`.
    /// When no location is given: `Authorization: Bearer` and `access_token`.
    #[serde(default)]
    pub from_headers: Vec<FromHeaderJson>,
    /// Query parameters holding the token.
    #[serde(default, deserialize_with = "native::one_or_many")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::one_or_many")
    )]
    pub from_params: Vec<String>,
    /// Cookies holding the token.
    #[serde(default, deserialize_with = "native::one_or_many")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::one_or_many")
    )]
    pub from_cookies: Vec<String>,
    /// Keep the token in the request sent upstream (default: removed from
    /// its header or query parameter once verified).
    #[serde(default)]
    pub forward: bool,
    /// Send the verified payload (base64url, as in the token) upstream in
    /// this header.
    #[serde(default)]
    pub forward_payload_header: Option<String>,
    /// Copy claims into request headers: `[{"header_name": "x-sub",
    /// "claim_name": "sub"}]`. Dots reach nested claims; arrays and objects
    /// are sent as JSON.
    #[serde(default)]
    pub claim_to_headers: Vec<ClaimToHeaderJson>,
    /// Tolerance for `exp`, `nbf` and `iat`, in seconds (default 60).
    #[serde(default)]
    pub clock_skew_seconds: Option<u32>,
    /// Longest accepted token lifetime (`exp - iat`, or `exp - now` without
    /// `iat`), e.g. `"3600s"`. Implies `require_expiration`.
    #[serde(default)]
    pub max_lifetime: Option<Millis>,
    /// Refuse tokens without `exp`.
    #[serde(default)]
    pub require_expiration: bool,
    /// Ours: allowed `alg` values (default: every asymmetric one). HMAC
    /// (`HS256`…) must be listed and needs `oct` keys in `local_jwks`;
    /// `none` is never accepted.
    #[serde(default)]
    pub algorithms: Option<Vec<String>>,
    /// Ours: RSA keys with fewer bits are refused (default 2048).
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(range(min = 1024, max = 4096)))]
    pub min_rsa_key_bits: Option<u32>,
    /// Accepted, no effect (see [`native::JWT_CACHE_CONFIG`]).
    #[serde(default)]
    pub jwt_cache_config: Option<JwtCacheConfigJson>,
    // Native fields we refuse, each with what to use instead (`native`).
    #[serde(default, deserialize_with = "native::subjects")]
    pub subjects: Option<Refused>,
    #[serde(default, deserialize_with = "native::pad_forward_payload_header")]
    pub pad_forward_payload_header: bool,
    #[serde(default, deserialize_with = "native::payload_in_metadata")]
    pub payload_in_metadata: Option<Refused>,
    #[serde(default, deserialize_with = "native::header_in_metadata")]
    pub header_in_metadata: Option<Refused>,
    #[serde(default, deserialize_with = "native::normalize_payload_in_metadata")]
    pub normalize_payload_in_metadata: Option<Refused>,
    #[serde(default, deserialize_with = "native::failed_status_in_metadata")]
    pub failed_status_in_metadata: Option<Refused>,
    #[serde(default, deserialize_with = "native::clear_route_cache")]
    pub clear_route_cache: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct LocalJwksJson {
    /// The JWKS document as a string.
    #[serde(default)]
    pub inline_string: Option<String>,
    /// The JWKS document, base64 (proto-JSON `bytes`).
    #[serde(default)]
    pub inline_bytes: Option<String>,
    #[serde(default, deserialize_with = "native::filename")]
    pub filename: Option<Refused>,
    #[serde(default, deserialize_with = "native::environment_variable")]
    pub environment_variable: Option<Refused>,
    #[serde(default, deserialize_with = "native::watched_directory")]
    pub watched_directory: Option<Refused>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RemoteJwksJson {
    pub http_uri: HttpUriJson,
    /// How long a fetched set is fresh (default `"600s"`); it is refreshed
    /// in the background before then. If a refresh fails the last good set
    /// stays in use.
    #[serde(default)]
    pub cache_duration: Option<Millis>,
    /// Ours: least time between two refetches caused by an unknown `kid`
    /// (default `"30s"`).
    #[serde(default)]
    pub refetch_interval: Option<Millis>,
    /// Accepted, no effect (see [`native::ASYNC_FETCH`]).
    #[serde(default)]
    pub async_fetch: Option<AsyncFetchJson>,
    /// Accepted, no effect (see [`native::RETRY_POLICY`]); any
    /// `RetryPolicy` object.
    #[serde(default)]
    pub retry_policy: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct HttpUriJson {
    /// `http://host[:port]/path`; host and path are sent to the cluster.
    pub uri: String,
    /// The Envoy cluster that serves `uri`.
    pub cluster: String,
    /// Fetch timeout (default `"1s"`); requests that arrive before the first
    /// key set wait this long, then get 503.
    #[serde(default)]
    pub timeout: Option<Millis>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct OidcDiscoveryJson {
    /// The Envoy cluster that serves the issuer (and its `jwks_uri`).
    pub cluster: String,
    /// Timeout of each fetch (default `"1s"`).
    #[serde(default)]
    pub timeout: Option<Millis>,
    /// As in `remote_jwks` (default `"600s"`).
    #[serde(default)]
    pub cache_duration: Option<Millis>,
    /// As in `remote_jwks` (default `"30s"`).
    #[serde(default)]
    pub refetch_interval: Option<Millis>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct FromHeaderJson {
    pub name: String,
    /// What precedes the token, e.g. `"Bearer "`; compared ignoring case.
    #[serde(default)]
    pub value_prefix: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimToHeaderJson {
    pub header_name: String,
    pub claim_name: String,
    #[serde(default, deserialize_with = "native::claim_path")]
    pub claim_path: Option<Refused>,
}

/// One rule: `{"match": {...}, "requires": {...}}`, plus ours.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RuleJson {
    /// Envoy's `RouteMatch` forms: `prefix`, `path`, `headers`; plus
    /// `methods` and `host`.
    #[serde(rename = "match")]
    pub matcher: RequestMatch,
    /// What the request must present. Absent: nothing (the route is open).
    #[serde(default)]
    pub requires: Option<RequirementJson>,
    /// Instead of `requires`: a requirement from `requirement_map`.
    #[serde(default)]
    pub requirement_name: Option<String>,
    /// Ours: claim conditions on the verified token (403 if they fail).
    #[serde(default)]
    pub authorization: Option<Authorization>,
    /// Ours: the mTLS client certificate's URI SAN (SPIFFE ID) must be one
    /// of these; an entry ending in `*` is a prefix.
    #[serde(default)]
    pub peer_principals: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct TokenCacheJson {
    /// Most verified tokens kept per worker (default 1000; 0 turns it off).
    #[serde(default)]
    pub max_entries: Option<usize>,
    /// Most bytes of cached payloads per worker (default 1 MiB).
    #[serde(default)]
    pub max_bytes: Option<usize>,
}

/// Where a provider's keys come from.
#[derive(Debug, Clone)]
pub enum Keys {
    Local(Rc<KeySet>),
    Remote(RemoteJwks),
    /// The keys of the configured provider at this index (a copy made for
    /// `provider_and_audiences` shares them: one fetch, one key set).
    SameAs(usize),
}

/// A remote JWKS, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    pub cluster: String,
    /// Where the JWKS is; empty until discovery found it.
    pub authority: String,
    pub path: String,
    /// OIDC discovery: `(authority, path)` of the configuration document,
    /// and the issuer it must name.
    pub discovery: Option<Discovery>,
    pub timeout: Millis,
    pub cache_duration: Millis,
    pub refetch_interval: Millis,
    pub min_rsa_bits: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub authority: String,
    pub path: String,
    pub issuer: String,
}

/// A validated provider.
#[derive(Debug, Clone)]
pub struct Provider {
    pub name: String,
    pub claims: ClaimRules,
    pub algorithms: Vec<Alg>,
    pub locations: Vec<Location>,
    pub keys: Keys,
    pub forward: bool,
    pub forward_payload_header: Option<String>,
    /// `(header, claim)`.
    pub claim_to_headers: Vec<(String, String)>,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub matcher: RequestMatch,
    pub requires: Option<Requirement>,
    pub authorization: Option<Authorization>,
    pub peer_principals: Vec<String>,
}

/// The configuration the filter runs on.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pub providers: Vec<Provider>,
    pub rules: Vec<Rule>,
    pub realm: String,
    pub cache_max_entries: usize,
    pub cache_max_bytes: usize,
    /// Every header this filter writes: removed from each incoming request
    /// first, so a client cannot smuggle an identity in.
    pub owned_headers: Vec<String>,
    /// What to say once at load (skipped keys, fields without effect).
    pub notices: Vec<Notice>,
}

/// A line for Envoy's log at load, with the counter it adds to (if any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub level: Level,
    pub message: String,
    /// `(counter, amount)`.
    pub metric: Option<(&'static str, i64)>,
}

/// Counts `oct` keys left out of a `local_jwks` because the provider does
/// not enable HMAC (`wasmcustom.jwt_auth.keys.oct_skipped`).
pub const OCT_SKIPPED_METRIC: &str = "jwt_auth.keys.oct_skipped";

fn info(message: String) -> Notice {
    Notice {
        level: Level::Info,
        message,
        metric: None,
    }
}

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Self, ConfigError> {
        let json: ConfigJson = parse_config(bytes)?;
        Config::from_json(json)
    }

    pub fn from_json(json: ConfigJson) -> Result<Self, ConfigError> {
        let mut index = ProviderIndex::new(
            json.providers
                .keys()
                .enumerate()
                .map(|(i, k)| (k.clone(), i))
                .collect(),
        );
        let mut notices = Vec::new();
        if json.stat_prefix.is_some() {
            notices.push(info(format!(
                "jwt_auth: stat_prefix {}",
                native::STAT_PREFIX
            )));
        }
        let mut providers = Vec::new();
        for (name, p) in json.providers {
            let prov = provider(&name, p, &mut notices)
                .map_err(|e| nest(&format!("providers.{name}"), e))?;
            providers.push(prov);
        }
        let mut named = BTreeMap::new();
        for (name, req) in &json.requirement_map {
            let at = format!("requirement_map.{name}");
            let compiled = req.compile(&mut index).map_err(|e| nest(&at, e))?;
            named.insert(name.clone(), compiled);
        }
        let mut rules = Vec::new();
        if json.bypass_cors_preflight {
            rules.push(cors_preflight());
        }
        for (i, r) in json.rules.into_iter().enumerate() {
            let at = format!("rules[{i}]");
            let mut matcher = r.matcher;
            matcher
                .validate()
                .map_err(|e| nest(&format!("{at}.match"), e))?;
            let requires = match (&r.requires, &r.requirement_name) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::at(
                        format!("{at}.requirement_name"),
                        "give `requires` or `requirement_name`, not both",
                    ))
                }
                (Some(req), None) => Some(
                    req.compile(&mut index)
                        .map_err(|e| nest(&format!("{at}.requires"), e))?,
                ),
                (None, Some(name)) => Some(named.get(name).cloned().ok_or_else(|| {
                    ConfigError::at(
                        format!("{at}.requirement_name"),
                        format!("no requirement named `{name}` in requirement_map"),
                    )
                })?),
                (None, None) => None,
            };
            if let Some(a) = &r.authorization {
                a.validate()
                    .map_err(|e| nest(&format!("{at}.authorization"), e))?;
                if requires.is_none() {
                    return Err(ConfigError::at(
                        format!("{at}.authorization"),
                        "needs `requires`: claims come from a verified token",
                    ));
                }
            }
            for (j, p) in r.peer_principals.iter().enumerate() {
                if p.is_empty() || p == "*" {
                    return Err(ConfigError::at(
                        format!("{at}.peer_principals[{j}]"),
                        "must name a principal or a prefix",
                    ));
                }
            }
            rules.push(Rule {
                matcher,
                requires,
                authorization: r.authorization,
                peer_principals: r.peer_principals,
            });
        }
        let realm = json.realm.unwrap_or_else(|| "portcullis".to_string());
        if realm.is_empty()
            || !realm
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err(ConfigError::at(
                "realm",
                "must be printable ASCII without quotes or backslashes",
            ));
        }
        // Copies of providers for `provider_and_audiences`: same name, keys
        // and locations, other audiences.
        for (of, audiences) in &index.overrides {
            if let Some(base) = providers.get(*of) {
                let mut copy = base.clone();
                copy.claims.audiences = audiences.clone();
                copy.keys = Keys::SameAs(*of);
                providers.push(copy);
            }
        }
        let mut owned_headers: Vec<String> = Vec::new();
        for p in &providers {
            let names = p
                .claim_to_headers
                .iter()
                .map(|(h, _)| h)
                .chain(p.forward_payload_header.iter());
            for h in names {
                if !owned_headers.contains(h) {
                    owned_headers.push(h.clone());
                }
            }
        }
        Ok(Config {
            providers,
            rules,
            realm,
            cache_max_entries: json.token_cache.max_entries.unwrap_or(1000),
            cache_max_bytes: json.token_cache.max_bytes.unwrap_or(1 << 20),
            owned_headers,
            notices,
        })
    }
}

impl Config {
    /// Logs the load notices (and adds their counters) once per Envoy, not
    /// once per worker VM: the first VM to load this config marks it in
    /// shared data. Best effort: two VMs loading at the same instant may
    /// both say it. `true` if this VM said it.
    pub fn announce(
        &self,
        shared: &mut dyn SharedData,
        metrics: &mut dyn Metrics,
        log: &dyn Fn(Level, &str),
    ) -> bool {
        use sha2::{Digest, Sha256};
        if self.notices.is_empty() {
            return false;
        }
        let mut h = Sha256::new();
        for n in &self.notices {
            h.update(n.message.as_bytes());
            h.update([0]);
        }
        let tag: String = h
            .finalize()
            .iter()
            .take(8)
            .map(|b| format!("{b:02x}"))
            .collect();
        // One key per distinct set of notices: bounded by the configs loaded.
        let key = format!("portcullis.jwt_auth.notices.{tag}");
        if shared.get(&key).is_some_and(|(v, _)| !v.is_empty()) {
            return false;
        }
        let _ = shared.set(&key, b"1", None);
        for n in &self.notices {
            log(n.level, &n.message);
            if let Some((name, amount)) = n.metric {
                metrics.increment(name, amount);
            }
        }
        true
    }
}

/// Envoy's `bypass_cors_preflight`, as a first rule without `requires`:
/// `OPTIONS` with non-empty `Origin` and `Access-Control-Request-Method`.
fn cors_preflight() -> Rule {
    let non_empty = |name: &str| {
        [
            HeaderMatch {
                name: name.to_string(),
                present_match: Some(true),
                ..HeaderMatch::default()
            },
            HeaderMatch {
                name: name.to_string(),
                exact_match: Some(String::new()),
                invert_match: true,
                ..HeaderMatch::default()
            },
        ]
    };
    let mut headers = non_empty("origin").to_vec();
    headers.extend(non_empty("access-control-request-method"));
    Rule {
        matcher: RequestMatch {
            methods: vec!["OPTIONS".to_string()],
            headers,
            ..RequestMatch::default()
        },
        requires: None,
        authorization: None,
        peer_principals: Vec::new(),
    }
}

fn header_name(name: &str, field: &str) -> Result<String, ConfigError> {
    let lower = name.to_ascii_lowercase();
    let ok = !lower.is_empty()
        && lower
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        return Err(ConfigError::at(
            field,
            format!("`{name}` is not a header name"),
        ));
    }
    if matches!(
        lower.as_str(),
        "host" | "content-length" | "transfer-encoding" | "connection"
    ) {
        return Err(ConfigError::at(
            field,
            format!("`{name}` cannot be written"),
        ));
    }
    Ok(lower)
}

fn provider(
    name: &str,
    mut p: ProviderJson,
    notices: &mut Vec<Notice>,
) -> Result<Provider, ConfigError> {
    if p.jwt_cache_config.is_some() {
        notices.push(info(format!(
            "jwt_auth: providers.{name}.jwt_cache_config {}",
            native::JWT_CACHE_CONFIG
        )));
    }
    let min_rsa_bits = p.min_rsa_key_bits.unwrap_or(2048) as usize;
    if !(1024..=4096).contains(&min_rsa_bits) {
        return Err(ConfigError::at(
            "min_rsa_key_bits",
            "must be between 1024 and 4096",
        ));
    }
    let algorithms = match &p.algorithms {
        None => Alg::default_allowed(),
        Some(list) => {
            let mut out = Vec::new();
            for (i, a) in list.iter().enumerate() {
                let alg = Alg::from_name(a).ok_or_else(|| {
                    ConfigError::at(
                        format!("algorithms[{i}]"),
                        format!("unsupported algorithm `{a}`"),
                    )
                })?;
                out.push(alg);
            }
            if out.is_empty() {
                return Err(ConfigError::at("algorithms", "must not be empty"));
            }
            out
        }
    };
    let wants_hmac = algorithms.iter().any(|a| a.is_hmac());
    let sources = [
        p.local_jwks.is_some(),
        p.remote_jwks.is_some(),
        p.oidc_discovery.is_some(),
    ];
    if sources.iter().filter(|s| **s).count() > 1 {
        return Err(ConfigError::at(
            "",
            "give only one of local_jwks, remote_jwks, oidc_discovery",
        ));
    }
    if let Some(d) = p.oidc_discovery.take() {
        if wants_hmac {
            return Err(ConfigError::at(
                "algorithms",
                "HMAC is only allowed with oct keys given in local_jwks",
            ));
        }
        let issuer = p
            .issuer
            .clone()
            .ok_or_else(|| ConfigError::at("issuer", "oidc_discovery needs the issuer"))?;
        let doc = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let (authority, path) = split_uri(&doc).map_err(|m| ConfigError::at("issuer", m))?;
        if d.cluster.is_empty() {
            return Err(ConfigError::at(
                "oidc_discovery.cluster",
                "must not be empty",
            ));
        }
        let timeout = d.timeout.unwrap_or(Millis(1000));
        if timeout.0 == 0 || timeout.0 > 60_000 {
            return Err(ConfigError::at(
                "oidc_discovery.timeout",
                "must be between 1ms and 60s",
            ));
        }
        let cache_duration = d.cache_duration.unwrap_or(Millis(600_000));
        if cache_duration.0 < 1000 {
            return Err(ConfigError::at(
                "oidc_discovery.cache_duration",
                "must be at least 1s",
            ));
        }
        let remote = RemoteJwks {
            cluster: d.cluster,
            authority: String::new(),
            path: String::new(),
            discovery: Some(Discovery {
                authority,
                path,
                issuer,
            }),
            timeout,
            cache_duration,
            refetch_interval: d.refetch_interval.unwrap_or(Millis(30_000)),
            min_rsa_bits,
        };
        return finish(name, p, algorithms, Keys::Remote(remote));
    }
    let keys = match (p.local_jwks.take(), p.remote_jwks.take()) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::at(
                "remote_jwks",
                "give local_jwks or remote_jwks, not both",
            ))
        }
        (None, None) => {
            return Err(ConfigError::at(
                "",
                "give local_jwks, remote_jwks or oidc_discovery",
            ));
        }
        (Some(local), None) => {
            let opts = JwksOptions {
                allow_oct: true,
                min_rsa_bits,
                strict: true,
            };
            let (field, doc) = local_jwks_document(&local)?;
            // Without HMAC in `algorithms`, oct keys are left out unread (as
            // native loads them, we load the set; but they verify nothing).
            let set = if wants_hmac {
                KeySet::parse(&doc, opts)
            } else {
                KeySet::parse_without_oct(&doc, opts)
            }
            .map_err(|e| ConfigError::at(field, e))?;
            if set.oct_skipped > 0 {
                let n = set.oct_skipped;
                let (keys, them) = if n == 1 {
                    ("key", "it")
                } else {
                    ("keys", "them")
                };
                notices.push(Notice {
                    level: Level::Warn,
                    message: format!(
                        "jwt_auth: provider \"{name}\": {n} oct (HMAC) {keys} in local_jwks skipped: list HS256, HS384 or HS512 in algorithms to use {them}"
                    ),
                    metric: Some((OCT_SKIPPED_METRIC, i64::try_from(n).unwrap_or(i64::MAX))),
                });
            }
            let has_oct = set
                .keys
                .iter()
                .any(|k| k.material.kind() == crate::algorithm::KeyKind::Oct);
            if wants_hmac && !has_oct {
                return Err(ConfigError::at(
                    "algorithms",
                    "HMAC needs oct keys in local_jwks",
                ));
            }
            Keys::Local(Rc::new(set))
        }
        (None, Some(remote)) => {
            if wants_hmac {
                return Err(ConfigError::at(
                    "algorithms",
                    "HMAC is only allowed with oct keys given in local_jwks",
                ));
            }
            if remote.async_fetch.is_some() {
                notices.push(info(format!(
                    "jwt_auth: providers.{name}.remote_jwks.async_fetch {}",
                    native::ASYNC_FETCH
                )));
            }
            if remote.retry_policy.is_some() {
                notices.push(info(format!(
                    "jwt_auth: providers.{name}.remote_jwks.retry_policy {}",
                    native::RETRY_POLICY
                )));
            }
            let (authority, path) = split_uri(&remote.http_uri.uri)
                .map_err(|m| ConfigError::at("remote_jwks.http_uri.uri", m))?;
            if remote.http_uri.cluster.is_empty() {
                return Err(ConfigError::at(
                    "remote_jwks.http_uri.cluster",
                    "must not be empty",
                ));
            }
            let timeout = remote.http_uri.timeout.unwrap_or(Millis(1000));
            if timeout.0 == 0 || timeout.0 > 60_000 {
                return Err(ConfigError::at(
                    "remote_jwks.http_uri.timeout",
                    "must be between 1ms and 60s",
                ));
            }
            let cache_duration = remote.cache_duration.unwrap_or(Millis(600_000));
            if cache_duration.0 < 1000 {
                return Err(ConfigError::at(
                    "remote_jwks.cache_duration",
                    "must be at least 1s",
                ));
            }
            Keys::Remote(RemoteJwks {
                cluster: remote.http_uri.cluster,
                authority,
                path,
                discovery: None,
                timeout,
                cache_duration,
                refetch_interval: remote.refetch_interval.unwrap_or(Millis(30_000)),
                min_rsa_bits,
            })
        }
    };
    finish(name, p, algorithms, keys)
}

/// The JWKS bytes of a `local_jwks`, and the field they came from.
///
/// Raw tabs and line breaks become spaces: Envoy's own examples fold a long
/// `n` over YAML lines that keep their line breaks, inside a JSON string,
/// and Envoy's parser takes that. No valid JSON changes (raw control
/// characters are not allowed in its strings), and base64url members skip
/// whitespace.
fn local_jwks_document(local: &LocalJwksJson) -> Result<(&'static str, Vec<u8>), ConfigError> {
    let (field, mut doc) = local_jwks_bytes(local)?;
    for b in &mut doc {
        if matches!(*b, b'\n' | b'\r' | b'\t') {
            *b = b' ';
        }
    }
    Ok((field, doc))
}

fn local_jwks_bytes(local: &LocalJwksJson) -> Result<(&'static str, Vec<u8>), ConfigError> {
    use base64::Engine;
    match (&local.inline_string, &local.inline_bytes) {
        (Some(s), None) => Ok(("local_jwks.inline_string", s.as_bytes().to_vec())),
        (None, Some(b)) => {
            let field = "local_jwks.inline_bytes";
            let compact: String = b.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact.as_bytes())
                .or_else(|_| {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(compact.trim_end_matches('=').as_bytes())
                })
                .map(|d| (field, d))
                .map_err(|_| ConfigError::at(field, "is not base64"))
        }
        (Some(_), Some(_)) => Err(ConfigError::at(
            "local_jwks",
            "give inline_string or inline_bytes, not both",
        )),
        (None, None) => Err(ConfigError::at(
            "local_jwks",
            "give inline_string (or inline_bytes)",
        )),
    }
}

/// The parts of a provider that do not depend on where keys come from.
fn finish(
    name: &str,
    p: ProviderJson,
    algorithms: Vec<Alg>,
    keys: Keys,
) -> Result<Provider, ConfigError> {
    let mut locations = Vec::new();
    for (i, h) in p.from_headers.iter().enumerate() {
        locations.push(Location::Header {
            name: header_name(&h.name, &format!("from_headers[{i}].name"))?,
            prefix: h.value_prefix.clone(),
        });
    }
    for (i, q) in p.from_params.iter().enumerate() {
        if q.is_empty() {
            return Err(ConfigError::at(
                format!("from_params[{i}]"),
                "must not be empty",
            ));
        }
        locations.push(Location::Param(q.clone()));
    }
    for (i, c) in p.from_cookies.iter().enumerate() {
        if c.is_empty() || c.contains([';', '=', ' ']) {
            return Err(ConfigError::at(
                format!("from_cookies[{i}]"),
                "is not a cookie name",
            ));
        }
        locations.push(Location::Cookie(c.clone()));
    }
    if locations.is_empty() {
        locations = default_locations();
    }
    let mut claim_to_headers = Vec::new();
    for (i, c) in p.claim_to_headers.iter().enumerate() {
        let h = header_name(
            &c.header_name,
            &format!("claim_to_headers[{i}].header_name"),
        )?;
        if c.claim_name.is_empty() {
            return Err(ConfigError::at(
                format!("claim_to_headers[{i}].claim_name"),
                "must not be empty",
            ));
        }
        claim_to_headers.push((h, c.claim_name.clone()));
    }
    let forward_payload_header = match &p.forward_payload_header {
        Some(h) => Some(header_name(h, "forward_payload_header")?),
        None => None,
    };
    Ok(Provider {
        name: name.to_string(),
        claims: ClaimRules {
            issuer: p.issuer,
            audiences: p.audiences,
            clock_skew_secs: i64::from(p.clock_skew_seconds.unwrap_or(60)),
            require_expiration: p.require_expiration,
            max_lifetime_secs: p
                .max_lifetime
                .map(|m| i64::try_from(m.secs()).unwrap_or(i64::MAX)),
        },
        algorithms,
        locations,
        keys,
        forward: p.forward,
        forward_payload_header,
        claim_to_headers,
    })
}

/// `http://host:port/path?q` into (`host:port`, `/path?q`).
pub fn split_uri(uri: &str) -> Result<(String, String), String> {
    let rest = uri
        .strip_prefix("http://")
        .or_else(|| uri.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains(['@', ' ']) {
        return Err("has no valid host".into());
    }
    Ok((authority.to_string(), path.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{jwks, Key, KeyName};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn parse(v: serde_json::Value) -> Result<Config, ConfigError> {
        Config::parse(v.to_string().as_bytes())
    }

    fn local() -> serde_json::Value {
        json!({"inline_string": jwks(&[Key::get(KeyName::RsaA)])})
    }

    #[test]
    fn an_envoy_provider_parses() {
        let c = parse(json!({
            "providers": {"demo": {
                "issuer": "https://issuer.demo.local",
                "audiences": ["demo-api"],
                "remote_jwks": {"http_uri": {"uri": "http://127.0.0.1:8081/jwks.json", "cluster": "jwks", "timeout": "2s"}, "cache_duration": "300s"},
                "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
                "from_params": ["token"],
                "from_cookies": ["jwt"],
                "forward": true,
                "forward_payload_header": "x-jwt-payload",
                "claim_to_headers": [{"header_name": "X-Sub", "claim_name": "sub"}],
                "clock_skew_seconds": 30,
                "max_lifetime": "86400s",
                "require_expiration": true
            }},
            "rules": [
                {"match": {"prefix": "/health"}},
                {"match": {"prefix": "/"}, "requires": {"provider_name": "demo"}}
            ]
        }))
        .unwrap();
        let p = &c.providers[0];
        let Keys::Remote(r) = &p.keys else { panic!() };
        assert_eq!(
            (r.authority.as_str(), r.path.as_str()),
            ("127.0.0.1:8081", "/jwks.json")
        );
        assert_eq!(r.timeout, Millis(2000));
        assert_eq!(r.cache_duration, Millis(300_000));
        assert_eq!(p.locations.len(), 3);
        assert_eq!(
            p.claim_to_headers,
            [("x-sub".to_string(), "sub".to_string())]
        );
        assert_eq!(c.owned_headers, ["x-sub", "x-jwt-payload"]);
        assert_eq!(p.claims.clock_skew_secs, 30);
        assert_eq!(p.claims.max_lifetime_secs, Some(86400));
        assert!(c.rules[0].requires.is_none());
        assert_eq!(c.realm, "portcullis");
    }

    #[test]
    fn oidc_discovery() {
        let c = parse(
            json!({"providers": {"o": {"issuer": "https://idp.test/realms/a/",
            "oidc_discovery": {"cluster": "idp"}}}}),
        )
        .unwrap();
        let Keys::Remote(r) = &c.providers[0].keys else {
            panic!()
        };
        let d = r.discovery.as_ref().unwrap();
        assert_eq!(
            (d.authority.as_str(), d.path.as_str()),
            ("idp.test", "/realms/a/.well-known/openid-configuration")
        );
        let e =
            parse(json!({"providers": {"o": {"oidc_discovery": {"cluster": "idp"}}}})).unwrap_err();
        assert_eq!(e.path, "providers.o.issuer");
        let e = parse(json!({"providers": {"o": {"issuer": "https://i", "oidc_discovery": {"cluster": "idp"}, "local_jwks": local()}}})).unwrap_err();
        assert_eq!(e.path, "providers.o");
    }

    #[test]
    fn empty_config_is_a_pass_through() {
        let c = parse(json!({})).unwrap();
        assert!(c.providers.is_empty() && c.rules.is_empty());
    }

    #[test]
    fn semantic_errors_name_the_path() {
        let cases = [
            (json!({"providers": {"a": {}}}), "providers.a"),
            (
                json!({"providers": {"a": {"local_jwks": {"inline_string": "{}"}}}}),
                "providers.a.local_jwks.inline_string",
            ),
            (
                json!({"providers": {"a": {"local_jwks": local(), "algorithms": ["none"]}}}),
                "providers.a.algorithms[0]",
            ),
            (
                json!({"providers": {"a": {"local_jwks": local(), "algorithms": ["HS256"]}}}),
                "providers.a.algorithms",
            ),
            (
                json!({"providers": {"a": {"remote_jwks": {"http_uri": {"uri": "http://x/", "cluster": "c"}}, "algorithms": ["HS256"]}}}),
                "providers.a.algorithms",
            ),
            (
                json!({"providers": {"a": {"remote_jwks": {"http_uri": {"uri": "ftp://x/", "cluster": "c"}}}}}),
                "providers.a.remote_jwks.http_uri.uri",
            ),
            (
                json!({"providers": {"a": {"remote_jwks": {"http_uri": {"uri": "http://x/", "cluster": "c", "timeout": "5"}}}}}),
                "providers.a.remote_jwks.http_uri.timeout",
            ),
            (
                json!({"providers": {"a": {"local_jwks": local(), "claim_to_headers": [{"header_name": "bad header", "claim_name": "sub"}]}}}),
                "providers.a.claim_to_headers[0].header_name",
            ),
            (
                json!({"rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "nope"}}]}),
                "rules[0].requires.provider_name",
            ),
            (
                json!({"rules": [{"match": {"prefix": "/", "path": "/"}}]}),
                "rules[0].match.path",
            ),
            (
                json!({"providers": {"a": {"local_jwks": local()}}, "rules": [{"match": {"prefix": "/"}, "authorization": {"all": [{"claim": "x", "present": true}]}}]}),
                "rules[0].authorization",
            ),
            (
                json!({"providers": {"a": {"local_jwks": local()}}, "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "a"}, "authorization": {"all": [{"claim": "x"}]}}]}),
                "rules[0].authorization.all[0]",
            ),
            (json!({"realm": "a\"b"}), "realm"),
        ];
        for (v, path) in cases {
            let e = parse(v.clone()).unwrap_err();
            assert_eq!(e.path, path, "{v}: {e}");
        }
    }

    #[test]
    fn hmac_needs_explicit_algorithms_and_oct_keys() {
        let oct = json!({"inline_string": jwks(&[Key::get(KeyName::Hmac)])});
        let e = parse(json!({"providers": {"a": {"local_jwks": oct.clone()}}})).unwrap_err();
        assert_eq!(e.path, "providers.a.local_jwks.inline_string");
        assert!(
            parse(json!({"providers": {"a": {"local_jwks": oct, "algorithms": ["HS256"]}}}))
                .is_ok()
        );
    }

    #[test]
    fn weak_rsa_keys_refuse_the_config() {
        let weak = json!({"inline_string": jwks(&[Key::get(KeyName::RsaWeak)])});
        let e = parse(json!({"providers": {"a": {"local_jwks": weak.clone()}}})).unwrap_err();
        assert!(e.message.contains("1024 bits"), "{e}");
        assert!(
            parse(json!({"providers": {"a": {"local_jwks": weak, "min_rsa_key_bits": 1024}}}))
                .is_ok()
        );
    }
}
