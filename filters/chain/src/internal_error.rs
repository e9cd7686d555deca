//! What the chain does when its own plumbing fails (e.g. a per-worker cell
//! already borrowed): a security step must never be skipped, so the request
//! gets a 500 and is counted, never continued.

use filter_common::identity::RateLimitDecision;
use filter_common::{
    code_details, Flow, HttpHost, Level, Metrics, RateLimitOutcome, RateLimitReason, RequestContext,
};

/// Requests the chain answered 500 because of an internal error.
pub const METRIC_INTERNAL_ERROR: &str = "chain.internal_error";
/// Of those, the replies the proxy refused to send (the request then stays
/// paused until Envoy's stream timeout or the client's reset ends it).
pub const METRIC_SEND_FAILED: &str = "chain.send_failed";

/// Defines the chain's own counters at 0 (call from `on_configure`).
pub fn define_metrics(metrics: &mut dyn Metrics) {
    metrics.increment(METRIC_INTERNAL_ERROR, 0);
    metrics.increment(METRIC_SEND_FAILED, 0);
}

/// Answers 500 with `chain_internal_error{<what>}` as Envoy's response code
/// details and records the refusal for audit-log. Returns
/// [`Flow::Responded`] whether or not the reply could be sent: the request
/// stays paused either way.
pub fn internal_error(
    host: &mut dyn HttpHost,
    metrics: &mut dyn Metrics,
    ctx: &mut RequestContext,
    what: &str,
) -> Flow {
    metrics.increment(METRIC_INTERNAL_ERROR, 1);
    host.log(
        Level::Error,
        &format!("chain: internal error ({what}): answering 500"),
    );
    let body = serde_json::json!({
        "status": 500,
        "error": "internal_error",
        "reason": what,
    })
    .to_string();
    let details = code_details("chain_internal_error", what);
    let headers = [("content-type", "application/json")];
    if let Err(e) = host.send_response(500, &details, &headers, body.as_bytes()) {
        metrics.increment(METRIC_SEND_FAILED, 1);
        host.log(
            Level::Error,
            &format!("chain: {e}: the 500 reply was not sent; the request stays paused"),
        );
    }
    ctx.rate_limit = Some(RateLimitDecision {
        outcome: RateLimitOutcome::Error,
        rule: None,
        reason: Some(RateLimitReason::InternalError),
    });
    Flow::Responded
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_common::testing::{FakeHost, FakeMetrics};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn answers_500_and_counts_whether_or_not_the_reply_is_sent() {
        for send_fails in [false, true] {
            let mut host = FakeHost::request("GET", "/", "api.test", &[]);
            host.faults.send_response = send_fails;
            let mut metrics = FakeMetrics::default();
            define_metrics(&mut metrics);
            let mut ctx = RequestContext::default();
            let flow = internal_error(&mut host, &mut metrics, &mut ctx, "metrics_busy");
            assert_eq!(flow, Flow::Responded, "send fails: {send_fails}");
            assert_eq!(metrics.values[METRIC_INTERNAL_ERROR], 1);
            assert_eq!(metrics.values[METRIC_SEND_FAILED], i64::from(send_fails));
            assert_eq!(ctx.rate_limit.as_ref().unwrap().outcome.label(), "error");
            if send_fails {
                assert_eq!(host.sent, None);
            } else {
                assert_eq!(host.sent.as_ref().unwrap().0, 500);
                assert_eq!(
                    host.sent_details.as_deref(),
                    Some("chain_internal_error{metrics_busy}")
                );
            }
        }
    }
}
