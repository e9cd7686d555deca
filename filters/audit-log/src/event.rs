//! The audit event: one JSON object per request, with Elastic Common Schema
//! field names (which OpenTelemetry's semantic conventions map to), and
//! the pieces it is built from.
//!
//! Every field is documented in README.md; bump [`SCHEMA_VERSION`] when a
//! field changes meaning or disappears (adding one does not).

use crate::config::Config;
use crate::hash_chain::Chain;
use crate::redact::{scrub_tokens, truncate};
use filter_common::identity::{Identity, JwtDecision, RateLimitDecision};
use filter_common::{HttpHost, RateLimitReason, RequestContext, RequestInfo};
use serde::Serialize;
use std::collections::BTreeMap;

/// `audit.schema_version`.
pub const SCHEMA_VERSION: &str = "1";

// Fields are declared in byte order of their JSON names, at every level:
// serialized as is, an event is already in the canonical form the hash
// chain needs (see `hash_chain`), so it is serialized once. A unit test
// guards the order.

#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    /// When the request headers reached the filter (RFC 3339, UTC,
    /// milliseconds).
    #[serde(rename = "@timestamp")]
    pub timestamp: String,
    pub audit: AuditInfo,
    pub decision: Decision,
    pub envoy: EnvoyInfo,
    pub event: EventInfo,
    pub http: Http,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    pub url: Url,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<UserAgent>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventInfo {
    pub action: &'static str,
    pub category: [&'static str; 1],
    /// Nanoseconds from the request headers reaching the filter to the
    /// end of the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<u64>,
    pub kind: &'static str,
    /// `success` (answered below 400, no denial), `failure`, or `unknown`
    /// (no response code).
    pub outcome: &'static str,
    /// Why it failed: the jwt-auth reason, `rate_limited` (or rate-limit's
    /// `store_unavailable` / `ambiguous_key`), or Envoy's
    /// response code details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The chain fields are set by [`seal`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    pub prev_hash: String,
    pub producer: String,
    pub schema_version: &'static str,
    pub seq: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Http {
    pub request: HttpRequest,
    pub response: HttpResponse,
    /// `1.1`, `2`, `3`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpRequest {
    /// Request bytes, headers included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// `x-request-id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub method: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Url {
    /// `:authority` without the port.
    pub domain: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Allowlisted parameters only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Source {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tls {
    pub client: TlsClient,
}

/// The mTLS peer, from its certificate.
#[derive(Debug, Clone, Serialize)]
pub struct TlsClient {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub x509: X509,
}

#[derive(Debug, Clone, Serialize)]
pub struct X509 {
    /// URI SANs (a SPIFFE id in a mesh).
    pub alternative_names: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UserAgent {
    pub original: String,
}

/// The principal jwt-auth verified.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    /// Claims from `principal_claims` (objects with sorted keys).
    #[serde(
        skip_serializing_if = "serde_json::Map::is_empty",
        serialize_with = "sorted_map"
    )]
    pub claims: serde_json::Map<String, serde_json::Value>,
    /// The token's `sub`.
    pub id: String,
    /// The token's `iss`.
    pub issuer: String,
    /// The jwt-auth provider that verified it.
    pub provider: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Decision {
    /// jwt-auth's decision (`outcome`, `reason`, `status`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtDecision>,
    /// rate-limit's decision (`outcome`, `rule`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitDecision>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EnvoyInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// `%RESPONSE_CODE_DETAILS%`, e.g. `via_upstream`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_code_details: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// The upstream host's `ip:port`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_host: Option<String>,
}

/// A JSON value with object keys sorted, whatever serde_json's map order.
struct Sorted<'a>(&'a serde_json::Value);

impl Serialize for Sorted<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        match self.0 {
            serde_json::Value::Object(m) => sorted_map(m, s),
            serde_json::Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for v in items {
                    seq.serialize_element(&Sorted(v))?;
                }
                seq.end()
            }
            other => other.serialize(s),
        }
    }
}

fn sorted_map<S: serde::Serializer>(
    m: &serde_json::Map<String, serde_json::Value>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    let mut map = s.serialize_map(Some(keys.len()))?;
    for k in keys {
        if let Some(v) = m.get(k) {
            map.serialize_entry(k, &Sorted(v))?;
        }
    }
    map.end()
}

/// Seals a typed event into `chain`: sets its chain fields, serializes it
/// once (its fields are declared in canonical order), hashes that, and
/// splices the hash in (`hash` sorts first in `audit`). Returns the
/// sequence number and the event's JSON line.
pub fn seal(chain: &mut Chain, event: &mut AuditEvent) -> (u64, String) {
    let (seq, prev) = chain.next_link();
    event.audit.producer = chain.producer().to_string();
    event.audit.seq = seq;
    event.audit.prev_hash = prev.to_string();
    event.audit.hash = None;
    let mut line = Vec::with_capacity(1024);
    if serde_json::to_writer(&mut line, &*event).is_err() {
        // Not reachable with these types; the generic path still seals.
        let mut value = serde_json::to_value(&*event).unwrap_or_default();
        return chain.seal(&mut value);
    }
    let hash = chain.append(&line);
    const AUDIT: &[u8] = b"\"audit\":{";
    if let Some(at) = line.windows(AUDIT.len()).position(|w| w == AUDIT) {
        let at = at + AUDIT.len();
        line.splice(at..at, format!("\"hash\":\"{hash}\",").into_bytes());
    }
    event.audit.hash = Some(hash);
    let line = String::from_utf8(line)
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
    (seq, line)
}

/// What is read from the request headers when they arrive: by the end of
/// the stream some are gone (jwt-auth strips what it consumed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub authority: String,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// The path-level sampling choice.
    pub selected: bool,
    /// Host time when the headers arrived (fallback for `request.time`).
    pub start_nanos: u64,
}

impl Captured {
    pub fn read(config: &Config, host: &dyn HttpHost, req: &RequestInfo, selected: bool) -> Self {
        let max = config.max_field_bytes;
        let text = |name: &str| {
            host.request_header(name)
                .map(|v| truncate(scrub_tokens(&String::from_utf8_lossy(&v)), max))
        };
        let labels = config
            .headers
            .iter()
            .filter_map(|h| Some((h.label(), text(&h.name.to_ascii_lowercase())?)))
            .collect();
        Captured {
            method: truncate(req.method.clone(), 32),
            path: truncate(scrub_tokens(&req.path), max),
            query: req
                .query
                .as_deref()
                .and_then(|q| config.redactor.filter_query(q, &config.query_params))
                .map(|q| truncate(q, max)),
            authority: truncate(req.host.clone(), 256),
            user_agent: text("user-agent"),
            request_id: text("x-request-id").map(|s| truncate(s, 128)),
            labels,
            selected,
            start_nanos: host.now_nanos(),
        }
    }
}

/// Envoy attributes read at the end of the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamInfo {
    pub request_id: Option<String>,
    pub time_nanos: Option<u64>,
    pub protocol: Option<String>,
    pub source_address: Option<String>,
    pub source_port: Option<u64>,
    pub response_code: Option<u64>,
    pub response_code_details: Option<String>,
    pub duration_nanos: Option<u64>,
    pub request_bytes: Option<u64>,
    pub response_bytes: Option<u64>,
    pub upstream_address: Option<String>,
    pub cluster: Option<String>,
    pub route: Option<String>,
    pub peer_uri_san: Option<String>,
    pub peer_subject: Option<String>,
}

impl StreamInfo {
    /// Attribute names as Envoy documents them; strings are bytes,
    /// integers and durations 8 bytes little-endian, booleans one byte.
    ///
    /// Each attribute is a hostcall (about 1.5 µs on V8), so what the
    /// captured headers and the host clock already tell is not asked again:
    /// the request id (from `x-request-id`), the start time and duration
    /// (from the host clock at request headers and now), the source port
    /// (part of `source.address`), and the peer certificate unless the
    /// connection is mTLS.
    pub fn read(host: &dyn HttpHost, cap: &Captured) -> Self {
        Self::read_at(host, cap, host.now_nanos())
    }

    /// [`StreamInfo::read`] with the host clock already read (`now`).
    ///
    /// One host call per attribute. Reading all of them with one CEL
    /// expression (Envoy's `expr_evaluate`) was tried: about 4.4 µs per
    /// call against 1.1 µs per single read in `cargo xtask bench
    /// --calibrate`, yet the chain measured about 7 µs per request slower
    /// with it than without (`--before`, same run), so single reads stay.
    pub fn read_at(host: &dyn HttpHost, cap: &Captured, now: u64) -> Self {
        let s = |p: &[&str]| {
            host.property(p)
                .filter(|v| !v.is_empty())
                .map(|v| truncate(String::from_utf8_lossy(&v).into_owned(), 512))
        };
        let n = |p: &[&str]| host.property(p).and_then(|v| le_u64(&v));
        let mtls = host
            .property(&["connection", "mtls"])
            .is_some_and(|v| v.first() == Some(&1));
        StreamInfo {
            request_id: match cap.request_id {
                Some(_) => None,
                None => s(&["request", "id"]).map(|v| truncate(v, 128)),
            },
            time_nanos: None,
            protocol: s(&["request", "protocol"]),
            source_address: s(&["source", "address"]),
            source_port: None,
            response_code: n(&["response", "code"]),
            response_code_details: s(&["response", "code_details"]),
            duration_nanos: (cap.start_nanos > 0 && now >= cap.start_nanos)
                .then(|| now - cap.start_nanos),
            request_bytes: n(&["request", "total_size"]),
            response_bytes: n(&["response", "total_size"]),
            upstream_address: s(&["upstream", "address"]),
            cluster: s(&["xds", "cluster_name"]),
            route: s(&["xds", "route_name"]),
            peer_uri_san: mtls
                .then(|| s(&["connection", "uri_san_peer_certificate"]))
                .flatten(),
            peer_subject: mtls
                .then(|| s(&["connection", "subject_peer_certificate"]))
                .flatten(),
        }
    }
}

/// An 8-byte little-endian integer, as Envoy encodes them.
pub fn le_u64(bytes: &[u8]) -> Option<u64> {
    let arr: [u8; 8] = bytes.try_into().ok()?;
    let v = i64::from_le_bytes(arr);
    u64::try_from(v).ok()
}

/// Builds the event (without its chain fields).
pub fn build(
    config: &Config,
    cap: &Captured,
    info: &StreamInfo,
    ctx: &RequestContext,
) -> AuditEvent {
    let jwt = ctx.jwt.clone();
    let rate_limit = ctx.rate_limit.clone();
    let status = info.response_code.filter(|c| *c > 0);
    let jwt_denied = jwt.as_ref().filter(|j| j.outcome.refused());
    let limited = rate_limit.as_ref().filter(|r| r.refused());
    let outcome = match status {
        _ if jwt_denied.is_some() || limited.is_some() => "failure",
        None => "unknown",
        Some(s) if s >= 400 => "failure",
        Some(_) => "success",
    };
    let reason = if let Some(j) = jwt_denied {
        Some(if j.reason.is_empty() {
            j.outcome.label().to_string()
        } else {
            j.reason.clone()
        })
    } else if let Some(r) = limited {
        // `rate_limited` for an empty bucket (as before reasons were
        // passed), else the refusal's own reason.
        Some(match r.reason {
            None | Some(RateLimitReason::OverLimit) => "rate_limited".to_string(),
            Some(other) => other.label().to_string(),
        })
    } else if outcome != "success" {
        info.response_code_details.clone()
    } else {
        None
    };
    let (domain, port) = split_host_port(&cap.authority);
    let (ip, addr_port) = info
        .source_address
        .as_deref()
        .map(split_host_port)
        .unwrap_or_default();
    let tls = (info.peer_uri_san.is_some() || info.peer_subject.is_some()).then(|| Tls {
        client: TlsClient {
            subject: info.peer_subject.clone(),
            x509: X509 {
                alternative_names: info.peer_uri_san.iter().cloned().collect(),
            },
        },
    });
    AuditEvent {
        timestamp: rfc3339_millis(info.time_nanos.unwrap_or(cap.start_nanos)),
        event: EventInfo {
            kind: "event",
            category: ["web"],
            action: "http_request",
            outcome,
            reason,
            duration: info.duration_nanos,
        },
        audit: AuditInfo {
            schema_version: SCHEMA_VERSION,
            ..Default::default()
        },
        http: Http {
            request: HttpRequest {
                id: info.request_id.clone().or_else(|| cap.request_id.clone()),
                method: cap.method.clone(),
                bytes: info.request_bytes,
            },
            response: HttpResponse {
                status_code: status,
                bytes: info.response_bytes,
            },
            version: info.protocol.as_deref().map(http_version),
        },
        url: Url {
            domain: domain.to_string(),
            port,
            path: cap.path.clone(),
            query: cap.query.clone(),
        },
        source: Source {
            ip: (!ip.is_empty()).then(|| ip.to_string()),
            port: info.source_port.or(addr_port.map(u64::from)),
        },
        tls,
        user_agent: cap
            .user_agent
            .clone()
            .map(|original| UserAgent { original }),
        user: ctx.identity.as_ref().map(|id| user(config, id)),
        decision: Decision { jwt, rate_limit },
        envoy: EnvoyInfo {
            response_code_details: info.response_code_details.clone(),
            cluster: info.cluster.clone(),
            route: info.route.clone(),
            upstream_host: info.upstream_address.clone(),
        },
        labels: cap.labels.clone(),
    }
}

fn user(config: &Config, id: &Identity) -> User {
    let max = config.max_field_bytes;
    let claims = config
        .principal_claims
        .iter()
        .filter_map(|name| {
            let v = id.claims.get(name)?;
            let fits = v.to_string().len() <= max;
            Some((
                name.clone(),
                if fits {
                    v.clone()
                } else {
                    serde_json::Value::from("[truncated]")
                },
            ))
        })
        .collect();
    User {
        id: truncate(id.subject.clone(), max),
        issuer: truncate(id.issuer.clone(), max),
        provider: truncate(id.provider.clone(), max),
        claims,
    }
}

/// `HTTP/1.1` → `1.1` (ECS `http.version`).
fn http_version(protocol: &str) -> String {
    protocol
        .strip_prefix("HTTP/")
        .unwrap_or(protocol)
        .to_string()
}

/// `host:port`, `[v6]:port`, `host` → host and port.
pub fn split_host_port(s: &str) -> (&str, Option<u16>) {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host, port);
        }
        return (s, None);
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(p) => (host, Some(p)),
            Err(_) => (s, None),
        },
        _ => (s, None),
    }
}

/// Nanoseconds since the epoch as `2024-05-01T12:00:00.123Z`.
pub fn rfc3339_millis(nanos: u64) -> String {
    let secs = nanos / 1_000_000_000;
    let millis = (nanos / 1_000_000) % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(0));
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian
/// (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    (
        y,
        u32::try_from(m).unwrap_or(1),
        u32::try_from(d).unwrap_or(1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_common::testing::FakeHost;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn config() -> Config {
        Config::parse(
            br#"{"query_params": ["page"], "headers": [{"name": "x-tenant"}],
                 "principal_claims": ["scope", "big"], "max_field_bytes": 64}"#,
        )
        .unwrap()
    }

    fn prop_i64(h: &mut FakeHost, k: &str, v: i64) {
        h.properties.insert(k.into(), v.to_le_bytes().to_vec());
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_709_251_199_999_000_000),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(
            rfc3339_millis(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn host_and_port() {
        assert_eq!(split_host_port("a.b:8080"), ("a.b", Some(8080)));
        assert_eq!(split_host_port("a.b"), ("a.b", None));
        assert_eq!(split_host_port("[::1]:9"), ("::1", Some(9)));
        assert_eq!(split_host_port("::1"), ("::1", None));
        assert_eq!(split_host_port("h:x"), ("h:x", None));
    }

    #[test]
    fn builds_an_event_from_headers_properties_and_decisions() {
        let c = config();
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
        let mut h = FakeHost::request(
            "GET",
            "/api/v1?page=2&access_token=s3cret&x=1",
            "Api.Example.com:8443",
            &[
                ("authorization", &format!("Bearer {jwt}")),
                ("cookie", "session=s3cret"),
                ("user-agent", "curl/8"),
                ("x-tenant", "acme"),
                ("x-request-id", "rid-1"),
            ],
        );
        h.request_headers
            .push(("x-bin".into(), vec![0xff, 0xfe, b'a']));
        h.now_nanos = 1_000_000_000;
        let req = RequestInfo::from_host(&h);
        let cap = Captured::read(&c, &h, &req, true);
        h.properties
            .insert("source.address".into(), b"10.0.0.1:5555".to_vec());
        prop_i64(&mut h, "response.code", 401);
        h.now_nanos = 1_001_500_000;
        h.properties
            .insert("response.code_details".into(), b"jwt_auth_denied".to_vec());
        h.properties
            .insert("request.protocol".into(), b"HTTP/1.1".to_vec());
        let info = StreamInfo::read(&h, &cap);
        let mut claims = serde_json::Map::new();
        claims.insert("scope".into(), json!("read"));
        claims.insert("email".into(), json!("a@b"));
        claims.insert("big".into(), json!("x".repeat(100)));
        let ctx = RequestContext {
            request: req,
            identity: Some(Identity {
                provider: "main".into(),
                issuer: "https://iss".into(),
                subject: "alice".into(),
                claims,
            }),
            jwt: Some(JwtDecision {
                outcome: filter_common::JwtOutcome::Denied,
                reason: "insufficient_scope".into(),
                status: Some(403),
            }),
            rate_limit: None,
        };
        let e = serde_json::to_value(build(&c, &cap, &info, &ctx)).unwrap();
        assert_eq!(e["@timestamp"], "1970-01-01T00:00:01.000Z");
        assert_eq!(e["event"]["outcome"], "failure");
        assert_eq!(e["event"]["reason"], "insufficient_scope");
        assert_eq!(e["event"]["duration"], 1_500_000);
        assert_eq!(e["audit"]["schema_version"], "1");
        assert_eq!(e["http"]["request"]["id"], "rid-1");
        assert_eq!(e["http"]["response"]["status_code"], 401);
        assert_eq!(e["http"]["version"], "1.1");
        assert_eq!(e["url"]["domain"], "api.example.com");
        assert_eq!(e["url"]["port"], 8443);
        assert_eq!(e["url"]["path"], "/api/v1");
        assert_eq!(e["url"]["query"], "page=2");
        assert_eq!(e["source"]["ip"], "10.0.0.1");
        assert_eq!(e["source"]["port"], 5555);
        assert_eq!(e["user"]["id"], "alice");
        assert_eq!(
            e["user"]["claims"],
            json!({"scope": "read", "big": "[truncated]"})
        );
        assert_eq!(e["decision"]["jwt"]["reason"], "insufficient_scope");
        assert_eq!(e["labels"]["x_tenant"], "acme");
        assert_eq!(e["user_agent"]["original"], "curl/8");
        assert!(e.get("tls").is_none());
        let text = e.to_string();
        for secret in ["s3cret", jwt, "Bearer", "email"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }

    #[test]
    fn sealed_line_is_canonical_and_verifies() {
        use crate::hash_chain::{canonical, event_hash, Chain};
        let c = config();
        let h = FakeHost::request("GET", "/p?page=1", "h:1", &[("x-tenant", "t")]);
        let cap = Captured::read(&c, &h, &RequestInfo::from_host(&h), true);
        let info = StreamInfo {
            response_code: Some(200),
            source_address: Some("1.2.3.4:5".into()),
            peer_uri_san: Some("spiffe://x".into()),
            peer_subject: Some("CN=x".into()),
            cluster: Some("c".into()),
            response_code_details: Some("via_upstream".into()),
            route: Some("r".into()),
            upstream_address: Some("u:1".into()),
            protocol: Some("HTTP/2".into()),
            request_bytes: Some(1),
            response_bytes: Some(2),
            duration_nanos: Some(3),
            request_id: Some("id".into()),
            ..Default::default()
        };
        let mut claims = serde_json::Map::new();
        claims.insert("scope".into(), json!({"z": [{"b": 1, "a": 2}], "a": 1.5}));
        let ctx = RequestContext {
            identity: Some(Identity {
                provider: "p".into(),
                issuer: "i".into(),
                subject: "s".into(),
                claims,
            }),
            jwt: Some(JwtDecision {
                outcome: filter_common::JwtOutcome::Allowed,
                reason: "ok".into(),
                status: Some(200),
            }),
            rate_limit: Some(RateLimitDecision {
                outcome: filter_common::RateLimitOutcome::Invalid,
                rule: Some("r".into()),
                reason: Some(RateLimitReason::AmbiguousKey),
            }),
            ..Default::default()
        };
        let mut chain = Chain::new("n/1");
        for _ in 0..2 {
            let mut e = build(&c, &cap, &info, &ctx);
            let (_, line) = seal(&mut chain, &mut e);
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            // Every field is present, so every struct's order is checked.
            assert!(v["tls"].is_object() && v["user"]["claims"].is_object());
            assert_eq!(line.as_bytes(), canonical(&v), "field order drifted");
            assert_eq!(v["audit"]["hash"].as_str().unwrap(), event_hash(&v));
        }
    }

    #[test]
    fn hostile_input_is_bounded() {
        let c = config();
        let huge = "A".repeat(100_000);
        let h = FakeHost::request(
            "GET",
            &format!("/{huge}"),
            "h",
            &[("user-agent", &huge), ("x-tenant", &huge)],
        );
        let req = RequestInfo::from_host(&h);
        let cap = Captured::read(&c, &h, &req, true);
        let e = build(&c, &cap, &StreamInfo::default(), &RequestContext::default());
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.len() < 1000, "{}", text.len());
        assert_eq!(e.event.outcome, "unknown");
    }

    #[test]
    fn rate_limited_and_mtls() {
        let c = config();
        let h = FakeHost::request("GET", "/", "h", &[]);
        let cap = Captured::read(&c, &h, &RequestInfo::from_host(&h), true);
        let info = StreamInfo {
            response_code: Some(429),
            peer_uri_san: Some("spiffe://td/ns/a/sa/b".into()),
            ..Default::default()
        };
        let ctx = RequestContext {
            rate_limit: Some(RateLimitDecision {
                outcome: filter_common::RateLimitOutcome::Limited,
                rule: Some("per_user".into()),
                reason: Some(RateLimitReason::OverLimit),
            }),
            ..Default::default()
        };
        let e = serde_json::to_value(build(&c, &cap, &info, &ctx)).unwrap();
        assert_eq!(e["event"]["reason"], "rate_limited");
        let mut invalid = ctx.clone();
        invalid.rate_limit = Some(RateLimitDecision {
            outcome: filter_common::RateLimitOutcome::Invalid,
            rule: Some("per_key".into()),
            reason: Some(RateLimitReason::AmbiguousKey),
        });
        let bad = serde_json::to_value(build(&c, &cap, &info, &invalid)).unwrap();
        assert_eq!(bad["event"]["outcome"], "failure");
        assert_eq!(bad["event"]["reason"], "ambiguous_key");
        assert_eq!(bad["decision"]["rate_limit"]["reason"], "ambiguous_key");
        assert_eq!(e["decision"]["rate_limit"]["rule"], "per_user");
        assert_eq!(
            e["tls"]["client"]["x509"]["alternative_names"][0],
            "spiffe://td/ns/a/sa/b"
        );
    }
}
