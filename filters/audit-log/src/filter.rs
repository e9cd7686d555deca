//! The per-worker audit log. A request's audit is four steps, each a
//! module of its own and unit-tested on plain values: capture (host reads,
//! [`crate::capture`]), build ([`crate::build`]), seal (the hash chain,
//! [`crate::seal`]) and enqueue (the HTTP sinks' queues,
//! [`crate::queue`]); this module composes them, writes the line to the
//! local sinks, and ships the queues' batches from the root.
//!
//! Knows nothing of proxy-wasm: the glue (or the `chain` module) calls
//! these hooks with the host's traits.

use crate::build::build;
use crate::capture::{Captured, StreamInfo};
use crate::config::Config;
use crate::format;
use crate::hash_chain::Chain;
use crate::queue::{Delivery, Shipper};
use crate::sampling;
use crate::seal::{seal, Sealed};
use crate::stats::{saturating_i64, AuditStats};
use crate::FILTER_NAME;
use filter_common::{
    timed, Callouts, HostError, HttpHost, Level, Metrics, RequestContext, RequestInfo,
};
use std::rc::Rc;

/// Filter state key of the event for Envoy's access loggers; Envoy stores
/// it as `wasm.portcullis.audit`.
pub const AUDIT_KEY: &str = "portcullis.audit";

/// Longest tick: backoff and flush intervals are honoured to this
/// granularity.
const MAX_TICK_MS: u64 = 100;

/// One worker's audit log: its hash chain and its delivery queues.
#[derive(Debug)]
pub struct AuditLog {
    config: Rc<Config>,
    chain: Chain,
    shippers: Vec<Shipper>,
    stats: AuditStats,
    /// Events emitted since the last tick: with HTTP sinks the counter is
    /// bumped at the tick, before their batch leaves (one hostcall less
    /// per request).
    unreported_emitted: u64,
}

/// What one request carries between its hooks.
#[derive(Debug, Clone, Default)]
pub struct RequestAudit {
    captured: Option<Captured>,
}

impl AuditLog {
    /// Configure time: defines the filter's stats (so each shows at 0; an
    /// error refuses the configuration). `producer` must be unique per
    /// worker VM (see README.md, "Producer").
    pub fn new(
        config: Rc<Config>,
        producer: impl Into<String>,
        metrics: &mut dyn Metrics,
    ) -> Result<Self, HostError> {
        let stats = AuditStats::define(metrics)?;
        let shippers = config
            .sinks
            .http
            .iter()
            .cloned()
            .map(Shipper::new)
            .collect();
        Ok(AuditLog {
            chain: Chain::new(producer),
            config,
            shippers,
            stats,
            unreported_emitted: 0,
        })
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

    /// At stream end: captures the stream's attributes, [`AuditLog::record`]s
    /// the event and writes it to the local sinks. Returns the event JSON,
    /// `None` if sampling dropped it.
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
        let line = self.record(captured, &info, ctx, now, metrics)?;
        if self.config.sinks.log.is_some() {
            host.log(Level::Info, &line);
        }
        if self.config.sinks.access_log.is_some() {
            host.set_property(&[AUDIT_KEY], line.as_bytes());
        }
        Some(line)
    }

    /// One request's event from captured values: sampled, built, sealed
    /// and queued for the HTTP sinks. Returns its JSON line, `None` if
    /// sampling dropped it.
    pub fn record(
        &mut self,
        captured: &Captured,
        info: &StreamInfo,
        ctx: &RequestContext,
        now: u64,
        metrics: &mut dyn Metrics,
    ) -> Option<String> {
        if !self.kept(captured, info, ctx) {
            self.stats.sampled_out.inc(metrics);
            return None;
        }
        let mut event = timed!("audit.build", build(&self.config, captured, info, ctx));
        let sealed = timed!("audit.seal", seal(&mut self.chain, &mut event));
        self.enqueue(&sealed, now, metrics);
        Some(sealed.line)
    }

    /// Denials and errors always; allowed requests as sampling says.
    fn kept(&self, captured: &Captured, info: &StreamInfo, ctx: &RequestContext) -> bool {
        if sampling::always_logged(
            info.response_code,
            ctx.jwt.as_ref(),
            ctx.rate_limit.as_ref(),
        ) {
            return true;
        }
        let id = info
            .request_id
            .as_deref()
            .or(captured.request_id.as_deref());
        let fallback = captured.start_nanos.to_string();
        captured.selected
            && sampling::rate_selected(self.config.sampling.allowed_rate, id.unwrap_or(&fallback))
    }

    /// Counts the sealed event and queues it for every HTTP sink (in its
    /// format), dropping the oldest where a queue is full.
    fn enqueue(&mut self, sealed: &Sealed, now: u64, metrics: &mut dyn Metrics) {
        if self.shippers.is_empty() {
            self.stats.emitted.inc(metrics);
            return;
        }
        self.unreported_emitted += 1;
        let producer = self.chain.producer();
        let mut dropped = 0;
        for s in &mut self.shippers {
            let rec = format::record(
                s.sink.format,
                &sealed.line,
                &s.sink.index,
                producer,
                sealed.seq,
            );
            dropped += s.enqueue(rec, now);
        }
        if dropped > 0 {
            self.stats.dropped.add(metrics, saturating_i64(dropped));
        }
    }

    /// Sends the batches due now (flush by size or interval), and fails
    /// for retry the batches whose callout was never answered.
    pub fn on_tick(
        &mut self,
        now: u64,
        metrics: &mut dyn Metrics,
        callouts: &mut dyn Callouts,
        log: &dyn Fn(Level, &str),
    ) {
        self.report_emitted(metrics);
        let stats = self.stats;
        for s in &mut self.shippers {
            stats.delivery(metrics, s.check_stalled(now));
            stats.delivery(metrics, ship(s, now, callouts, log));
        }
        // The gauge is refreshed here rather than per event: one hostcall
        // less on the request path.
        self.report_queue(metrics);
    }

    /// A callout answered (`status` is `None` without a `:status`: refused,
    /// reset, timed out). Returns `false` if the token is not ours. After a
    /// success, a full batch still queued goes at once.
    pub fn on_http_call_response(
        &mut self,
        token: u32,
        status: Option<u32>,
        now: u64,
        metrics: &mut dyn Metrics,
        callouts: &mut dyn Callouts,
        log: &dyn Fn(Level, &str),
    ) -> bool {
        // A backlog may leave below: its events are counted first.
        self.report_emitted(metrics);
        let stats = self.stats;
        let Some(s) = self.shippers.iter_mut().find(|s| s.owns(token)) else {
            return false;
        };
        let d = s.on_response(status, now);
        stats.delivery(metrics, d);
        if d.sent > 0 {
            stats.delivery(metrics, ship(s, now, callouts, log));
        }
        self.report_queue(metrics);
        true
    }

    /// Bytes held by every HTTP sink's queue.
    pub fn queue_bytes(&self) -> usize {
        self.shippers.iter().map(|s| s.queue().bytes()).sum()
    }

    fn report_emitted(&mut self, metrics: &mut dyn Metrics) {
        if self.unreported_emitted > 0 {
            let n = std::mem::take(&mut self.unreported_emitted);
            self.stats.emitted.add(metrics, saturating_i64(n));
        }
    }

    fn report_queue(&self, metrics: &mut dyn Metrics) {
        self.stats
            .queue_bytes
            .set(metrics, self.queue_bytes() as u64);
    }
}

/// Sends `s`'s batch if one is due. A callout the host refuses (e.g. an
/// unknown cluster) fails the batch for retry, as an error answer would.
fn ship(
    s: &mut Shipper,
    now: u64,
    callouts: &mut dyn Callouts,
    log: &dyn Fn(Level, &str),
) -> Delivery {
    let Some(d) = s.poll(now) else {
        return Delivery::default();
    };
    let token = d.send(callouts).ok();
    if token.is_none() {
        log(
            Level::Warn,
            &format!("{FILTER_NAME}: cannot reach cluster `{}`", d.cluster),
        );
    }
    s.dispatched(token, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain_verify;
    use filter_common::testing::{FakeCallouts, FakeHost, FakeMetrics};
    use std::cell::RefCell;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const MS: u64 = 1_000_000;

    fn audit(json: &str, m: &mut FakeMetrics) -> AuditLog {
        AuditLog::new(
            Rc::new(Config::parse(json.as_bytes()).unwrap()),
            "node/p1",
            m,
        )
        .unwrap()
    }

    fn quiet(_: Level, _: &str) {}

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
    fn stats_are_defined_at_configure_time() {
        let mut m = FakeMetrics::default();
        audit("{}", &mut m);
        assert_eq!(m.names, AuditStats::NAMES);
        let mut refusing = FakeMetrics {
            refuse: true,
            ..FakeMetrics::default()
        };
        let config = Rc::new(Config::parse(b"{}").unwrap());
        assert!(AuditLog::new(config, "p", &mut refusing).is_err());
    }

    #[test]
    fn every_sink_gets_the_event() {
        let mut m = FakeMetrics::default();
        let mut a = audit(
            r#"{"sinks": {"log": {}, "access_log": {}, "http": [{"cluster": "c"}]}}"#,
            &mut m,
        );
        let mut h = FakeHost::request("GET", "/x", "h", &[]);
        let ctx = RequestContext::default();
        let r = a.on_request_headers(&h, &ctx);
        let json = a.on_log(&mut h, &ctx, &r, &mut m).unwrap();
        assert_eq!(h.logs.borrow()[0].1, json);
        assert_eq!(h.properties[AUDIT_KEY], json.as_bytes());
        assert_eq!(a.queue_bytes(), json.len() + 1);
        // With HTTP sinks, counted at the next tick (before the batch leaves).
        assert_eq!(m.values["audit_log.emitted"], 0);
        let mut c = FakeCallouts::default();
        a.on_tick(0, &mut m, &mut c, &quiet);
        assert!(c.calls.is_empty(), "not due yet");
        assert_eq!(m.values["audit_log.emitted"], 1);
        assert_eq!(m.values["audit_log.queue_bytes"], json.len() as i64 + 1);
    }

    #[test]
    fn record_runs_on_captured_values() {
        let mut m = FakeMetrics::default();
        let mut a = audit(r#"{"sampling": {"allowed_rate": 0.0}}"#, &mut m);
        let cap = Captured {
            method: "GET".into(),
            path: "/p".into(),
            selected: true,
            ..Captured::default()
        };
        let ok = StreamInfo {
            response_code: Some(200),
            ..StreamInfo::default()
        };
        let ctx = RequestContext::default();
        assert_eq!(a.record(&cap, &ok, &ctx, 0, &mut m), None);
        assert_eq!(m.values["audit_log.sampled_out"], 1);
        let failed = StreamInfo {
            response_code: Some(503),
            ..ok
        };
        let line = a.record(&cap, &failed, &ctx, 0, &mut m).unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["url"]["path"], "/p");
        assert_eq!(v["audit"]["seq"], 0);
        assert_eq!(m.values["audit_log.emitted"], 1);
    }

    #[test]
    fn sampling_spares_denials_and_errors() {
        let mut m = FakeMetrics::default();
        let mut a = audit(
            r#"{"sampling": {"allowed_rate": 0.0, "exclude": [{"prefix": "/health"}]}}"#,
            &mut m,
        );
        assert!(request(&mut a, "/ok", 200, &mut m).is_none());
        assert!(request(&mut a, "/health", 403, &mut m).is_some());
        assert!(request(&mut a, "/ok", 502, &mut m).is_some());
        assert!(request(&mut a, "/ok", 429, &mut m).is_some());
        assert_eq!(m.values["audit_log.sampled_out"], 1);
        let mut a = audit(
            r#"{"sampling": {"exclude": [{"prefix": "/health"}]}}"#,
            &mut m,
        );
        assert!(request(&mut a, "/health", 200, &mut m).is_none());
        assert!(request(&mut a, "/api", 200, &mut m).is_some());
    }

    #[test]
    fn events_form_a_verifiable_chain() {
        let mut m = FakeMetrics::default();
        let mut a = audit("{}", &mut m);
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
        let mut m = FakeMetrics::default();
        let mut a = audit(
            r#"{"sinks": {"http": [{"cluster": "c", "flush_interval_ms": 10,
                "batch_max_bytes": 100000, "queue_max_bytes": 100000,
                "retry": {"initial_backoff_ms": 5, "max_backoff_ms": 5}}]}}"#,
            &mut m,
        );
        assert_eq!(a.tick_period_ms(), Some(10));
        for i in 0..3 {
            request(&mut a, &format!("/r{i}"), 200, &mut m);
        }
        // FakeCallouts' tokens count from 1.
        let mut c = FakeCallouts::default();
        a.on_tick(20 * MS, &mut m, &mut c, &quiet);
        assert_eq!(c.calls.len(), 1);
        assert_eq!(c.calls[0].cluster, "c");
        let body = String::from_utf8(c.calls[0].body.clone().unwrap()).unwrap();
        assert_eq!(body.lines().count(), 3);
        assert!(!a.on_http_call_response(99, Some(200), 0, &mut m, &mut c, &quiet));
        assert!(a.on_http_call_response(1, Some(503), 21 * MS, &mut m, &mut c, &quiet));
        assert_eq!(c.calls.len(), 1, "nothing sent after a failure");
        assert_eq!(m.values["audit_log.retried"], 1);
        a.on_tick(22 * MS, &mut m, &mut c, &quiet);
        assert_eq!(c.calls.len(), 1, "backing off");
        a.on_tick(30 * MS, &mut m, &mut c, &quiet);
        assert_eq!(
            c.calls[1].body.as_deref(),
            Some(body.as_bytes()),
            "same batch, same order"
        );
        a.on_http_call_response(2, Some(200), 31 * MS, &mut m, &mut c, &quiet);
        assert_eq!(m.values["audit_log.sent"], 3);
        assert_eq!(a.queue_bytes(), 0);
        assert_eq!(m.values["audit_log.queue_bytes"], 0);

        let mut small = audit(
            r#"{"sinks": {"http": [{"cluster": "c", "batch_max_bytes": 1000, "queue_max_bytes": 3000}]}}"#,
            &mut m,
        );
        for i in 0..50 {
            request(&mut small, &format!("/r{i}"), 200, &mut m);
            assert!(small.queue_bytes() <= 3000);
        }
        assert!(m.values["audit_log.dropped"] > 0);
    }

    #[test]
    fn a_refused_callout_is_logged_and_retried() {
        let mut m = FakeMetrics::default();
        let mut a = audit(
            r#"{"sinks": {"http": [{"cluster": "nowhere", "flush_interval_ms": 10}]}}"#,
            &mut m,
        );
        request(&mut a, "/r", 200, &mut m);
        let mut c = FakeCallouts {
            refuse: true,
            ..FakeCallouts::default()
        };
        let logs = RefCell::new(Vec::new());
        let log = |level: Level, line: &str| logs.borrow_mut().push((level, line.to_string()));
        a.on_tick(20 * MS, &mut m, &mut c, &log);
        assert_eq!(
            logs.into_inner(),
            [(
                Level::Warn,
                "audit_log: cannot reach cluster `nowhere`".to_string()
            )]
        );
        assert_eq!(m.values["audit_log.retried"], 1);
        assert!(a.queue_bytes() > 0, "the batch waits for its retry");
    }
}
