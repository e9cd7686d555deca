//! One request's rate limiting: read the request, decide, apply.

use crate::apply::apply;
use crate::decide::decide;
use crate::limiter::RateLimiter;
use crate::view::{self, RequestView};
use filter_common::{Flow, HttpHost, Metrics, RequestContext, SharedData};
use std::rc::Rc;

/// Create one per HTTP context.
#[derive(Debug)]
pub struct RateLimit {
    limiter: Rc<RateLimiter>,
    /// Headers for the response of an allowed request.
    pending: Vec<(String, String)>,
}

impl RateLimit {
    pub fn new(limiter: Rc<RateLimiter>) -> Self {
        RateLimit {
            limiter,
            pending: Vec::new(),
        }
    }

    /// Decides the request. Writes `ctx.rate_limit` when a rule applied
    /// (left `None` otherwise); on a rejection, sends the local reply and
    /// returns [`Flow::Responded`]. Reads `ctx.request` if filled; left
    /// empty, only the pseudo-headers a rule needs are read from `host`.
    pub fn on_request_headers(
        &mut self,
        host: &mut dyn HttpHost,
        shared: &mut dyn SharedData,
        metrics: &mut dyn Metrics,
        ctx: &mut RequestContext,
    ) -> Flow {
        let limiter = &*self.limiter;
        let now = host.now_nanos();
        view::complete(ctx, &*host, limiter.needs(), limiter.needs_identity());
        let decision = decide(&RequestView::of(&*host, ctx), limiter, shared, now);
        let (flow, pending) = apply(decision, limiter, host, metrics, ctx);
        self.pending = pending;
        flow
    }

    /// Adds the rate-limit headers to an allowed request's response (when
    /// `headers.on_allowed` is set).
    pub fn on_response_headers(&mut self, host: &mut dyn HttpHost) {
        for (name, value) in std::mem::take(&mut self.pending) {
            host.set_response_header(&name, value.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests;
