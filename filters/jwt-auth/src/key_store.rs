//! Each provider's current key set, and the remote JWKS life cycle:
//! fetched by one VM for all workers (a lease in shared data), published in
//! shared data, refreshed before `cache_duration` ends, kept when a refresh
//! fails (stale-if-error), refetched early when a token names an unknown
//! `kid` (rate-limited per provider across workers).
//!
//! Pure logic over [`SharedData`] and [`HttpDispatch`]; the glue calls
//! [`KeyStore::on_tick`] and [`KeyStore::on_response`].

use crate::config::{Config, Keys, RemoteJwks};
use crate::key_set::{JwksOptions, KeySet};
use filter_common::{CasOutcome, Level, Metrics, SharedData};
use sha2::{Digest, Sha256};
use std::rc::Rc;

const NANOS: u64 = 1_000_000_000;

/// Sends a GET through an Envoy cluster; `Some(token)` if dispatched.
pub trait HttpDispatch {
    fn get(&mut self, cluster: &str, authority: &str, path: &str, timeout_ms: u64) -> Option<u32>;
}

/// A provider's keys as this worker sees them.
#[derive(Debug, Default)]
pub struct ProviderKeys {
    pub set: Option<Rc<KeySet>>,
    /// Bumped when the set's content changes (invalidates cached tokens).
    pub version: u64,
    remote: Option<Remote>,
    /// Uses the keys of this provider instead (a `provider_and_audiences`
    /// copy): one fetch and one set for both.
    alias: Option<usize>,
}

/// What an in-flight call fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Discovery,
    Jwks,
}

#[derive(Debug)]
struct Remote {
    cfg: RemoteJwks,
    /// `(authority, path)` of the JWKS; found by discovery when configured.
    target: Option<(String, String)>,
    record_key: String,
    lease_key: String,
    /// CAS of the shared record we last read.
    seen_cas: Option<u32>,
    digest: [u8; 32],
    fetched_at: u64,
    in_flight: Option<(u32, u64, Step)>,
    /// When an unknown `kid` asked for a refetch (still pending).
    refetch_wanted: Option<u64>,
    last_forced: u64,
}

/// Every provider's keys on this worker.
#[derive(Debug, Default)]
pub struct KeyStore {
    pub providers: Vec<ProviderKeys>,
}

/// What a tick or a fetch response changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changed {
    /// A provider's record was updated (new set, or the same set refetched),
    /// or a pending refetch was refused: waiting requests should re-check.
    pub wake: bool,
}

/// Shared data keys are per `vm_id`; ours are fixed by the config, so the
/// key space is bounded.
fn keys_for(name: &str, r: &RemoteJwks) -> (String, String) {
    let mut h = Sha256::new();
    h.update(r.cluster.as_bytes());
    h.update([0]);
    h.update(r.authority.as_bytes());
    h.update(r.path.as_bytes());
    if let Some(d) = &r.discovery {
        h.update(d.authority.as_bytes());
        h.update(d.path.as_bytes());
    }
    let d = h.finalize();
    let tag: String = d.iter().take(6).map(|b| format!("{b:02x}")).collect();
    (
        format!("portcullis.jwt_auth.jwks.{name}.{tag}"),
        format!("portcullis.jwt_auth.lease.{name}.{tag}"),
    )
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

fn lease_value(until: u64, last_forced: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&until.to_le_bytes());
    v[8..].copy_from_slice(&last_forced.to_le_bytes());
    v
}

impl KeyStore {
    pub fn new(config: &Config) -> Self {
        let providers = config
            .providers
            .iter()
            .map(|p| match &p.keys {
                Keys::Local(set) => ProviderKeys {
                    set: Some(set.clone()),
                    version: 1,
                    remote: None,
                    alias: None,
                },
                Keys::SameAs(of) => ProviderKeys {
                    alias: Some(*of),
                    ..ProviderKeys::default()
                },
                Keys::Remote(r) => {
                    let (record_key, lease_key) = keys_for(&p.name, r);
                    ProviderKeys {
                        set: None,
                        version: 0,
                        remote: Some(Remote {
                            target: r
                                .discovery
                                .is_none()
                                .then(|| (r.authority.clone(), r.path.clone())),
                            cfg: r.clone(),
                            record_key,
                            lease_key,
                            seen_cas: None,
                            digest: [0; 32],
                            fetched_at: 0,
                            in_flight: None,
                            refetch_wanted: None,
                            last_forced: 0,
                        }),
                        alias: None,
                    }
                }
            })
            .collect();
        KeyStore { providers }
    }

    /// The provider whose keys `provider` uses (itself, unless a copy).
    fn owner(&self, provider: usize) -> usize {
        self.providers
            .get(provider)
            .and_then(|p| p.alias)
            .unwrap_or(provider)
    }

    pub fn set(&self, provider: usize) -> Option<&Rc<KeySet>> {
        self.providers.get(self.owner(provider))?.set.as_ref()
    }

    pub fn version(&self, provider: usize) -> u64 {
        self.providers
            .get(self.owner(provider))
            .map_or(0, |p| p.version)
    }

    pub fn is_remote(&self, provider: usize) -> bool {
        self.providers
            .get(self.owner(provider))
            .is_some_and(|p| p.remote.is_some())
    }

    /// How long a request may wait for this provider's keys (nanoseconds).
    pub fn wait_for(&self, provider: usize) -> u64 {
        self.providers
            .get(self.owner(provider))
            .and_then(|p| p.remote.as_ref())
            .map_or(0, |r| r.cfg.timeout.nanos())
    }

    /// Whether something is pending that ticks should watch closely.
    pub fn busy(&self) -> bool {
        self.providers.iter().any(|p| {
            p.remote.as_ref().is_some_and(|r| {
                p.set.is_none() || r.in_flight.is_some() || r.refetch_wanted.is_some()
            })
        })
    }

    /// A token named an unknown `kid`: asks for one early refetch. `true`
    /// if one is pending (the request may wait for it), `false` if the rate
    /// limit refuses (the request is rejected now).
    pub fn request_refetch(&mut self, provider: usize, now: u64) -> bool {
        let owner = self.owner(provider);
        let Some(r) = self
            .providers
            .get_mut(owner)
            .and_then(|p| p.remote.as_mut())
        else {
            return false;
        };
        if r.refetch_wanted.is_some() {
            return true;
        }
        if r.last_forced != 0 && now.saturating_sub(r.last_forced) < r.cfg.refetch_interval.nanos()
        {
            return false;
        }
        r.refetch_wanted = Some(now);
        r.last_forced = now;
        true
    }

    /// Picks up sets published by other workers, and starts a fetch when
    /// one is due and no other VM holds the lease.
    pub fn on_tick(
        &mut self,
        now: u64,
        shared: &mut dyn SharedData,
        http: &mut dyn HttpDispatch,
        metrics: &mut dyn Metrics,
        log: &dyn Fn(Level, &str),
    ) -> Changed {
        let mut changed = Changed::default();
        for p in &mut self.providers {
            let Some(r) = p.remote.as_mut() else {
                continue;
            };
            if sync(&mut p.set, &mut p.version, r, shared, log) {
                changed.wake = true;
            }
            if let Some((_, started, _)) = r.in_flight {
                // Envoy answers every call (a timeout is an answer); this
                // only guards against a lost one.
                if now.saturating_sub(started) < r.cfg.timeout.nanos().saturating_add(5 * NANOS) {
                    continue;
                }
                r.in_flight = None;
            }
            let fresh_for = r.cfg.cache_duration.nanos() / 5 * 4;
            let refresh_due = p.set.is_none() || now >= r.fetched_at.saturating_add(fresh_for);
            let forced = r.refetch_wanted.is_some();
            if !refresh_due && !forced {
                continue;
            }
            // The lease: one VM fetches; it also carries the global time of
            // the last forced refetch and the backoff after a failure.
            if shared.get(&r.lease_key).is_none() {
                // Creates the key only if absent (a non-zero CAS conflicts
                // with any existing value).
                let _ = shared.set(&r.lease_key, &lease_value(0, 0), Some(u32::MAX));
            }
            let Some((lease, cas)) = shared.get(&r.lease_key) else {
                continue;
            };
            let (until, shared_forced) = (le_u64(&lease, 0), le_u64(&lease, 8));
            if until > now {
                continue;
            }
            let forced_ok = forced
                && (shared_forced == 0
                    || now.saturating_sub(shared_forced) >= r.cfg.refetch_interval.nanos());
            if !refresh_due && !forced_ok {
                // Another worker forced one recently: the rate limit holds.
                r.refetch_wanted = None;
                changed.wake = true;
                continue;
            }
            let hold = now
                .saturating_add(r.cfg.timeout.nanos())
                .saturating_add(NANOS);
            let last_forced = if forced_ok { now } else { shared_forced };
            if shared.set(&r.lease_key, &lease_value(hold, last_forced), Some(cas))
                != CasOutcome::Written
            {
                continue;
            }
            start_fetch(
                r,
                p.set.is_some(),
                now,
                last_forced,
                shared,
                http,
                metrics,
                log,
            );
        }
        changed
    }

    /// A fetch answered. `None` if `token` is not one of ours. A discovery
    /// answer starts the JWKS fetch it points to.
    #[allow(clippy::too_many_arguments)]
    pub fn on_response(
        &mut self,
        token: u32,
        status: Option<u32>,
        body: Option<&[u8]>,
        now: u64,
        shared: &mut dyn SharedData,
        http: &mut dyn HttpDispatch,
        metrics: &mut dyn Metrics,
        log: &dyn Fn(Level, &str),
    ) -> Option<Changed> {
        let p = self.providers.iter_mut().find(|p| {
            p.remote
                .as_ref()
                .is_some_and(|r| r.in_flight.is_some_and(|(t, _, _)| t == token))
        })?;
        let r = p.remote.as_mut()?;
        let step = r.in_flight.map(|(_, _, s)| s);
        r.in_flight = None;
        let last_forced = shared.get(&r.lease_key).map_or(0, |(v, _)| le_u64(&v, 8));
        if step == Some(Step::Discovery) {
            match discovered_jwks(r, status, body) {
                Ok(target) => {
                    r.target = Some(target);
                    start_fetch(
                        r,
                        p.set.is_some(),
                        now,
                        last_forced,
                        shared,
                        http,
                        metrics,
                        log,
                    );
                    return Some(Changed::default());
                }
                Err(e) => {
                    let message = format!(
                        "jwt_auth: OIDC discovery through `{}` failed: {e}",
                        r.cfg.cluster
                    );
                    fetch_failed(r, p.set.is_some(), now, last_forced, shared, metrics);
                    log(Level::Warn, &message);
                    return Some(Changed { wake: true });
                }
            }
        }
        let opts = JwksOptions {
            allow_oct: false,
            min_rsa_bits: r.cfg.min_rsa_bits,
            strict: false,
        };
        let parsed = match (status, body) {
            (Some(200), Some(b)) => KeySet::parse(b, opts).map(|set| (set, b)),
            (Some(200), None) => Err("empty body".to_string()),
            (Some(s), _) => Err(format!("status {s}")),
            (None, _) => Err("no response (timeout or connection failure)".to_string()),
        };
        match parsed {
            Ok((set, bytes)) => {
                for s in &set.skipped {
                    log(Level::Warn, &format!("jwt_auth: JWKS key skipped: {s}"));
                }
                let mut record = now.to_le_bytes().to_vec();
                record.extend_from_slice(bytes);
                let _ = shared.set(&r.record_key, &record, None);
                metrics.increment("jwt_auth.jwks.fetch_ok", 1);
                release(shared, r, 0, last_forced);
                sync(&mut p.set, &mut p.version, r, shared, log);
            }
            Err(e) => {
                let keeping = if p.set.is_some() {
                    "; keeping the last good key set"
                } else {
                    ""
                };
                let message = format!(
                    "jwt_auth: JWKS fetch from `{}` failed: {e}{keeping}",
                    r.cfg.cluster
                );
                fetch_failed(r, p.set.is_some(), now, last_forced, shared, metrics);
                log(Level::Warn, &message);
                if r.cfg.discovery.is_some() {
                    // The JWKS may have moved: discover again next time.
                    r.target = None;
                }
            }
        }
        Some(Changed { wake: true })
    }
}

/// Sends the next call: discovery when the JWKS location is unknown.
#[allow(clippy::too_many_arguments)]
fn start_fetch(
    r: &mut Remote,
    have_keys: bool,
    now: u64,
    last_forced: u64,
    shared: &mut dyn SharedData,
    http: &mut dyn HttpDispatch,
    metrics: &mut dyn Metrics,
    log: &dyn Fn(Level, &str),
) {
    let (step, authority, path) = match (&r.target, &r.cfg.discovery) {
        (Some((a, p)), _) => (Step::Jwks, a.clone(), p.clone()),
        (None, Some(d)) => (Step::Discovery, d.authority.clone(), d.path.clone()),
        (None, None) => return,
    };
    match http.get(&r.cfg.cluster, &authority, &path, r.cfg.timeout.0) {
        Some(token) => r.in_flight = Some((token, now, step)),
        None => {
            metrics.increment("jwt_auth.jwks.fetch_failed", 1);
            log(
                Level::Warn,
                &format!(
                    "jwt_auth: cannot reach cluster `{}` for the JWKS",
                    r.cfg.cluster
                ),
            );
            release(shared, r, now + retry_delay(&r.cfg, have_keys), last_forced);
        }
    }
}

/// The `jwks_uri` of an OIDC configuration document, checked against the
/// issuer (OpenID Connect Discovery 1.0 §4.3).
fn discovered_jwks(
    r: &Remote,
    status: Option<u32>,
    body: Option<&[u8]>,
) -> Result<(String, String), String> {
    let Some(d) = &r.cfg.discovery else {
        return Err("no discovery configured".into());
    };
    let body = match (status, body) {
        (Some(200), Some(b)) if b.len() <= crate::key_set::MAX_JWKS_BYTES => b,
        (Some(200), _) => return Err("empty or oversized document".into()),
        (Some(s), _) => return Err(format!("status {s}")),
        (None, _) => return Err("no response (timeout or connection failure)".into()),
    };
    let doc: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| "the document is not JSON".to_string())?;
    if doc.get("issuer").and_then(|v| v.as_str()) != Some(d.issuer.as_str()) {
        return Err("the document names another issuer".into());
    }
    let uri = doc
        .get("jwks_uri")
        .and_then(|v| v.as_str())
        .ok_or("the document has no jwks_uri")?;
    crate::config::split_uri(uri).map_err(|e| format!("jwks_uri {e}"))
}

/// After a failure: retry soon while there are no keys, later when a stale
/// set is serving.
fn retry_delay(cfg: &RemoteJwks, have_keys: bool) -> u64 {
    if have_keys {
        (cfg.cache_duration.nanos() / 10).clamp(NANOS, 30 * NANOS)
    } else {
        NANOS
    }
}

/// A discovery or JWKS call failed: count it, hand the lease back until
/// the retry is due, and drop the pending unknown-`kid` refetch.
fn fetch_failed(
    r: &mut Remote,
    have_keys: bool,
    now: u64,
    last_forced: u64,
    shared: &mut dyn SharedData,
    metrics: &mut dyn Metrics,
) {
    metrics.increment("jwt_auth.jwks.fetch_failed", 1);
    let retry_at = now.saturating_add(retry_delay(&r.cfg, have_keys));
    release(shared, r, retry_at, last_forced);
    r.refetch_wanted = None;
}

fn release(shared: &mut dyn SharedData, r: &Remote, until: u64, last_forced: u64) {
    if let Some((_, cas)) = shared.get(&r.lease_key) {
        let _ = shared.set(&r.lease_key, &lease_value(until, last_forced), Some(cas));
    }
}

/// Reads the shared record; true if it changed since last seen.
fn sync(
    set: &mut Option<Rc<KeySet>>,
    version: &mut u64,
    r: &mut Remote,
    shared: &dyn SharedData,
    log: &dyn Fn(Level, &str),
) -> bool {
    let Some((record, cas)) = shared.get(&r.record_key) else {
        return false;
    };
    if r.seen_cas == Some(cas) || record.len() < 8 {
        return false;
    }
    r.seen_cas = Some(cas);
    let fetched_at = le_u64(&record, 0);
    let body = record.get(8..).unwrap_or_default();
    let digest: [u8; 32] = Sha256::digest(body).into();
    if digest != r.digest || set.is_none() {
        let opts = JwksOptions {
            allow_oct: false,
            min_rsa_bits: r.cfg.min_rsa_bits,
            strict: false,
        };
        match KeySet::parse(body, opts) {
            Ok(parsed) => {
                *set = Some(Rc::new(parsed));
                *version += 1;
                r.digest = digest;
            }
            Err(e) => {
                log(
                    Level::Error,
                    &format!("jwt_auth: shared JWKS unreadable: {e}"),
                );
                return false;
            }
        }
    }
    r.fetched_at = fetched_at;
    if r.refetch_wanted.is_some_and(|t| fetched_at >= t) {
        r.refetch_wanted = None;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{jwks, Key, KeyName};
    use filter_common::testing::{FakeMetrics, FakeSharedData};
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[derive(Default)]
    struct Calls {
        next: u32,
        sent: Vec<(String, String, String)>,
        refuse: bool,
    }
    impl HttpDispatch for Calls {
        fn get(&mut self, cluster: &str, authority: &str, path: &str, _t: u64) -> Option<u32> {
            if self.refuse {
                return None;
            }
            self.next += 1;
            self.sent
                .push((cluster.into(), authority.into(), path.into()));
            Some(self.next)
        }
    }

    fn config() -> Config {
        Config::parse(
            json!({"providers": {"p": {"remote_jwks": {
                "http_uri": {"uri": "http://idp:8081/jwks.json", "cluster": "jwks", "timeout": "1s"},
                "cache_duration": "100s", "refetch_interval": "30s"}}}})
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    struct World {
        shared: FakeSharedData,
        metrics: FakeMetrics,
    }

    fn tick(store: &mut KeyStore, w: &mut World, calls: &mut Calls, now: u64) -> Changed {
        store.on_tick(now, &mut w.shared, calls, &mut w.metrics, &|_, _| {})
    }

    fn answer(
        store: &mut KeyStore,
        w: &mut World,
        token: u32,
        status: u32,
        body: &str,
        now: u64,
    ) -> Option<Changed> {
        store.on_response(
            token,
            Some(status),
            Some(body.as_bytes()),
            now,
            &mut w.shared,
            &mut Calls::default(),
            &mut w.metrics,
            &|_, _| {},
        )
    }

    const S: u64 = NANOS;

    #[test]
    fn one_worker_fetches_for_all() {
        let cfg = config();
        let mut w = World {
            shared: FakeSharedData::default(),
            metrics: FakeMetrics::default(),
        };
        let (mut a, mut b) = (KeyStore::new(&cfg), KeyStore::new(&cfg));
        let (mut ca, mut cb) = (Calls::default(), Calls::default());
        tick(&mut a, &mut w, &mut ca, S);
        tick(&mut b, &mut w, &mut cb, S);
        assert_eq!(
            ca.sent,
            [("jwks".into(), "idp:8081".into(), "/jwks.json".into())]
        );
        assert!(cb.sent.is_empty(), "the lease is held");
        let set_a = jwks(&[Key::get(KeyName::RsaA)]);
        assert_eq!(
            answer(&mut a, &mut w, 1, 200, &set_a, S + 1),
            Some(Changed { wake: true })
        );
        assert!(a.set(0).is_some());
        assert_eq!(a.version(0), 1);
        assert_eq!(tick(&mut b, &mut w, &mut cb, 2 * S), Changed { wake: true });
        assert!(b.set(0).is_some());
        assert!(cb.sent.is_empty());
        assert_eq!(w.metrics.values["jwt_auth.jwks.fetch_ok"], 1);
        // Nothing to do until 80 % of cache_duration.
        tick(&mut a, &mut w, &mut ca, 79 * S);
        tick(&mut b, &mut w, &mut cb, 79 * S);
        assert_eq!(ca.sent.len() + cb.sent.len(), 1);
        tick(&mut b, &mut w, &mut cb, 82 * S);
        assert_eq!(cb.sent.len(), 1, "refreshed before cache_duration ends");
        // Same content: no new version, so cached tokens survive.
        answer(&mut b, &mut w, 1, 200, &set_a, 82 * S);
        assert_eq!(b.version(0), 1);
        assert_eq!(
            tick(&mut a, &mut w, &mut ca, 83 * S),
            Changed { wake: true }
        );
        assert_eq!(a.version(0), 1);
    }

    #[test]
    fn stale_if_error_and_garbage() {
        let cfg = config();
        let mut w = World {
            shared: FakeSharedData::default(),
            metrics: FakeMetrics::default(),
        };
        let mut a = KeyStore::new(&cfg);
        let mut c = Calls::default();
        tick(&mut a, &mut w, &mut c, S);
        answer(&mut a, &mut w, 1, 200, &jwks(&[Key::get(KeyName::RsaA)]), S);
        tick(&mut a, &mut w, &mut c, 90 * S);
        answer(&mut a, &mut w, 2, 503, "", 90 * S);
        assert!(a.set(0).is_some(), "the last good set stays");
        tick(&mut a, &mut w, &mut c, 91 * S);
        assert_eq!(c.sent.len(), 2, "backs off after a failure");
        tick(&mut a, &mut w, &mut c, 101 * S);
        assert_eq!(c.sent.len(), 3);
        answer(&mut a, &mut w, 3, 200, r#"{"keys":"garbage"}"#, 101 * S);
        tick(&mut a, &mut w, &mut c, 112 * S);
        let huge = format!(r#"{{"keys":[],"x":"{}"}}"#, "a".repeat(300_000));
        answer(&mut a, &mut w, 4, 200, &huge, 112 * S);
        assert!(a.set(0).is_some());
        assert_eq!(a.version(0), 1);
        assert_eq!(w.metrics.values["jwt_auth.jwks.fetch_failed"], 3);
        assert_eq!(
            answer(&mut a, &mut w, 99, 200, "{}", S),
            None,
            "not our call"
        );
    }

    #[test]
    fn no_keys_yet_retries_every_second() {
        let cfg = config();
        let mut w = World {
            shared: FakeSharedData::default(),
            metrics: FakeMetrics::default(),
        };
        let mut a = KeyStore::new(&cfg);
        let mut c = Calls::default();
        tick(&mut a, &mut w, &mut c, S);
        assert!(a.busy());
        a.on_response(
            1,
            None,
            None,
            S,
            &mut w.shared,
            &mut Calls::default(),
            &mut w.metrics,
            &|_, _| {},
        );
        tick(&mut a, &mut w, &mut c, S + S / 2);
        assert_eq!(c.sent.len(), 1);
        tick(&mut a, &mut w, &mut c, 2 * S + 1);
        assert_eq!(c.sent.len(), 2);
        c.refuse = true;
        a.on_response(
            2,
            None,
            None,
            2 * S + 1,
            &mut w.shared,
            &mut Calls::default(),
            &mut w.metrics,
            &|_, _| {},
        );
        tick(&mut a, &mut w, &mut c, 4 * S);
        assert_eq!(w.metrics.values["jwt_auth.jwks.fetch_failed"], 3);
    }

    #[test]
    fn unknown_kid_refetch_is_rate_limited_across_workers() {
        let cfg = config();
        let mut w = World {
            shared: FakeSharedData::default(),
            metrics: FakeMetrics::default(),
        };
        let (mut a, mut b) = (KeyStore::new(&cfg), KeyStore::new(&cfg));
        let (mut ca, mut cb) = (Calls::default(), Calls::default());
        tick(&mut a, &mut w, &mut ca, S);
        answer(&mut a, &mut w, 1, 200, &jwks(&[Key::get(KeyName::RsaA)]), S);
        tick(&mut b, &mut w, &mut cb, S);
        // A rotated-in key: worker A sees an unknown kid.
        assert!(a.request_refetch(0, 10 * S));
        assert!(a.request_refetch(0, 10 * S), "joins the pending refetch");
        tick(&mut a, &mut w, &mut ca, 10 * S);
        assert_eq!(ca.sent.len(), 2);
        answer(
            &mut a,
            &mut w,
            2,
            200,
            &jwks(&[Key::get(KeyName::RsaA), Key::get(KeyName::RsaB)]),
            10 * S,
        );
        assert_eq!(a.version(0), 2);
        assert!(!a.busy());
        // Worker B also wants one, 5 s later: refused by the shared limit.
        assert!(b.request_refetch(0, 15 * S));
        assert_eq!(
            tick(&mut b, &mut w, &mut cb, 15 * S),
            Changed { wake: true }
        );
        assert!(cb.sent.is_empty());
        assert_eq!(b.version(0), 2, "but it picked up A's new set");
        assert!(!b.request_refetch(0, 16 * S), "locally rate-limited now");
        assert!(!a.request_refetch(0, 20 * S));
        assert!(a.request_refetch(0, 41 * S));
    }

    #[test]
    fn oidc_discovery_finds_the_jwks() {
        let cfg = Config::parse(
            json!({"providers": {"o": {"issuer": "https://idp.test",
                "oidc_discovery": {"cluster": "idp", "cache_duration": "100s"}}}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        let mut w = World {
            shared: FakeSharedData::default(),
            metrics: FakeMetrics::default(),
        };
        let mut a = KeyStore::new(&cfg);
        let mut c = Calls::default();
        tick(&mut a, &mut w, &mut c, S);
        assert_eq!(c.sent[0].2, "/.well-known/openid-configuration");
        let doc = json!({"issuer": "https://idp.test", "jwks_uri": "https://keys.idp.test/certs"})
            .to_string();
        let changed = a.on_response(
            1,
            Some(200),
            Some(doc.as_bytes()),
            S,
            &mut w.shared,
            &mut c,
            &mut w.metrics,
            &|_, _| {},
        );
        assert_eq!(changed, Some(Changed { wake: false }));
        assert_eq!(
            c.sent[1],
            ("idp".into(), "keys.idp.test".into(), "/certs".into())
        );
        let set = jwks(&[Key::get(KeyName::RsaA)]);
        a.on_response(
            2,
            Some(200),
            Some(set.as_bytes()),
            S,
            &mut w.shared,
            &mut c,
            &mut w.metrics,
            &|_, _| {},
        );
        assert!(a.set(0).is_some());
        // A document naming another issuer is refused.
        let mut b = KeyStore::new(&cfg);
        let mut w2 = World {
            shared: FakeSharedData::default(),
            metrics: FakeMetrics::default(),
        };
        let mut c2 = Calls::default();
        tick(&mut b, &mut w2, &mut c2, S);
        let evil =
            json!({"issuer": "https://evil.test", "jwks_uri": "https://evil.test/k"}).to_string();
        b.on_response(
            1,
            Some(200),
            Some(evil.as_bytes()),
            S,
            &mut w2.shared,
            &mut c2,
            &mut w2.metrics,
            &|_, _| {},
        );
        assert_eq!(c2.sent.len(), 1);
        assert_eq!(w2.metrics.values["jwt_auth.jwks.fetch_failed"], 1);
    }
}
