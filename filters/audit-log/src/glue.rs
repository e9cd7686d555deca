//! The proxy-wasm shell: [`AuditRoot`] (root side: ticks, callouts) and
//! [`AuditHttp`] (one per request), the pieces the `chain` module reuses
//! and the standalone plugin ([`crate::plugin`]) is built from. They only
//! lend the core the host: everything else is in [`crate::filter`].

use crate::filter::{AuditLog, RequestAudit};
use crate::hash_chain::producer_id;
use crate::summed_gauges::SummedGauges;
use crate::Config;
use filter_common::proxy::{self, ProxyCallouts, ProxyHttp, ProxyMetrics};
use filter_common::{HostError, HttpHost, RequestContext, RequestInfo};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// The worker's audit log and its stats (`audit_log.queue_bytes` sums
/// every worker's queues), shared by the root and every request.
struct Worker {
    log: AuditLog,
    metrics: SummedGauges<ProxyMetrics>,
}

/// Root side: owns the worker's [`AuditLog`] and ships its batches.
pub struct AuditRoot(Rc<RefCell<Worker>>);

impl AuditRoot {
    /// Call once per `on_configure`. The producer id is `<node.id>/<16 hex
    /// digits from WASI random_get>` (the host time if random_get fails).
    /// Defines the stats: an error refuses the configuration.
    pub fn new(config: Rc<Config>) -> Result<Self, HostError> {
        let mut nonce = [0u8; 8];
        if getrandom::getrandom(&mut nonce).is_err() {
            nonce = proxy::now_nanos().to_le_bytes();
        }
        let producer = producer_id(proxy::property(&["node", "id"]).as_deref(), nonce);
        let mut metrics = SummedGauges::new(ProxyMetrics::default());
        let log = AuditLog::new(config, producer, &mut metrics)?;
        Ok(AuditRoot(Rc::new(RefCell::new(Worker { log, metrics }))))
    }

    /// The period to pass to `set_tick_period`; `None` without HTTP sinks.
    pub fn tick_period(&self) -> Option<Duration> {
        let period = self.0.borrow().log.tick_period_ms();
        period.map(Duration::from_millis)
    }

    pub fn on_tick(&mut self) {
        let Worker { log, metrics } = &mut *self.0.borrow_mut();
        log.on_tick(proxy::now_nanos(), metrics, &mut ProxyCallouts, &proxy::log);
    }

    /// Returns `false` if the callout was not one of ours.
    pub fn on_http_call_response(&mut self, token: u32, num_headers: usize, _body: usize) -> bool {
        let status = proxy::callout_status(num_headers);
        let Worker { log, metrics } = &mut *self.0.borrow_mut();
        let now = proxy::now_nanos();
        log.on_http_call_response(token, status, now, metrics, &mut ProxyCallouts, &proxy::log)
    }

    /// A request's half, sharing this worker's log.
    pub fn http(&self) -> AuditHttp {
        AuditHttp(self.0.clone(), RequestAudit::default())
    }
}

/// One request's half.
pub struct AuditHttp(Rc<RefCell<Worker>>, RequestAudit);

impl AuditHttp {
    /// Call first in the request headers phase (before other filters act).
    /// Fills `ctx.request` if nobody has. It reads five request headers:
    /// give it a [`filter_common::HeaderSnapshot`] (shared with the other filters, in the
    /// chain) rather than the bare host.
    pub fn on_request_headers(&mut self, host: &dyn HttpHost, ctx: &mut RequestContext) {
        if ctx.request.method.is_empty() {
            ctx.request = RequestInfo::from_host(host);
        }
        self.1 = self.0.borrow().log.on_request_headers(host, ctx);
    }

    pub fn on_response_headers(&mut self, _ctx: &RequestContext) {
        self.0
            .borrow()
            .log
            .on_response_headers(&ProxyHttp, &mut self.1);
    }

    /// Call in `on_log` with the request's decisions. (The standalone
    /// plugin first reads them from filter state, where the separate
    /// jwt-auth and rate-limit filters leave them; the chain has them in
    /// memory and skips those hostcalls.)
    pub fn on_log(&mut self, ctx: &RequestContext) {
        let Worker { log, metrics } = &mut *self.0.borrow_mut();
        log.on_log(&mut ProxyHttp, ctx, &self.1, metrics);
    }
}
