//! Build: captured values and the filters' decisions in, the event out.
//! Pure: no host, no clock, no chain (sealing is the next step).

use crate::capture::{Captured, StreamInfo};
use crate::config::Config;
use crate::event::{
    AuditEvent, AuditInfo, Decision, EnvoyInfo, EventInfo, EventOutcome, Http, HttpRequest,
    HttpResponse, Source, Tls, TlsClient, Url, User, UserAgent, SCHEMA_VERSION, X509,
};
use crate::redact::truncate;
use crate::time::rfc3339_millis;
use filter_common::identity::{Identity, JwtDecision, RateLimitDecision};
use filter_common::{RateLimitReason, RequestContext};

/// Builds the event (without its chain fields).
pub fn build(
    config: &Config,
    cap: &Captured,
    info: &StreamInfo,
    ctx: &RequestContext,
) -> AuditEvent {
    let status = info.response_code.filter(|c| *c > 0);
    let refusal = refusal_reason(ctx.jwt.as_ref(), ctx.rate_limit.as_ref());
    let outcome = match status {
        _ if refusal.is_some() => EventOutcome::Failure,
        None => EventOutcome::Unknown,
        Some(s) if s >= 400 => EventOutcome::Failure,
        Some(_) => EventOutcome::Success,
    };
    let reason = match refusal {
        Some(r) => Some(r),
        None if outcome != EventOutcome::Success => info.response_code_details.clone(),
        None => None,
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
        decision: Decision {
            jwt: ctx.jwt.clone(),
            rate_limit: ctx.rate_limit.clone(),
        },
        envoy: EnvoyInfo {
            response_code_details: info.response_code_details.clone(),
            cluster: info.cluster.clone(),
            route: info.route.clone(),
            upstream_host: info.upstream_address.clone(),
        },
        labels: cap.labels.clone(),
    }
}

/// `event.reason` of a request a filter refused: jwt-auth's reason (its
/// outcome's label when it gave none), else rate-limit's (`rate_limited`
/// for an empty bucket, as before reasons were passed). `None` if neither
/// refused it. The one place that reads the decisions' `reason`.
fn refusal_reason(
    jwt: Option<&JwtDecision>,
    rate_limit: Option<&RateLimitDecision>,
) -> Option<String> {
    if let Some(j) = jwt.filter(|j| j.outcome.refused()) {
        return Some(if j.reason.is_empty() {
            j.outcome.label().to_string()
        } else {
            j.reason.clone()
        });
    }
    let r = rate_limit.filter(|r| r.refused())?;
    Some(match r.reason {
        None | Some(RateLimitReason::OverLimit) => "rate_limited".to_string(),
        Some(other) => other.label().to_string(),
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_decision;
    use filter_common::testing::FakeHost;
    use filter_common::RequestInfo;
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
            jwt: Some(test_decision(
                json!({"outcome": "denied", "reason": "insufficient_scope", "status": 403}),
            )),
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
        assert_eq!(e.event.outcome, EventOutcome::Unknown);
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
            rate_limit: Some(test_decision(
                json!({"outcome": "limited", "rule": "per_user", "reason": "over_limit"}),
            )),
            ..Default::default()
        };
        let e = serde_json::to_value(build(&c, &cap, &info, &ctx)).unwrap();
        assert_eq!(e["event"]["reason"], "rate_limited");
        let mut invalid = ctx.clone();
        invalid.rate_limit = Some(test_decision(
            json!({"outcome": "invalid", "rule": "per_key", "reason": "ambiguous_key"}),
        ));
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
