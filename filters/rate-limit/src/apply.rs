//! The apply step: acts on a [`Decision`]. Counts it, logs what operators
//! must see, answers a refusal, and records the decision for audit-log in
//! `ctx.rate_limit`. Nothing here decides.

use crate::decide::{Decision, RuleEvent, Verdict};
use crate::limiter::RateLimiter;
use crate::response::{rate_limit_headers, rejection, RuleState};
use crate::status::{Reason, Reply};
use filter_common::identity::RateLimitDecision;
use filter_common::{Flow, HttpHost, Level, Metrics, RateLimitOutcome, RequestContext};

/// Applies `decision`. Returns the flow and, for an allowed request, the
/// headers its response gets (when `headers.on_allowed` is set).
pub fn apply(
    decision: Decision,
    limiter: &RateLimiter,
    host: &mut dyn HttpHost,
    metrics: &mut dyn Metrics,
    ctx: &mut RequestContext,
) -> (Flow, Vec<(String, String)>) {
    limiter.stats().count(metrics, &decision.tally);
    for (index, event) in &decision.tally.rules {
        let rule = limiter.rules().get(*index);
        if let (RuleEvent::StoreUnavailable, Some(r)) = (event, rule) {
            host.log(
                Level::Warn,
                &format!(
                    "rate_limit: rule {}: shared state unavailable (failure_mode {:?})",
                    r.rule.name, r.rule.failure_mode
                ),
            );
        }
    }
    match decision.verdict {
        Verdict::NoRule => {
            ctx.rate_limit = None;
            (Flow::Continue, Vec::new())
        }
        Verdict::Allowed {
            states,
            shadow_limited,
        } => {
            ctx.rate_limit = Some(RateLimitDecision {
                outcome: match shadow_limited {
                    Some(_) => RateLimitOutcome::ShadowLimited,
                    None => RateLimitOutcome::Allowed,
                },
                rule: shadow_limited.map(str::to_string),
                reason: None,
            });
            let headers = &limiter.config().headers;
            let pending = match headers.on_allowed {
                true => rate_limit_headers(&states, headers.x_ratelimit),
                false => Vec::new(),
            };
            (Flow::Continue, pending)
        }
        Verdict::Refused {
            reason,
            rule,
            bucket,
        } => {
            reject(limiter, host, metrics, reason, rule, bucket.as_ref());
            ctx.rate_limit = Some(RateLimitDecision {
                outcome: reason.outcome(),
                rule: Some(rule.to_string()),
                reason: Some(reason),
            });
            (Flow::Responded, Vec::new())
        }
    }
}

/// Answers the refusal. If the proxy refuses to send it, the request still
/// never goes on: the caller returns [`Flow::Responded`], which keeps it
/// paused; the failure is counted and logged.
fn reject(
    limiter: &RateLimiter,
    host: &mut dyn HttpHost,
    metrics: &mut dyn Metrics,
    reason: Reason,
    rule: &str,
    bucket: Option<&(RuleState, u64)>,
) {
    let config = limiter.config();
    let reply = rejection(
        reason,
        rule,
        config.status,
        bucket.map(|(s, ns)| (s, *ns)),
        config.headers.x_ratelimit,
    );
    let headers: Vec<(&str, &str)> = reply
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let details = reason.details(rule);
    if let Err(e) = host.send_response(u32::from(reply.status), &details, &headers, &reply.body) {
        limiter.stats().counters.send_failed.inc(metrics);
        host.log(
            Level::Error,
            &format!(
                "rate_limit: {e}: the {} reply was not sent; the request stays paused",
                reply.status
            ),
        );
    }
}
