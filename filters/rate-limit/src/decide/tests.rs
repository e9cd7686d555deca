//! decide as a table: a config, the requests before, one request, and the
//! decision and tally it must give. No reply is sent and nothing is
//! counted here: that is apply's (see `filter::tests`).

use super::*;
use crate::gcra::NANOS_PER_SECOND as S;
use crate::{slots, Config};
use filter_common::testing::{FakeHost, FakeMetrics, FakeSharedData};
use filter_common::{CasOutcome, RequestInfo};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_780_000_000 * S;

/// Shared data whose compare-and-swap writes always conflict when
/// `broken` (another worker always writes first).
#[derive(Default)]
struct Store {
    data: FakeSharedData,
    broken: bool,
}

impl SharedData for Store {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.data.get(key)
    }
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> CasOutcome {
        match cas {
            Some(_) if self.broken => CasOutcome::Conflict,
            _ => self.data.set(key, value, cas),
        }
    }
}

/// A decision with its rules named.
#[derive(Debug, PartialEq)]
enum Seen {
    NoRule,
    /// (rule, remaining, reset seconds) per enforced rule; the shadow rule
    /// over its limit.
    Allowed(Vec<(String, u64, u64)>, Option<String>),
    /// The reason, the rule, and its bucket: (remaining, reset seconds,
    /// nanoseconds until a request passes).
    Refused(Reason, String, Option<(u64, u64, u64)>),
}

fn allowed(states: &[(&str, u64, u64)], shadow: Option<&str>) -> Seen {
    let states = states.iter().map(|(n, r, t)| (n.to_string(), *r, *t));
    Seen::Allowed(states.collect(), shadow.map(str::to_string))
}

fn refused(reason: Reason, rule: &str, bucket: Option<(u64, u64, u64)>) -> Seen {
    Seen::Refused(reason, rule.to_string(), bucket)
}

fn seen(v: &Verdict) -> Seen {
    match v {
        Verdict::NoRule => Seen::NoRule,
        Verdict::Allowed {
            states,
            shadow_limited,
        } => Seen::Allowed(
            states
                .iter()
                .map(|s| (s.name.clone(), s.remaining, s.reset))
                .collect(),
            shadow_limited.map(str::to_string),
        ),
        Verdict::Refused {
            reason,
            rule,
            bucket,
        } => Seen::Refused(
            *reason,
            rule.to_string(),
            bucket.as_ref().map(|(s, ns)| (s.remaining, s.reset, *ns)),
        ),
    }
}

struct Case {
    name: &'static str,
    /// The `rules` array of the config.
    rules: &'static str,
    /// Identical requests decided first.
    before: usize,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// Every compare-and-swap write of the request conflicts.
    store_fails: bool,
    want: Seen,
    /// What each rule saw, in order.
    events: Vec<(&'static str, RuleEvent)>,
    cas_retries: u32,
}

const API: &str = r#"[{"name": "api", "match": {"prefix": "/api"},
    "limit": {"requests_per_unit": 5, "unit": "minute"}}]"#;
const KEYED: &str = r#"[{"name": "k", "key": [{"header": {"name": "x-k"}}],
    "limit": {"requests_per_unit": 5, "unit": "minute"}}]"#;
const SKIP: &str = r#"[{"name": "k", "key": [{"header": {"name": "x-k"}}], "on_missing_key": "skip",
    "limit": {"requests_per_unit": 5, "unit": "minute"}}]"#;
const AMBIGUOUS_SHADOW: &str = r#"[{"name": "ip", "limit": {"requests_per_unit": 1, "unit": "hour"}},
    {"name": "trial", "shadow": true, "key": [{"header": {"name": "x-a"}}],
     "limit": {"requests_per_unit": 5, "unit": "hour"}}]"#;
const WIDE_NARROW: &str = r#"[{"name": "wide", "key": [], "limit": {"requests_per_unit": 3, "unit": "hour"}},
    {"name": "narrow", "match": {"prefix": "/b"}, "key": [], "limit": {"requests_per_unit": 1, "unit": "hour"}}]"#;
const SHADOW: &str = r#"[{"name": "trial", "shadow": true, "limit": {"requests_per_unit": 1, "unit": "minute"}},
    {"name": "real", "limit": {"requests_per_unit": 4, "unit": "minute"}}]"#;
const CLOSED: &str =
    r#"[{"name": "closed", "key": [], "limit": {"requests_per_unit": 1, "unit": "hour"}}]"#;
const OPEN: &str = r#"[{"name": "open", "key": [], "failure_mode": "allow",
    "limit": {"requests_per_unit": 1, "unit": "hour"}}]"#;

fn cases() -> Vec<Case> {
    use RuleEvent::*;
    let case = |name, rules, path, want, events| Case {
        name,
        rules,
        before: 0,
        path,
        headers: &[],
        store_fails: false,
        want,
        events,
        cas_retries: 0,
    };
    vec![
        case("no rule matches", API, "/", Seen::NoRule, vec![]),
        case(
            "the first request takes one of five (12 s each)",
            API,
            "/api/x",
            allowed(&[("api", 4, 12)], None),
            vec![("api", Allowed)],
        ),
        Case {
            before: 5,
            ..case(
                "the sixth within a minute is over the limit",
                API,
                "/api/x",
                refused(Reason::OverLimit, "api", Some((0, 60, 12 * S))),
                vec![("api", Limited)],
            )
        },
        case(
            "a missing key part shares one bucket",
            KEYED,
            "/",
            allowed(&[("k", 4, 12)], None),
            vec![("k", Allowed)],
        ),
        case(
            "a missing key part skips the rule",
            SKIP,
            "/",
            Seen::NoRule,
            vec![],
        ),
        Case {
            headers: &[("x-k", "a"), ("x-k", "b")],
            ..case(
                "a key header with two values is ambiguous",
                KEYED,
                "/",
                refused(Reason::AmbiguousKey, "k", None),
                vec![("k", AmbiguousKey)],
            )
        },
        Case {
            headers: &[("x-a", "1"), ("x-a", "2")],
            ..case(
                "a shadow rule refuses an ambiguous key; the other rule is not counted",
                AMBIGUOUS_SHADOW,
                "/",
                refused(Reason::AmbiguousKey, "trial", None),
                vec![("trial", AmbiguousKey)],
            )
        },
        Case {
            before: 1,
            ..case(
                "an empty rule refuses before any bucket is touched",
                WIDE_NARROW,
                "/b",
                refused(Reason::OverLimit, "narrow", Some((0, 3600, 3600 * S))),
                vec![("narrow", Limited)],
            )
        },
        Case {
            before: 1,
            ..case(
                "a shadow rule over its limit is named, not enforced",
                SHADOW,
                "/",
                allowed(&[("real", 2, 30)], Some("trial")),
                vec![("trial", ShadowLimited), ("real", Allowed)],
            )
        },
        Case {
            store_fails: true,
            cas_retries: slots::MAX_ATTEMPTS,
            ..case(
                "unavailable state refuses with failure_mode deny",
                CLOSED,
                "/",
                refused(Reason::StoreUnavailable, "closed", None),
                vec![("closed", StoreUnavailable)],
            )
        },
        Case {
            store_fails: true,
            cas_retries: slots::MAX_ATTEMPTS,
            ..case(
                "unavailable state lets through with failure_mode allow",
                OPEN,
                "/",
                allowed(&[], None),
                vec![("open", StoreUnavailable)],
            )
        },
    ]
}

#[test]
fn decisions() {
    for c in cases() {
        let json = format!(r#"{{"slots": 16, "rules": {}}}"#, c.rules);
        let config = Config::parse(json.as_bytes()).unwrap();
        let mut store = Store::default();
        let limiter = RateLimiter::configure(
            config,
            &mut store,
            &mut FakeMetrics::default(),
            [5; 16],
            NOW,
        )
        .unwrap();
        let mut host = FakeHost::request("GET", c.path, "example.com", c.headers);
        host.properties
            .insert("source.address".into(), b"10.0.0.1:1".to_vec());
        let info = RequestInfo::from_host(&host);
        let view = RequestView::new(&host, &info, None);
        for _ in 0..c.before {
            decide(&view, &limiter, &mut store, NOW);
        }
        store.broken = c.store_fails;
        let d = decide(&view, &limiter, &mut store, NOW);
        assert_eq!(seen(&d.verdict), c.want, "{}", c.name);
        let name = |i: usize| limiter.rules().get(i).map_or("?", |r| r.rule.name.as_str());
        let events: Vec<_> = d.tally.rules.iter().map(|(i, e)| (name(*i), *e)).collect();
        assert_eq!(events, c.events, "{}", c.name);
        assert_eq!(d.tally.cas_retries, c.cas_retries, "{}", c.name);
        assert_eq!(d.tally.slot_collisions, 0, "{}", c.name);
    }
}

#[test]
fn the_identity_in_the_view_is_the_key() {
    let json = r#"{"slots": 16, "rules": [{"name": "user", "key": [{"identity": {}}],
        "on_missing_key": "skip", "limit": {"requests_per_unit": 1, "unit": "hour"}}]}"#;
    let mut store = Store::default();
    let limiter = RateLimiter::configure(
        Config::parse(json.as_bytes()).unwrap(),
        &mut store,
        &mut FakeMetrics::default(),
        [5; 16],
        NOW,
    )
    .unwrap();
    let host = FakeHost::request("GET", "/", "example.com", &[]);
    let info = RequestInfo::default();
    let alice = filter_common::identity::Identity {
        issuer: "https://iss".into(),
        subject: "alice".into(),
        ..Default::default()
    };
    let mut run = |identity| {
        let d = decide(
            &RequestView::new(&host, &info, identity),
            &limiter,
            &mut store,
            NOW,
        );
        match d.verdict {
            Verdict::NoRule => "no rule",
            Verdict::Allowed { .. } => "allowed",
            Verdict::Refused { .. } => "refused",
        }
    };
    assert_eq!(run(None), "no rule");
    assert_eq!(run(Some(&alice)), "allowed");
    assert_eq!(run(Some(&alice)), "refused");
    assert_eq!(run(None), "no rule");
}
