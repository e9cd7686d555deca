//! The per-worker audit log: request hooks that build, seal and route one
//! event per request, and root hooks that ship the HTTP sinks' batches.
//!
//! Knows nothing of proxy-wasm: the glue (or the `chain` module) calls
//! these hooks with a host and a metrics sink.

use crate::config::Config;
use crate::event::{self, Captured, StreamInfo};
use crate::format;
use crate::hash_chain::Chain;
use crate::queue::{Delivery, Dispatch, Shipper};
use crate::sampling;
use filter_common::identity::{
    Identity, JwtDecision, RateLimitDecision, IDENTITY_KEY, JWT_DECISION_KEY,
    RATE_LIMIT_DECISION_KEY,
};
use filter_common::{timed, HttpHost, Level, Metrics, RequestContext, RequestInfo};
use std::rc::Rc;

/// Filter state key of the event for Envoy's access loggers; Envoy stores
/// it as `wasm.portcullis.audit`.
pub const AUDIT_KEY: &str = "portcullis.audit";

pub const METRIC_EMITTED: &str = "audit_log.emitted";
pub const METRIC_SENT: &str = "audit_log.sent";
pub const METRIC_DROPPED: &str = "audit_log.dropped";
pub const METRIC_RETRIED: &str = "audit_log.retried";
pub const METRIC_SAMPLED_OUT: &str = "audit_log.sampled_out";
pub const METRIC_QUEUE_BYTES: &str = "audit_log.queue_bytes";

/// Defines every metric this filter writes, so each shows in Envoy's stats
/// at 0 from the start (call from `on_configure`, in every VM).
pub fn define_metrics(metrics: &mut dyn Metrics) {
    for name in [
        METRIC_EMITTED,
        METRIC_SENT,
        METRIC_DROPPED,
        METRIC_RETRIED,
        METRIC_SAMPLED_OUT,
    ] {
        metrics.increment(name, 0);
    }
    metrics.gauge(METRIC_QUEUE_BYTES, 0);
}

/// Longest tick: backoff and flush intervals are honoured to this
/// granularity.
const MAX_TICK_MS: u64 = 100;

/// One worker's audit log: its hash chain and its delivery queues.
#[derive(Debug)]
pub struct AuditLog {
    config: Rc<Config>,
    chain: Chain,
    shippers: Vec<Shipper>,
    /// Events emitted since the last tick: with HTTP sinks the counter is
    /// bumped at the tick, before their batch leaves (one hostcall less
    /// per request).
    unreported_emitted: i64,
}

/// What one request carries between its hooks.
#[derive(Debug, Clone, Default)]
pub struct RequestAudit {
    captured: Option<Captured>,
}

impl AuditLog {
    /// `producer` must be unique per worker VM (see README.md, "Producer").
    pub fn new(config: Rc<Config>, producer: impl Into<String>) -> Self {
        let shippers = config
            .sinks
            .http
            .iter()
            .cloned()
            .map(Shipper::new)
            .collect();
        AuditLog {
            chain: Chain::new(producer),
            config,
            shippers,
            unreported_emitted: 0,
        }
    }

    pub fn producer(&self) -> &str {
        self.chain.producer()
    }

    /// How often the root must call [`AuditLog::on_tick`]; `None` without
    /// HTTP sinks.
    pub fn tick_period_ms(&self) -> Option<u64> {
        self.shippers
            .iter()
            .map(|s| s.sink.flush_interval_ms.min(MAX_TICK_MS))
            .min()
    }

    /// Captures what the event needs from the request headers, which may be
    /// gone or rewritten by the end of the stream.
    pub fn on_request_headers(&self, host: &dyn HttpHost, ctx: &RequestContext) -> RequestAudit {
        let selected = sampling::path_selected(&self.config.sampling, &ctx.request, host);
        RequestAudit {
            captured: Some(Captured::read(&self.config, host, &ctx.request, selected)),
        }
    }

    /// Nothing to capture from response headers yet (`set-cookie` is never
    /// logged); kept so the glue's shape does not change when there is.
    pub fn on_response_headers(&self, _host: &dyn HttpHost, _req: &mut RequestAudit) {}

    /// Builds, seals and routes the request's event, if sampling keeps it.
    /// Returns the event JSON.
    pub fn on_log(
        &mut self,
        host: &mut dyn HttpHost,
        ctx: &RequestContext,
        req: &RequestAudit,
        metrics: &mut dyn Metrics,
    ) -> Option<String> {
        let late;
        let captured = match &req.captured {
            Some(c) => c,
            // The stream ended before its headers reached us.
            None => {
                let info = RequestInfo::from_host(host);
                late = Captured::read(&self.config, host, &info, true);
                &late
            }
        };
        let now = host.now_nanos();
        let info = timed!(
            "audit.stream_info",
            StreamInfo::read_at(host, captured, now)
        );
        let always = sampling::always_logged(
            info.response_code,
            ctx.jwt.as_ref(),
            ctx.rate_limit.as_ref(),
        );
        if !always {
            let id = info
                .request_id
                .as_deref()
                .or(captured.request_id.as_deref());
            let fallback = captured.start_nanos.to_string();
            let keep = captured.selected
                && sampling::rate_selected(
                    self.config.sampling.allowed_rate,
                    id.unwrap_or(&fallback),
                );
            if !keep {
                metrics.increment(METRIC_SAMPLED_OUT, 1);
                return None;
            }
        }
        let mut event = timed!(
            "audit.build",
            event::build(&self.config, captured, &info, ctx)
        );
        let (seq, json) = timed!("audit.seal", event::seal(&mut self.chain, &mut event));
        if self.shippers.is_empty() {
            metrics.increment(METRIC_EMITTED, 1);
        } else {
            self.unreported_emitted += 1;
        }
        if self.config.sinks.log.is_some() {
            host.log(Level::Info, &json);
        }
        if self.config.sinks.access_log.is_some() {
            host.set_property(&[AUDIT_KEY], json.as_bytes());
        }
        if !self.shippers.is_empty() {
            let producer = self.chain.producer().to_string();
            let mut dropped = 0;
            for s in &mut self.shippers {
                let rec = format::record(s.sink.format, &json, &s.sink.index, &producer, seq);
                dropped += s.enqueue(rec, now);
            }
            if dropped > 0 {
                metrics.increment(METRIC_DROPPED, i64::try_from(dropped).unwrap_or(i64::MAX));
            }
        }
        Some(json)
    }

    /// Batches due now (flush by size or interval), and batches whose
    /// callout was never answered are failed for retry.
    pub fn on_tick(&mut self, now: u64, metrics: &mut dyn Metrics) -> Vec<Dispatch> {
        self.report_emitted(metrics);
        let mut out = Vec::new();
        for (i, s) in self.shippers.iter_mut().enumerate() {
            let d = s.check_stalled(now);
            record(metrics, d);
            out.extend(s.poll(i, now));
        }
        // The gauge is refreshed here rather than per event: one hostcall
        // less on the request path.
        self.report_queue(metrics);
        out
    }

    /// The glue dispatched `Dispatch` of `sink`: `Some(token)` if the host
    /// accepted the callout.
    pub fn dispatched(
        &mut self,
        sink: usize,
        token: Option<u32>,
        now: u64,
        metrics: &mut dyn Metrics,
    ) {
        if let Some(s) = self.shippers.get_mut(sink) {
            let d = s.dispatched(token, now);
            record(metrics, d);
        }
    }

    /// A callout answered (`status` is `None` without a `:status`: refused,
    /// reset, timed out). Returns `None` if the token is not ours, else what
    /// to send next: after a success, a full batch still queued goes at once.
    pub fn on_http_call_response(
        &mut self,
        token: u32,
        status: Option<u32>,
        now: u64,
        metrics: &mut dyn Metrics,
    ) -> Option<Vec<Dispatch>> {
        // A backlog may leave below: its events are counted first.
        self.report_emitted(metrics);
        let (i, s) = self
            .shippers
            .iter_mut()
            .enumerate()
            .find(|(_, s)| s.owns(token))?;
        let d = s.on_response(status, now);
        record(metrics, d);
        let next = if d.sent > 0 { s.poll(i, now) } else { None };
        self.report_queue(metrics);
        Some(next.into_iter().collect())
    }

    /// Bytes held by every HTTP sink's queue.
    pub fn queue_bytes(&self) -> usize {
        self.shippers.iter().map(|s| s.queue().bytes()).sum()
    }

    fn report_emitted(&mut self, metrics: &mut dyn Metrics) {
        if self.unreported_emitted > 0 {
            metrics.increment(METRIC_EMITTED, self.unreported_emitted);
            self.unreported_emitted = 0;
        }
    }

    fn report_queue(&self, metrics: &mut dyn Metrics) {
        metrics.gauge(METRIC_QUEUE_BYTES, self.queue_bytes() as u64);
    }
}

fn record(metrics: &mut dyn Metrics, d: Delivery) {
    if d.sent > 0 {
        metrics.increment(METRIC_SENT, i64::try_from(d.sent).unwrap_or(i64::MAX));
    }
    if d.retried > 0 {
        metrics.increment(METRIC_RETRIED, i64::try_from(d.retried).unwrap_or(i64::MAX));
    }
}

/// As separate filters, jwt-auth and rate-limit hand their decisions over
/// as filter state (JSON); this reads what `ctx` does not already hold.
/// Unparsable state is ignored: the event still records the status.
pub fn fill_from_filter_state(host: &dyn HttpHost, ctx: &mut RequestContext) {
    if ctx.identity.is_none() {
        ctx.identity = read_state::<Identity>(host, IDENTITY_KEY);
    }
    if ctx.jwt.is_none() {
        ctx.jwt = read_state::<JwtDecision>(host, JWT_DECISION_KEY);
    }
    if ctx.rate_limit.is_none() {
        ctx.rate_limit = read_state::<RateLimitDecision>(host, RATE_LIMIT_DECISION_KEY);
    }
}

fn read_state<T: serde::de::DeserializeOwned>(host: &dyn HttpHost, key: &str) -> Option<T> {
    let bytes = host.property(&[key])?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain_verify;
    use filter_common::testing::{FakeHost, FakeMetrics};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const MS: u64 = 1_000_000;

    fn audit(json: &str) -> AuditLog {
        AuditLog::new(Rc::new(Config::parse(json.as_bytes()).unwrap()), "node/p1")
    }

    fn request(a: &mut AuditLog, path: &str, status: i64, m: &mut FakeMetrics) -> Option<String> {
        let mut h = FakeHost::request(
            "GET",
            path,
            "h",
            &[("authorization", "Bearer s3cret"), ("x-request-id", path)],
        );
        let ctx = RequestContext {
            request: RequestInfo::from_host(&h),
            ..Default::default()
        };
        let r = a.on_request_headers(&h, &ctx);
        h.request_headers.retain(|(k, _)| k != "authorization");
        h.properties
            .insert("response.code".into(), status.to_le_bytes().to_vec());
        a.on_log(&mut h, &ctx, &r, m)
    }

    #[test]
    fn every_sink_gets_the_event() {
        let mut a =
            audit(r#"{"sinks": {"log": {}, "access_log": {}, "http": [{"cluster": "c"}]}}"#);
        let mut h = FakeHost::request("GET", "/x", "h", &[]);
        let mut m = FakeMetrics::default();
        let ctx = RequestContext::default();
        let r = a.on_request_headers(&h, &ctx);
        let json = a.on_log(&mut h, &ctx, &r, &mut m).unwrap();
        assert_eq!(h.logs.borrow()[0].1, json);
        assert_eq!(h.properties[AUDIT_KEY], json.as_bytes());
        assert_eq!(a.queue_bytes(), json.len() + 1);
        // With HTTP sinks, counted at the next tick (before the batch leaves).
        assert_eq!(m.values.get(METRIC_EMITTED), None);
        assert!(a.on_tick(0, &mut m).is_empty(), "not due yet");
        assert_eq!(m.values[METRIC_EMITTED], 1);
        assert_eq!(m.values[METRIC_QUEUE_BYTES], json.len() as i64 + 1);
    }

    #[test]
    fn sampling_spares_denials_and_errors() {
        let mut a =
            audit(r#"{"sampling": {"allowed_rate": 0.0, "exclude": [{"prefix": "/health"}]}}"#);
        let mut m = FakeMetrics::default();
        assert!(request(&mut a, "/ok", 200, &mut m).is_none());
        assert!(request(&mut a, "/health", 403, &mut m).is_some());
        assert!(request(&mut a, "/ok", 502, &mut m).is_some());
        assert!(request(&mut a, "/ok", 429, &mut m).is_some());
        assert_eq!(m.values[METRIC_SAMPLED_OUT], 1);
        let mut a = audit(r#"{"sampling": {"exclude": [{"prefix": "/health"}]}}"#);
        assert!(request(&mut a, "/health", 200, &mut m).is_none());
        assert!(request(&mut a, "/api", 200, &mut m).is_some());
    }

    #[test]
    fn events_form_a_verifiable_chain() {
        let mut a = audit("{}");
        let mut m = FakeMetrics::default();
        let lines: Vec<String> = (0..5)
            .map(|i| request(&mut a, &format!("/r{i}"), 200, &mut m).unwrap())
            .collect();
        assert!(lines.iter().all(|l| !l.contains("s3cret")));
        let report = chain_verify::verify(&lines.join("\n"));
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.producers[0].events, 5);
    }

    #[test]
    fn ships_batches_retries_and_drops_oldest() {
        let mut a = audit(
            r#"{"sinks": {"http": [{"cluster": "c", "flush_interval_ms": 10,
                "batch_max_bytes": 100000, "queue_max_bytes": 100000,
                "retry": {"initial_backoff_ms": 5, "max_backoff_ms": 5}}]}}"#,
        );
        assert_eq!(a.tick_period_ms(), Some(10));
        let mut m = FakeMetrics::default();
        for i in 0..3 {
            request(&mut a, &format!("/r{i}"), 200, &mut m);
        }
        let d = a.on_tick(20 * MS, &mut m);
        assert_eq!(d.len(), 1);
        let body = String::from_utf8(d[0].body.clone()).unwrap();
        assert_eq!(body.lines().count(), 3);
        a.dispatched(0, Some(1), 20 * MS, &mut m);
        assert_eq!(a.on_http_call_response(99, Some(200), 0, &mut m), None);
        assert_eq!(
            a.on_http_call_response(1, Some(503), 21 * MS, &mut m),
            Some(vec![])
        );
        assert_eq!(m.values[METRIC_RETRIED], 1);
        assert!(a.on_tick(22 * MS, &mut m).is_empty(), "backing off");
        let d = a.on_tick(30 * MS, &mut m);
        assert_eq!(d[0].body, body.as_bytes(), "same batch, same order");
        a.dispatched(0, Some(2), 30 * MS, &mut m);
        a.on_http_call_response(2, Some(200), 31 * MS, &mut m);
        assert_eq!(m.values[METRIC_SENT], 3);
        assert_eq!(a.queue_bytes(), 0);
        assert_eq!(m.values[METRIC_QUEUE_BYTES], 0);

        let mut small = audit(
            r#"{"sinks": {"http": [{"cluster": "c", "batch_max_bytes": 1000, "queue_max_bytes": 3000}]}}"#,
        );
        for i in 0..50 {
            request(&mut small, &format!("/r{i}"), 200, &mut m);
            assert!(small.queue_bytes() <= 3000);
        }
        assert!(m.values[METRIC_DROPPED] > 0);
    }

    #[test]
    fn decisions_come_from_filter_state() {
        let mut h = FakeHost::default();
        h.properties.insert(
            IDENTITY_KEY.into(),
            br#"{"provider":"p","issuer":"i","subject":"s"}"#.to_vec(),
        );
        h.properties.insert(
            JWT_DECISION_KEY.into(),
            br#"{"outcome":"allowed"}"#.to_vec(),
        );
        h.properties
            .insert(RATE_LIMIT_DECISION_KEY.into(), b"garbage".to_vec());
        let mut ctx = RequestContext::default();
        fill_from_filter_state(&h, &mut ctx);
        assert_eq!(ctx.identity.unwrap().subject, "s");
        assert_eq!(ctx.jwt.unwrap().outcome.label(), "allowed");
        assert!(ctx.rate_limit.is_none());
    }
}
