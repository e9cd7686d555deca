//! The decide step: which rules apply to a request, what each one's bucket
//! says, and whether the request passes. The answer is a value
//! ([`Decision`]); sending, counting and logging are the apply step's.
//!
//! A request is checked against every matching rule **before** any bucket
//! is touched: if an enforced rule is already empty, the request is refused
//! and consumes nothing anywhere. Otherwise each rule's bucket is updated
//! in config order with compare-and-swap. Only if another worker empties a
//! later rule's bucket between the check and the update is the request
//! refused after earlier rules took their token (stricter, never looser).
//!
//! Before that, if the header an applicable rule keys on is repeated with
//! different values, the request is refused (400 `ambiguous_key`) and no
//! bucket is looked at.

use crate::config::{CompiledRule, FailureMode, OnMissingKey};
use crate::gcra;
use crate::key::Key;
use crate::limiter::RateLimiter;
use crate::response::RuleState;
use crate::slots::{Peek, Placement, Table, Take};
use crate::status::Reason;
use crate::view::RequestView;
use filter_common::SharedData;

/// What the limiter decided for one request, and what it saw on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'a> {
    pub verdict: Verdict<'a>,
    pub tally: Tally,
}

/// Whether the request passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'a> {
    /// No rule applies to the request.
    NoRule,
    /// No enforced rule refused it.
    Allowed {
        /// Each enforced rule's bucket after this request, in config
        /// order: the `RateLimit` headers of the response.
        states: Vec<RuleState>,
        /// The first shadow rule that would have refused it.
        shadow_limited: Option<&'a str>,
    },
    /// Refused by `rule`.
    Refused {
        reason: Reason,
        rule: &'a str,
        /// Over a limit: the rule's bucket, and the nanoseconds until a
        /// request would pass.
        bucket: Option<(RuleState, u64)>,
    },
}

/// What happened to each rule, for the stats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// (the rule's index in config order, what it saw), in the order seen.
    pub rules: Vec<(usize, RuleEvent)>,
    /// Compare-and-swap conflicts with other workers.
    pub cas_retries: u32,
    /// Slots found holding another key's debt.
    pub slot_collisions: u32,
}

/// What one rule saw of one request: `rate_limit.<rule>.<label>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleEvent {
    Allowed,
    Limited,
    ShadowLimited,
    StoreUnavailable,
    AmbiguousKey,
}

impl RuleEvent {
    pub fn label(self) -> &'static str {
        match self {
            RuleEvent::Allowed => "allowed",
            RuleEvent::Limited => "limited",
            RuleEvent::ShadowLimited => "shadow_limited",
            RuleEvent::StoreUnavailable => "store_unavailable",
            RuleEvent::AmbiguousKey => "ambiguous_key",
        }
    }
}

/// A rule that applies to the request, and where its key lives.
struct Applied<'a> {
    index: usize,
    rule: &'a CompiledRule,
    at: Placement,
    /// The look before any write (only with several rules).
    peek: Option<Peek>,
}

impl Applied<'_> {
    fn table(&self) -> Table<'_> {
        Table {
            rule: &self.rule.rule.name,
            limit: self.rule.gcra,
            previous: &self.rule.previous,
        }
    }

    fn name(&self) -> &str {
        &self.rule.rule.name
    }

    fn shadow(&self) -> bool {
        self.rule.rule.shadow
    }

    fn peek_refused(&self) -> bool {
        self.peek.is_some_and(|p| !p.verdict.allowed)
    }
}

fn refused<'a>(reason: Reason, rule: &'a CompiledRule, v: Option<gcra::Verdict>) -> Verdict<'a> {
    let name = &rule.rule.name;
    Verdict::Refused {
        reason,
        rule: name,
        bucket: v.map(|v| (RuleState::new(name, rule.gcra, &v), v.next_ns)),
    }
}

/// Decides one request at `now` (host nanoseconds). Writes only the rules'
/// buckets in `shared`.
pub fn decide<'a>(
    request: &RequestView,
    limiter: &'a RateLimiter,
    shared: &mut dyn SharedData,
    now: u64,
) -> Decision<'a> {
    let mut tally = Tally::default();
    let verdict = match applicable(request, limiter, &mut tally) {
        Err(ambiguous) => refused(Reason::AmbiguousKey, ambiguous, None),
        Ok(applied) if applied.is_empty() => Verdict::NoRule,
        Ok(applied) => take(applied, shared, now, &mut tally),
    };
    Decision { verdict, tally }
}

/// The rules that apply and where each one's key lives; or the first
/// applicable rule (in config order) whose key header is repeated with
/// different values.
fn applicable<'a>(
    request: &RequestView,
    limiter: &'a RateLimiter,
    tally: &mut Tally,
) -> Result<Vec<Applied<'a>>, &'a CompiledRule> {
    let mut applied = Vec::new();
    let mut ambiguous = None;
    for (index, rule) in limiter.rules().iter().enumerate() {
        if !rule.rule.matcher.matches(request.info, request.host()) {
            continue;
        }
        let name = &rule.rule.name;
        let hash = match limiter.seed().key(name, &rule.rule.key, request) {
            Key::Hash(h) => h,
            Key::Missing if rule.rule.on_missing_key == OnMissingKey::Skip => continue,
            Key::Missing => limiter.seed().missing_key_hash(name),
            Key::Ambiguous => {
                // Malformed input, not a limit: refused by shadow rules
                // too, and counted in no bucket.
                tally.rules.push((index, RuleEvent::AmbiguousKey));
                ambiguous.get_or_insert(rule);
                continue;
            }
        };
        applied.push(Applied {
            index,
            rule,
            at: Placement::from_hash(hash, rule.slots),
            peek: None,
        });
    }
    match ambiguous {
        Some(rule) => Err(rule),
        None => Ok(applied),
    }
}

/// Looks at every bucket (with several rules), then takes a token from
/// each in config order.
fn take<'a>(
    mut applied: Vec<Applied<'a>>,
    shared: &mut dyn SharedData,
    now: u64,
    tally: &mut Tally,
) -> Verdict<'a> {
    // Several rules: look at every bucket first, so that a request refused
    // by one consumes nothing from the others. (One rule needs no look: a
    // refused request never writes.)
    if applied.len() > 1 {
        for a in &mut applied {
            let peek = a.table().peek(&*shared, a.at, now);
            tally.slot_collisions += u32::from(peek.collision);
            a.peek = Some(peek);
        }
        if let Some(first) = applied.iter().find(|a| !a.shadow() && a.peek_refused()) {
            for a in applied.iter().filter(|a| a.peek_refused()) {
                let event = match a.shadow() {
                    true => RuleEvent::ShadowLimited,
                    false => RuleEvent::Limited,
                };
                tally.rules.push((a.index, event));
            }
            return refused(Reason::OverLimit, first.rule, first.peek.map(|p| p.verdict));
        }
    }

    let mut states = Vec::new();
    let mut shadow_limited = None;
    for a in &applied {
        let shadow = a.shadow();
        if shadow && a.peek_refused() {
            tally.rules.push((a.index, RuleEvent::ShadowLimited));
            shadow_limited.get_or_insert(a.rule.rule.name.as_str());
            continue;
        }
        let mut collision = false;
        let taken = a
            .table()
            .take(shared, a.at, now, &mut tally.cas_retries, &mut collision);
        tally.slot_collisions += u32::from(collision && a.peek.is_none());
        match taken {
            Take::Allowed(v) => {
                tally.rules.push((a.index, RuleEvent::Allowed));
                if !shadow {
                    states.push(RuleState::new(a.name(), a.rule.gcra, &v));
                }
            }
            Take::Denied(_) if shadow => {
                tally.rules.push((a.index, RuleEvent::ShadowLimited));
                shadow_limited.get_or_insert(a.rule.rule.name.as_str());
            }
            Take::Denied(v) => {
                tally.rules.push((a.index, RuleEvent::Limited));
                return refused(Reason::OverLimit, a.rule, Some(v));
            }
            Take::Unavailable => {
                tally.rules.push((a.index, RuleEvent::StoreUnavailable));
                if a.rule.rule.failure_mode == FailureMode::Deny && !shadow {
                    return refused(Reason::StoreUnavailable, a.rule, None);
                }
            }
        }
    }
    Verdict::Allowed {
        states,
        shadow_limited,
    }
}

#[cfg(test)]
mod tests;
