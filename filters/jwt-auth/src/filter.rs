//! The filter's core: one [`JwtAuth`] per worker, and [`JwtAuth::check`], a
//! function from (request, context, clock) to a decision. It strips headers
//! a client must not set, finds the rule, verifies what the rule requires,
//! checks claim conditions, forwards claims, and writes `ctx.identity` and
//! `ctx.jwt`. It never touches proxy-wasm.

use crate::config::{Config, Provider};
use crate::extractor::{extract, remove_param, Location, MAX_TOKENS};
use crate::jws::{payload_b64, Jws};
use crate::key_store::KeyStore;
use crate::requirements::{Outcome, ProviderOutcome};
use crate::response::Rejection;
use crate::status::{Reason, METRIC_SEND_FAILED};
use crate::token_cache::{cache_key, TokenCache};
use crate::verifier::{self, SignatureBackend, VerifiedBy};
use filter_common::identity::{Identity, JwtDecision, IDENTITY_KEY, JWT_DECISION_KEY};
use filter_common::{
    timed, HostError, HttpHost, JwtOutcome, Level, Metrics, RequestContext, RequestInfo,
};
use serde_json::{Map, Value};
use std::rc::Rc;

/// Most keys tried for one token without a `kid`.
const MAX_KEY_TRIES: usize = 8;
/// The property Envoy gives for the mTLS peer's URI SAN.
pub const PEER_URI_SAN: [&str; 2] = ["connection", "uri_san_peer_certificate"];

/// Whether a check may ask the caller to wait for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// First look, or keys changed while waiting: may return [`Check::Wait`].
    MayWait,
    /// The wait is over: decide with what we have (503 if keys never came).
    Final,
}

/// What the caller must do with the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Go on to the next filter (`ctx.identity` set if a token verified).
    Continue,
    /// A rejection was sent, or the proxy refused to send it (counted in
    /// `jwt_auth.send_failed`). Either way the request must stay paused:
    /// without a response Envoy ends it by its stream timeout or the
    /// client's reset, and it never reaches the upstream.
    Responded(Reason),
    /// Hold the request until keys change or until `deadline` (host clock,
    /// nanoseconds), then check again.
    Wait { deadline: u64 },
}

/// A token that verified.
#[derive(Debug, Clone)]
struct Verified {
    provider: usize,
    payload: Rc<Map<String, Value>>,
    token: Vec<u8>,
    /// Every place a token of this provider was found (all verified): with
    /// `forward: false` none of them may reach the upstream.
    locations: Vec<Location>,
}

/// Per-worker state: config, keys, verified-token cache.
#[derive(Debug)]
pub struct JwtAuth {
    pub config: Rc<Config>,
    pub keys: KeyStore,
    cache: TokenCache,
}

impl JwtAuth {
    pub fn new(config: Rc<Config>) -> Self {
        let keys = KeyStore::new(&config);
        let cache = TokenCache::new(config.cache_max_entries, config.cache_max_bytes);
        JwtAuth {
            config,
            keys,
            cache,
        }
    }

    /// Checks one request. Call again (same `ctx`) after a [`Check::Wait`].
    pub fn check(
        &mut self,
        host: &mut dyn HttpHost,
        ctx: &mut RequestContext,
        crypto: &dyn SignatureBackend,
        metrics: &mut dyn Metrics,
        mode: Mode,
    ) -> Check {
        let config = self.config.clone();
        // All headers in one read; later steps look here, not at the host.
        let mut headers = host.request_headers();
        for h in &config.owned_headers {
            if headers.iter().any(|(k, _)| k == h) {
                if let Err(e) = host.remove_request_header(h) {
                    return self.host_error(host, ctx, e, metrics);
                }
                headers.retain(|(k, _)| k != h);
            }
        }
        if ctx.request.path.is_empty() && ctx.request.method.is_empty() {
            ctx.request = request_info(&headers);
        }
        let now_nanos = host.now_nanos();
        let now = i64::try_from(now_nanos / 1_000_000_000).unwrap_or(i64::MAX);
        let Some(rule) = config
            .rules
            .iter()
            .find(|r| r.matcher.matches(&ctx.request, host))
        else {
            return self.pass(ctx, None, metrics);
        };
        let mut peer = None;
        if !rule.peer_principals.is_empty() {
            let san = host
                .property(&PEER_URI_SAN)
                .and_then(|v| String::from_utf8(v).ok());
            match san {
                Some(s) if principal_allowed(&rule.peer_principals, &s) => peer = Some(s),
                _ => return self.deny(host, ctx, Reason::PeerNotAllowed, metrics),
            }
        }
        let outcome = match &rule.requires {
            None => Outcome::Allowed(Vec::new()),
            Some(req) => {
                let n = config.providers.len();
                let mut memo: Vec<Option<ProviderOutcome<Verified>>> = vec![None; n];
                let mut verify = |p: usize| -> ProviderOutcome<Verified> {
                    if let Some(Some(done)) = memo.get(p) {
                        return done.clone();
                    }
                    let out = self
                        .verify_provider(p, &headers, ctx, crypto, metrics, mode, now_nanos, now);
                    if let Some(slot) = memo.get_mut(p) {
                        *slot = Some(out.clone());
                    }
                    out
                };
                req.evaluate(n, &mut verify)
            }
        };
        let verified = match outcome {
            Outcome::Allowed(v) => v,
            Outcome::Missing => return self.deny(host, ctx, Reason::TokenMissing, metrics),
            Outcome::Failed(r) => return self.deny(host, ctx, r, metrics),
            Outcome::NeedKeys if mode == Mode::MayWait => {
                let mut wanted = Vec::new();
                if let Some(req) = &rule.requires {
                    req.providers(config.providers.len(), &mut wanted);
                }
                let wait = wanted
                    .iter()
                    .map(|p| self.keys.wait_for(*p))
                    .max()
                    .unwrap_or(0);
                return Check::Wait {
                    deadline: now_nanos.saturating_add(wait),
                };
            }
            Outcome::NeedKeys => return self.deny(host, ctx, Reason::KeysUnavailable, metrics),
        };
        if let Some(authz) = &rule.authorization {
            match verified.first() {
                None => return self.deny(host, ctx, Reason::TokenMissing, metrics),
                Some(v) if !authz.allows(&v.payload) => {
                    // The caller is known, just not allowed: the audit
                    // event of a 403 names who was refused.
                    let who = config
                        .providers
                        .get(v.provider)
                        .map(|p| identity(p, &v.payload));
                    let check = self.deny(host, ctx, Reason::InsufficientScope, metrics);
                    ctx.identity = who;
                    return check;
                }
                Some(_) => {}
            }
        }
        for v in &verified {
            if let Some(p) = config.providers.get(v.provider) {
                if let Err(e) = forward(p, v, host, ctx) {
                    return self.host_error(host, ctx, e, metrics);
                }
            }
        }
        let identity = match verified.first() {
            Some(v) => config
                .providers
                .get(v.provider)
                .map(|p| identity(p, &v.payload)),
            None => peer.map(|s| Identity {
                provider: "peer".to_string(),
                issuer: String::new(),
                subject: s,
                claims: Map::new(),
            }),
        };
        self.pass(ctx, identity, metrics)
    }

    fn pass(
        &mut self,
        ctx: &mut RequestContext,
        identity: Option<Identity>,
        metrics: &mut dyn Metrics,
    ) -> Check {
        let (outcome, metric) = if identity.is_some() {
            (JwtOutcome::Allowed, "jwt_auth.allowed")
        } else {
            (JwtOutcome::Unauthenticated, "jwt_auth.unauthenticated")
        };
        // A static name: this runs on every request.
        metrics.increment(metric, 1);
        ctx.identity = identity;
        ctx.jwt = Some(JwtDecision {
            outcome,
            reason: String::new(),
            status: None,
        });
        Check::Continue
    }

    /// The proxy refused a header change this filter relies on (a forged
    /// identity header may still be there): 500, never continue.
    fn host_error(
        &mut self,
        host: &mut dyn HttpHost,
        ctx: &mut RequestContext,
        err: HostError,
        metrics: &mut dyn Metrics,
    ) -> Check {
        host.log(Level::Error, &format!("jwt_auth: {err}: answering 500"));
        self.deny(host, ctx, Reason::HostError, metrics)
    }

    /// Rejects the request with `reason` (also used by the glue, e.g. when
    /// too many requests wait for keys).
    pub fn deny(
        &mut self,
        host: &mut dyn HttpHost,
        ctx: &mut RequestContext,
        reason: Reason,
        metrics: &mut dyn Metrics,
    ) -> Check {
        let rejection = Rejection::new(reason, &self.config.realm);
        metrics.increment(&reason.metric(), 1);
        ctx.identity = None;
        ctx.jwt = Some(JwtDecision {
            outcome: if rejection.status >= 500 {
                JwtOutcome::Error
            } else {
                JwtOutcome::Denied
            },
            reason: reason.label().to_string(),
            status: Some(rejection.status),
        });
        if let Err(e) = rejection.send(host) {
            metrics.increment(METRIC_SEND_FAILED, 1);
            host.log(
                Level::Error,
                &format!(
                    "jwt_auth: {e}: the {} reply was not sent; the request stays paused",
                    rejection.status
                ),
            );
        }
        Check::Responded(reason)
    }

    #[allow(clippy::too_many_arguments)]
    fn verify_provider(
        &mut self,
        p: usize,
        headers: &[(String, Vec<u8>)],
        ctx: &RequestContext,
        crypto: &dyn SignatureBackend,
        metrics: &mut dyn Metrics,
        mode: Mode,
        now_nanos: u64,
        now: i64,
    ) -> ProviderOutcome<Verified> {
        let config = self.config.clone();
        let Some(prov) = config.providers.get(p) else {
            return ProviderOutcome::Missing;
        };
        let found = extract(&prov.locations, headers, &ctx.request);
        if found.is_empty() {
            return ProviderOutcome::Missing;
        }
        if found.len() > MAX_TOKENS {
            return ProviderOutcome::Failed(Reason::TooManyTokens);
        }
        let mut first: Option<Verified> = None;
        let mut locations: Vec<Location> = Vec::new();
        for f in found {
            match self.verify_token(p, prov, &f.token, crypto, metrics, mode, now_nanos, now) {
                Ok(payload) => {
                    for l in &f.locations {
                        if !locations.contains(l) {
                            locations.push(l.clone());
                        }
                    }
                    first.get_or_insert(Verified {
                        provider: p,
                        payload,
                        token: f.token,
                        locations: Vec::new(),
                    });
                }
                Err(outcome) => return outcome,
            }
        }
        match first {
            Some(v) => ProviderOutcome::Verified(Verified { locations, ..v }),
            None => ProviderOutcome::Missing,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn verify_token(
        &mut self,
        p: usize,
        prov: &Provider,
        token: &[u8],
        crypto: &dyn SignatureBackend,
        metrics: &mut dyn Metrics,
        mode: Mode,
        now_nanos: u64,
        now: i64,
    ) -> Result<Rc<Map<String, Value>>, ProviderOutcome<Verified>> {
        use ProviderOutcome::{Failed, NeedKeys};
        let version = self.keys.version(p);
        let key = timed!("jwt.cache_key", cache_key(p, token));
        if self.config.cache_max_entries > 0 {
            if let Some(payload) = self.cache.get(&key, version, now) {
                metrics.increment("jwt_auth.cache.hit", 1);
                prov.claims.check(&payload, now).map_err(Failed)?;
                return Ok(payload);
            }
        }
        let jws = timed!("jwt.parse", Jws::parse(token)).map_err(Failed)?;
        if !prov.algorithms.contains(&jws.alg) {
            return Err(Failed(Reason::AlgNotAllowed));
        }
        let remote = self.keys.is_remote(p);
        let Some(set) = self.keys.set(p).cloned() else {
            return Err(if remote && mode == Mode::MayWait {
                NeedKeys
            } else {
                Failed(Reason::KeysUnavailable)
            });
        };
        if let Some(kid) = &jws.kid {
            if !set.has_kid(kid) {
                let wait =
                    remote && mode == Mode::MayWait && self.keys.request_refetch(p, now_nanos);
                return Err(if wait {
                    NeedKeys
                } else {
                    Failed(Reason::UnknownKid)
                });
            }
        }
        // Counted here, not at the lookup: a request that waits for keys
        // looks twice but is verified once.
        if self.config.cache_max_entries > 0 {
            metrics.increment("jwt_auth.cache.miss", 1);
        }
        let input = jws.signing_input(token);
        let mut tried = false;
        let mut valid = false;
        for k in set
            .candidates(jws.kid.as_deref(), jws.alg)
            .take(MAX_KEY_TRIES)
        {
            tried = true;
            let (ok, by) = timed!(
                "jwt.verify_signature",
                verifier::verify(crypto, jws.alg, k, input, &jws.signature)
            );
            metrics.increment(
                match by {
                    VerifiedBy::Host => "jwt_auth.verify.host",
                    VerifiedBy::Pure => "jwt_auth.verify.pure",
                },
                1,
            );
            if ok {
                valid = true;
                break;
            }
        }
        if !tried {
            return Err(Failed(Reason::NoMatchingKey));
        }
        if !valid {
            return Err(Failed(Reason::BadSignature));
        }
        let payload = Rc::new(jws.payload);
        let times = prov.claims.check(&payload, now).map_err(Failed)?;
        self.cache
            .insert(key, version, times.exp, now, payload.clone(), token.len());
        Ok(payload)
    }
}

/// Writes the decision as Envoy filter state (`wasm.portcullis.identity`,
/// `wasm.portcullis.jwt`) for later filters and access logs. Clients cannot
/// write filter state, so they cannot forge it.
pub fn publish(host: &mut dyn HttpHost, ctx: &RequestContext) {
    if let Some(id) = &ctx.identity {
        if let Ok(json) = serde_json::to_vec(id) {
            host.set_property(&[IDENTITY_KEY], &json);
        }
    }
    if let Some(d) = &ctx.jwt {
        if let Ok(json) = serde_json::to_vec(d) {
            host.set_property(&[JWT_DECISION_KEY], &json);
        }
    }
}

/// The pseudo-headers, as [`RequestInfo::from_host`] reads them, from the
/// headers already in hand.
fn request_info(headers: &[(String, Vec<u8>)]) -> RequestInfo {
    let text = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    let full = text(":path");
    let (path, query) = filter_common::request::split_query(&full);
    RequestInfo {
        method: text(":method"),
        path: path.to_string(),
        query: query.map(str::to_string),
        host: text(":authority").to_ascii_lowercase(),
    }
}

fn principal_allowed(allowed: &[String], san: &str) -> bool {
    allowed.iter().any(|a| match a.strip_suffix('*') {
        Some(prefix) => san.starts_with(prefix),
        None => a == san,
    })
}

fn identity(p: &Provider, payload: &Map<String, Value>) -> Identity {
    let text = |n: &str| {
        payload
            .get(n)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut claims = Map::new();
    for (_, claim) in &p.claim_to_headers {
        if let Some(v) = crate::authorization::lookup(payload, claim) {
            claims.insert(claim.clone(), v.clone());
        }
    }
    Identity {
        provider: p.name.clone(),
        issuer: text("iss"),
        subject: text("sub"),
        claims,
    }
}

/// A claim as a header value: strings as they are, the rest as JSON. A
/// string with control characters is not sent (it could split headers).
fn header_value(v: &Value) -> Option<String> {
    let s = match v {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    (!s.bytes().any(|b| b < 0x20 && b != b'\t' || b == 0x7f)).then_some(s)
}

/// Writes the claim headers and strips the token (unless `forward`). Any
/// refused write is returned: the caller must not let the request go on.
fn forward(
    p: &Provider,
    v: &Verified,
    host: &mut dyn HttpHost,
    ctx: &mut RequestContext,
) -> Result<(), HostError> {
    for (header, claim) in &p.claim_to_headers {
        if let Some(val) = crate::authorization::lookup(&v.payload, claim).and_then(header_value) {
            host.set_request_header(header, val.as_bytes())?;
        }
    }
    if let (Some(header), Some(b64)) = (&p.forward_payload_header, payload_b64(&v.token)) {
        host.set_request_header(header, b64)?;
    }
    if p.forward {
        return Ok(());
    }
    for location in &v.locations {
        match location {
            Location::Header { name, .. } => host.remove_request_header(name)?,
            Location::Param(name) => {
                if let Some(q) = ctx.request.query.clone() {
                    let path = remove_param(&ctx.request.path, &q, name);
                    host.set_request_header(":path", path.as_bytes())?;
                    ctx.request.query = path.split_once('?').map(|(_, q)| q.to_string());
                }
            }
            // Stricter than Envoy, which leaves the cookie: the token stops
            // here, the session's other cookies go on.
            Location::Cookie(name) => {
                match crate::extractor::without_cookie(&host.request_headers(), name) {
                    Some(rest) => host.set_request_header("cookie", &rest)?,
                    None => host.remove_request_header("cookie")?,
                }
            }
        }
    }
    Ok(())
}

/// Defines every counter this filter increments, so each shows in Envoy's
/// stats at 0 from the start (call from `on_configure`, in every VM).
pub fn define_metrics(metrics: &mut dyn Metrics) {
    for name in [
        "jwt_auth.allowed",
        "jwt_auth.unauthenticated",
        "jwt_auth.cache.hit",
        "jwt_auth.cache.miss",
        "jwt_auth.verify.host",
        "jwt_auth.verify.pure",
        "jwt_auth.jwks.fetch_ok",
        "jwt_auth.jwks.fetch_failed",
        METRIC_SEND_FAILED,
        crate::config::OCT_SKIPPED_METRIC,
    ] {
        metrics.increment(name, 0);
    }
    for reason in Reason::ALL {
        metrics.increment(&reason.metric(), 0);
    }
}

#[cfg(test)]
mod tests;
