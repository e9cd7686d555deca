//! The proxy-wasm shell. [`AuditRoot`] (root side: ticks, callouts) and
//! [`AuditHttp`] (one per request) are the pieces the `chain` module reuses;
//! the standalone plugin below is built from exactly these.

use crate::filter::{define_metrics, fill_from_filter_state, AuditLog, RequestAudit};
use crate::hash_chain::hex;
use crate::queue::Dispatch;
use crate::{Config, FILTER_NAME};
use filter_common::host::{StatId, StatKind};
use filter_common::proxy::{self, ProxyHttp, ProxyMetrics};
use filter_common::{HeaderSnapshot, HostError, HttpHost, Metrics, RequestContext, RequestInfo};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

pub fn register() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}

/// Metrics whose gauges add up across workers: each VM adds the change of
/// its own value to the one Envoy gauge, so `audit_log.queue_bytes` is the
/// total of every worker's queues (a plain `record` would show the last
/// writer's only).
#[derive(Default)]
pub struct WorkerMetrics {
    inner: ProxyMetrics,
    gauges: HashMap<String, (u32, u64)>,
    /// This worker's last value of each gauge defined by id.
    recorded: HashMap<u32, u64>,
}

impl Metrics for WorkerMetrics {
    fn define(&mut self, kind: StatKind, name: &str) -> Result<StatId, HostError> {
        self.inner.define(kind, name)
    }
    fn add(&mut self, id: StatId, delta: i64) {
        self.inner.add(id, delta);
    }
    fn record(&mut self, id: StatId, value: u64) {
        let last = self.recorded.entry(id.0).or_default();
        let delta =
            i64::try_from(value).unwrap_or(i64::MAX) - i64::try_from(*last).unwrap_or(i64::MAX);
        if delta != 0 && hostcalls::increment_metric(id.0, delta).is_ok() {
            *last = value;
        }
    }
    fn increment(&mut self, name: &str, delta: i64) {
        self.inner.increment(name, delta);
    }
    fn gauge(&mut self, name: &str, value: u64) {
        if !self.gauges.contains_key(name) {
            let Ok(id) = hostcalls::define_metric(MetricType::Gauge, name) else {
                return;
            };
            self.gauges.insert(name.to_string(), (id, 0));
        }
        let Some(entry) = self.gauges.get_mut(name) else {
            return;
        };
        let (id, last) = *entry;
        let delta =
            i64::try_from(value).unwrap_or(i64::MAX) - i64::try_from(last).unwrap_or(i64::MAX);
        if delta != 0 && hostcalls::increment_metric(id, delta).is_ok() {
            entry.1 = value;
        }
    }
}

/// The worker's audit log, shared by the root and every request.
pub type Shared = Rc<RefCell<AuditLog>>;

/// Root side: owns the worker's [`AuditLog`] and ships its batches.
pub struct AuditRoot {
    log: Shared,
    metrics: Rc<RefCell<WorkerMetrics>>,
}

impl AuditRoot {
    /// Creates the worker's audit log with a fresh producer id:
    /// `<node.id>/<16 hex digits from WASI random_get>` (the host time if
    /// random_get fails). Call once per `on_configure`.
    /// Also defines the filter's metrics, so they show at 0.
    pub fn new(config: Rc<Config>) -> Self {
        let mut metrics = WorkerMetrics::default();
        define_metrics(&mut metrics);
        AuditRoot {
            log: Rc::new(RefCell::new(AuditLog::new(config, producer_id()))),
            metrics: Rc::new(RefCell::new(metrics)),
        }
    }

    pub fn producer(&self) -> String {
        self.log.borrow().producer().to_string()
    }

    /// The period to pass to `set_tick_period`; `None` without HTTP sinks.
    pub fn tick_period(&self) -> Option<Duration> {
        self.log
            .borrow()
            .tick_period_ms()
            .map(Duration::from_millis)
    }

    pub fn on_tick(&mut self) {
        let now = proxy::now_nanos();
        let due = {
            let mut m = self.metrics.borrow_mut();
            self.log.borrow_mut().on_tick(now, &mut *m)
        };
        self.send(due, now);
    }

    /// Returns `false` if the callout was not one of ours.
    pub fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        _body_size: usize,
    ) -> bool {
        let status = proxy::callout_status(num_headers);
        let now = proxy::now_nanos();
        let next = {
            let mut m = self.metrics.borrow_mut();
            self.log
                .borrow_mut()
                .on_http_call_response(token_id, status, now, &mut *m)
        };
        match next {
            Some(next) => {
                self.send(next, now);
                true
            }
            None => false,
        }
    }

    /// A request's half, sharing this worker's log.
    pub fn http(&self) -> AuditHttp {
        AuditHttp {
            log: self.log.clone(),
            metrics: self.metrics.clone(),
            req: RequestAudit::default(),
        }
    }

    fn send(&self, batches: Vec<Dispatch>, now: u64) {
        for d in batches {
            let headers: Vec<(&str, &str)> = d
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let token = hostcalls::dispatch_http_call(
                &d.cluster,
                headers,
                Some(&d.body),
                vec![],
                Duration::from_millis(d.timeout_ms),
            )
            .ok();
            if token.is_none() {
                proxy::log(
                    filter_common::Level::Warn,
                    &format!("{FILTER_NAME}: cannot reach cluster `{}`", d.cluster),
                );
            }
            let mut m = self.metrics.borrow_mut();
            self.log
                .borrow_mut()
                .dispatched(d.sink, token, now, &mut *m);
        }
    }
}

/// One request's half.
pub struct AuditHttp {
    log: Shared,
    metrics: Rc<RefCell<WorkerMetrics>>,
    req: RequestAudit,
}

impl AuditHttp {
    /// Call first in the request headers phase (before other filters act).
    /// Fills `ctx.request` if nobody has. It reads five request headers:
    /// give it a [`filter_common::HeaderSnapshot`] (shared with the other
    /// filters, in the chain) rather than the bare host.
    pub fn on_request_headers(&mut self, host: &dyn HttpHost, ctx: &mut RequestContext) {
        if ctx.request.method.is_empty() {
            ctx.request = RequestInfo::from_host(host);
        }
        self.req = self.log.borrow().on_request_headers(host, ctx);
    }

    pub fn on_response_headers(&mut self, _ctx: &RequestContext) {
        self.log
            .borrow()
            .on_response_headers(&ProxyHttp, &mut self.req);
    }

    /// Call in `on_log` with the request's decisions. (The standalone
    /// plugin first reads them from filter state, where the separate
    /// jwt-auth and rate-limit filters leave them; the chain has them in
    /// memory and skips those hostcalls.)
    pub fn on_log(&mut self, ctx: &RequestContext) {
        let mut host = ProxyHttp;
        let mut m = self.metrics.borrow_mut();
        self.log
            .borrow_mut()
            .on_log(&mut host, ctx, &self.req, &mut *m);
    }
}

fn producer_id() -> String {
    let node = proxy::property(&["node", "id"])
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "envoy".to_string());
    let mut nonce = [0u8; 8];
    if getrandom::getrandom(&mut nonce).is_err() {
        nonce = proxy::now_nanos().to_le_bytes();
    }
    format!("{node}/{}", hex(&nonce))
}

#[derive(Default)]
struct Root {
    audit: Option<Rc<RefCell<AuditRoot>>>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(a) = &self.audit {
            a.borrow_mut()
                .on_http_call_response(token_id, num_headers, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = proxy::load_config(FILTER_NAME, Config::parse) else {
            return false;
        };
        let audit = AuditRoot::new(Rc::new(config));
        if let Some(period) = audit.tick_period() {
            let _ = hostcalls::set_tick_period(period);
        }
        self.audit = Some(Rc::new(RefCell::new(audit)));
        true
    }

    fn on_tick(&mut self) {
        if let Some(a) = &self.audit {
            a.borrow_mut().on_tick();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let audit = self.audit.as_ref()?.borrow().http();
        Some(Box::new(Http {
            audit,
            ctx: RequestContext::default(),
        }))
    }
}

struct Http {
    audit: AuditHttp,
    ctx: RequestContext,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.audit
            .on_request_headers(&HeaderSnapshot::new(ProxyHttp), &mut self.ctx);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.audit.on_response_headers(&self.ctx);
        Action::Continue
    }

    fn on_log(&mut self) {
        fill_from_filter_state(&ProxyHttp, &mut self.ctx);
        self.audit.on_log(&self.ctx);
    }
}
