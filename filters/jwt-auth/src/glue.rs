//! The proxy-wasm shell (Envoy only). Reusable pieces, so the standalone
//! module and the `chain` module are built the same way:
//!
//! - [`JwtRoot`], owned by the root context: the per-worker [`JwtAuth`]
//!   behind `Rc<RefCell<…>>`, JWKS fetches (`on_tick`,
//!   `on_http_call_response`) and the requests parked while keys are
//!   fetched.
//! - [`JwtHandle`], a cheap clone of the root's state for HTTP contexts.
//! - [`JwtRequest`], one per HTTP stream: `on_request_headers` returns
//!   [`Flow::Pause`] when the request must wait for keys; the caller then
//!   parks it with [`JwtHandle::park`] and a callback. When keys arrive (or
//!   the wait times out) the root makes the stream the effective context and
//!   calls the callback, which calls [`JwtRequest::on_wake`] and resumes,
//!   re-parks, or stops (a response was sent).
//!
//! [`register`] builds the standalone filter from exactly these pieces.

use crate::filter::{define_metrics, publish, Check, JwtAuth, Mode};
use crate::host_crypto::{CallError, HostCrypto, FUNCTION};
use crate::key_set::MAX_JWKS_BYTES;
use crate::key_store::HttpDispatch;
use crate::status::Reason;
use crate::{Config, FILTER_NAME};
use filter_common::abi;
use filter_common::proxy::{self, ProxyHttp, ProxyMetrics, ProxyShared};
use filter_common::{timed, Flow, HttpHost, Level, RequestContext};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, Status};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

/// Most requests parked per worker; more get 503 `overloaded`.
const MAX_PARKED: usize = 1024;

/// Why a parked request is woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A key set arrived or was refetched: check again (may wait again).
    KeysChanged,
    /// The wait is over: decide with what there is (503 without keys).
    TimedOut,
}

type WakeFn = Box<dyn FnOnce(Wake)>;

struct Parked {
    context_id: u32,
    deadline: u64,
    wake: WakeFn,
}

/// The worker's state, shared by the root and the HTTP contexts.
pub struct Worker {
    pub auth: JwtAuth,
    pub metrics: ProxyMetrics,
    host_crypto: Cell<bool>,
    parked: Vec<Parked>,
}

impl Worker {
    fn check(&mut self, host: &mut dyn HttpHost, ctx: &mut RequestContext, mode: Mode) -> Check {
        let call = |args: &[u8]| -> Result<Vec<u8>, CallError> {
            match hostcalls::call_foreign_function(FUNCTION, Some(args)) {
                Ok(reply) => Ok(reply.unwrap_or_default()),
                Err(Status::NotFound) => Err(CallError::Unavailable),
                Err(_) => Err(CallError::Refused),
            }
        };
        let crypto = HostCrypto::new(&call, &self.host_crypto);
        let Worker { auth, metrics, .. } = self;
        auth.check(host, ctx, &crypto, metrics, mode)
    }
}

/// Dispatches JWKS fetches through Envoy clusters.
struct ProxyDispatch;

impl HttpDispatch for ProxyDispatch {
    fn get(&mut self, cluster: &str, authority: &str, path: &str, timeout_ms: u64) -> Option<u32> {
        let headers = vec![
            (":method", "GET"),
            (":path", path),
            (":authority", authority),
            ("accept", "application/json"),
        ];
        hostcalls::dispatch_http_call(
            cluster,
            headers,
            None,
            vec![],
            Duration::from_millis(timeout_ms),
        )
        .ok()
    }
}

fn log(level: Level, message: &str) {
    proxy::log(level, message);
}

/// The root side: create one per root context after `on_configure`.
pub struct JwtRoot {
    root_id: u32,
    worker: Rc<RefCell<Worker>>,
}

impl JwtRoot {
    /// Also defines the filter's counters, so they show at 0.
    pub fn new(root_id: u32, config: Rc<Config>) -> Self {
        let mut metrics = ProxyMetrics::default();
        define_metrics(&mut metrics);
        // Skipped keys and fields without effect: said once per Envoy.
        config.announce(&mut ProxyShared, &mut metrics, &log);
        JwtRoot {
            root_id,
            worker: Rc::new(RefCell::new(Worker {
                auth: JwtAuth::new(config),
                metrics,
                host_crypto: Cell::new(true),
                parked: Vec::new(),
            })),
        }
    }

    /// For HTTP contexts.
    pub fn handle(&self) -> JwtHandle {
        JwtHandle(self.worker.clone())
    }

    /// A new per-request object.
    pub fn request(&self) -> JwtRequest {
        JwtRequest {
            handle: self.handle(),
            deadline: 0,
        }
    }

    /// How often `on_tick` must run (`None`: no ticks needed; only remote
    /// key sets need them).
    pub fn tick_period(&self) -> Option<Duration> {
        let w = self.worker.borrow();
        let remote = (0..w.auth.config.providers.len()).any(|p| w.auth.keys.is_remote(p));
        remote.then_some(Duration::from_millis(100))
    }

    /// Picks up key sets, starts due fetches, wakes parked requests.
    pub fn on_tick(&mut self) {
        let now = proxy::now_nanos();
        let changed = {
            let mut w = self.worker.borrow_mut();
            let Worker { auth, metrics, .. } = &mut *w;
            auth.keys
                .on_tick(now, &mut ProxyShared, &mut ProxyDispatch, metrics, &log)
        };
        self.wake(now, changed.wake);
    }

    /// `true` if the call was one of ours.
    pub fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
    ) -> bool {
        let now = proxy::now_nanos();
        let status = proxy::callout_status(num_headers);
        let (status, body) = if body_size > MAX_JWKS_BYTES {
            (Some(413), None)
        } else if status.is_none() || body_size == 0 {
            (status, None)
        } else {
            let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
                .ok()
                .flatten();
            (status, body)
        };
        let changed = {
            let mut w = self.worker.borrow_mut();
            let Worker { auth, metrics, .. } = &mut *w;
            auth.keys.on_response(
                token_id,
                status,
                body.as_deref(),
                now,
                &mut ProxyShared,
                &mut ProxyDispatch,
                metrics,
                &log,
            )
        };
        match changed {
            Some(c) => {
                self.wake(now, c.wake);
                true
            }
            None => false,
        }
    }

    /// Wakes parked requests: all when keys changed, else the timed-out.
    fn wake(&mut self, now: u64, keys_changed: bool) {
        let due: Vec<(u32, WakeFn, Wake)> = {
            let mut w = self.worker.borrow_mut();
            let (go, stay): (Vec<Parked>, Vec<Parked>) = std::mem::take(&mut w.parked)
                .into_iter()
                .partition(|p| keys_changed || p.deadline <= now);
            w.parked = stay;
            go.into_iter()
                .map(|p| {
                    let kind = if p.deadline <= now {
                        Wake::TimedOut
                    } else {
                        Wake::KeysChanged
                    };
                    (p.context_id, p.wake, kind)
                })
                .collect()
        };
        if due.is_empty() {
            return;
        }
        for (id, wake, kind) in due {
            if hostcalls::set_effective_context(id).is_ok() {
                wake(kind);
            }
        }
        let _ = hostcalls::set_effective_context(self.root_id);
    }
}

/// The root's state, for HTTP contexts.
#[derive(Clone)]
pub struct JwtHandle(Rc<RefCell<Worker>>);

impl JwtHandle {
    /// Holds a request until keys change or `deadline` (host nanoseconds);
    /// `wake` runs with the stream as the effective context. When too many
    /// requests wait, `wake(TimedOut)` runs at once instead.
    pub fn park(&self, context_id: u32, deadline: u64, wake: Box<dyn FnOnce(Wake)>) {
        let mut w = self.0.borrow_mut();
        if w.parked.len() < MAX_PARKED {
            w.parked.push(Parked {
                context_id,
                deadline,
                wake,
            });
            return;
        }
        drop(w);
        wake(Wake::TimedOut);
    }

    /// Forgets a parked request (its stream ended).
    pub fn unpark(&self, context_id: u32) {
        self.0
            .borrow_mut()
            .parked
            .retain(|p| p.context_id != context_id);
    }

    /// Parks a stream whose state lives in `stream`. On each wake-up, with
    /// the stream as the effective context, `step` decides: `Continue`
    /// resumes the request, `Pause` parks it again (same deadline),
    /// `Responded` leaves it (a response was sent). The standalone filter
    /// and the chain both park this way; `step` is where they differ.
    pub fn park_stream<S: 'static>(
        &self,
        context_id: u32,
        stream: Rc<RefCell<S>>,
        deadline: fn(&S) -> u64,
        step: fn(&mut S, Wake) -> Flow,
    ) {
        let at = deadline(&stream.borrow());
        let again = self.clone();
        self.park(
            context_id,
            at,
            Box::new(move |wake| {
                let flow = step(&mut stream.borrow_mut(), wake);
                match flow {
                    Flow::Continue => {
                        abi::resume_http_request();
                    }
                    Flow::Pause => again.park_stream(context_id, stream, deadline, step),
                    Flow::Responded => {}
                }
            }),
        );
    }

    pub fn parked(&self) -> usize {
        self.0.borrow().parked.len()
    }
}

/// One request's jwt-auth step.
pub struct JwtRequest {
    handle: JwtHandle,
    deadline: u64,
}

impl JwtRequest {
    /// Checks the request. [`Flow::Pause`]: park it (see [`JwtHandle::park`]
    /// and [`JwtRequest::deadline`]); [`Flow::Responded`]: a rejection was
    /// sent. `host` may be a [`filter_common::HeaderSnapshot`] the caller
    /// shares with other filters.
    pub fn on_request_headers(
        &mut self,
        host: &mut dyn HttpHost,
        ctx: &mut RequestContext,
    ) -> Flow {
        let check = self.handle.0.borrow_mut().check(host, ctx, Mode::MayWait);
        self.flow(host, check, ctx)
    }

    /// When the parked request must be decided anyway.
    pub fn deadline(&self) -> u64 {
        self.deadline
    }

    /// Checks again after a wake-up. [`Flow::Pause`] means park again (same
    /// deadline). After [`Flow::Continue`] the caller resumes the request.
    pub fn on_wake(&mut self, ctx: &mut RequestContext, wake: Wake) -> Flow {
        let mode = match wake {
            Wake::KeysChanged if proxy::now_nanos() < self.deadline => Mode::MayWait,
            _ => Mode::Final,
        };
        let check = self.handle.0.borrow_mut().check(&mut ProxyHttp, ctx, mode);
        self.flow(&mut ProxyHttp, check, ctx)
    }

    fn flow(&mut self, host: &mut dyn HttpHost, check: Check, ctx: &mut RequestContext) -> Flow {
        match check {
            Check::Continue => Flow::Continue,
            Check::Responded(_) => Flow::Responded,
            Check::Wait { deadline } => {
                if self.deadline == 0 {
                    self.deadline = deadline;
                }
                if self.handle.parked() >= MAX_PARKED {
                    let mut w = self.handle.0.borrow_mut();
                    let Worker { auth, metrics, .. } = &mut *w;
                    auth.deny(host, ctx, Reason::Overloaded, metrics);
                    return Flow::Responded;
                }
                Flow::Pause
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The standalone filter.

pub fn register() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| Box::new(Root { id, jwt: None }));
}

struct Root {
    id: u32,
    jwt: Option<JwtRoot>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        if let Some(j) = &mut self.jwt {
            j.on_http_call_response(token_id, num_headers, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = proxy::load_config(FILTER_NAME, Config::parse) else {
            return false;
        };
        let jwt = JwtRoot::new(self.id, Rc::new(config));
        if let Some(period) = jwt.tick_period() {
            let _ = hostcalls::set_tick_period(period);
        }
        self.jwt = Some(jwt);
        true
    }

    fn on_tick(&mut self) {
        if let Some(j) = &mut self.jwt {
            j.on_tick();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        // Envoy creates no stream for a plugin whose config failed; should
        // it anyway, fail closed (returning None would trap the VM).
        let Some(jwt) = self.jwt.as_ref() else {
            return Some(Box::new(Closed));
        };
        Some(Box::new(Http {
            id,
            handle: jwt.handle(),
            stream: Rc::new(RefCell::new(Stream {
                request: jwt.request(),
                ctx: RequestContext::default(),
            })),
        }))
    }
}

/// Answers 503 to everything.
struct Closed;

impl Context for Closed {}

impl HttpContext for Closed {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let r = crate::response::Rejection::new(Reason::KeysUnavailable, "portcullis");
        // Sent or not, the request stays paused.
        let _ = r.send(&mut ProxyHttp);
        Action::Pause
    }
}

struct Stream {
    request: JwtRequest,
    ctx: RequestContext,
}

struct Http {
    id: u32,
    handle: JwtHandle,
    stream: Rc<RefCell<Stream>>,
}

impl Stream {
    fn deadline(&self) -> u64 {
        self.request.deadline()
    }

    /// Re-checks after a wake-up, publishing the decision once made.
    fn on_wake(&mut self, wake: Wake) -> Flow {
        let flow = self.request.on_wake(&mut self.ctx, wake);
        if flow != Flow::Pause {
            publish(&mut ProxyHttp, &self.ctx);
        }
        flow
    }
}

impl Context for Http {
    fn on_done(&mut self) -> bool {
        self.handle.unpark(self.id);
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let flow = {
            let mut s = self.stream.borrow_mut();
            let Stream { request, ctx } = &mut *s;
            let flow = timed!(
                "jwt.request_headers",
                request.on_request_headers(&mut ProxyHttp, ctx)
            );
            if flow != Flow::Pause {
                timed!("jwt.publish", publish(&mut ProxyHttp, ctx));
            }
            flow
        };
        match flow {
            Flow::Continue => Action::Continue,
            Flow::Responded => Action::Pause,
            Flow::Pause => {
                self.handle.park_stream(
                    self.id,
                    self.stream.clone(),
                    Stream::deadline,
                    Stream::on_wake,
                );
                Action::Pause
            }
        }
    }
}
