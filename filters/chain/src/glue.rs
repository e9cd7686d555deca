//! The proxy-wasm shell of the chain: one root context and one HTTP context
//! drive the three filters' own glue pieces, in the order of
//! `envoy/chain-filters.yaml`: audit-log sees the request first, jwt-auth
//! decides who the caller is, rate-limit throttles (keyed on that identity if
//! asked), and audit-log writes the event at stream end. Decisions pass from
//! one to the next in memory ([`RequestContext`]), not through filter state.

use crate::internal_error::{define_metrics, internal_error};
use crate::{Config, FILTER_NAME};
use audit_log::glue::{AuditHttp, AuditRoot};
use filter_common::proxy::{self, ProxyHttp, ProxyMetrics, ProxyShared};
use filter_common::{timed, Flow, HeaderSnapshot, HttpHost, Level, RequestContext, RequestInfo};
use jwt_auth::glue::{JwtHandle, JwtRequest, JwtRoot, Wake};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use rate_limit::{RateLimit, RateLimiter};
use std::cell::RefCell;
use std::rc::Rc;

pub fn register() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|id| Box::new(Root::new(id)));
}

/// Rate-limit's per-worker state and its metrics.
struct Limiter {
    limiter: Rc<RateLimiter>,
    metrics: Rc<RefCell<ProxyMetrics>>,
}

struct Root {
    id: u32,
    audit: Option<Rc<RefCell<AuditRoot>>>,
    jwt: Option<JwtRoot>,
    limiter: Option<Limiter>,
}

impl Root {
    fn new(id: u32) -> Self {
        Root {
            id,
            audit: None,
            jwt: None,
            limiter: None,
        }
    }

    fn configure(&mut self, config: Config) -> Result<(), String> {
        define_metrics(&mut ProxyMetrics::default());
        self.audit = match config.audit_log {
            Some(c) => Some(Rc::new(RefCell::new(
                AuditRoot::new(Rc::new(c)).map_err(|e| format!("audit_log: {e}"))?,
            ))),
            None => None,
        };
        self.jwt = config.jwt_auth.map(|c| JwtRoot::new(self.id, Rc::new(c)));
        self.limiter = match config.rate_limit {
            None => None,
            Some(c) => {
                let mut metrics = ProxyMetrics::default();
                let seed = rate_limit::glue::random_seed();
                let limiter = RateLimiter::configure(
                    c,
                    &mut ProxyShared,
                    &mut metrics,
                    seed,
                    proxy::now_nanos(),
                )
                .map_err(|e| format!("rate_limit: {e}"))?;
                Some(Limiter {
                    limiter: Rc::new(limiter),
                    metrics: Rc::new(RefCell::new(metrics)),
                })
            }
        };
        let periods = [
            self.audit.as_ref().and_then(|a| a.borrow().tick_period()),
            self.jwt.as_ref().and_then(JwtRoot::tick_period),
        ];
        // Each filter checks elapsed time itself, so ticking one more often
        // than it asked is harmless.
        if let Some(period) = periods.into_iter().flatten().min() {
            let _ = hostcalls::set_tick_period(period);
        }
        Ok(())
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        if let Some(j) = &mut self.jwt {
            if j.on_http_call_response(token_id, num_headers, body_size) {
                return;
            }
        }
        if let Some(a) = &self.audit {
            timed!(
                "audit.callout_answered",
                a.borrow_mut()
                    .on_http_call_response(token_id, num_headers, body_size)
            );
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = proxy::load_config(FILTER_NAME, Config::parse) else {
            return false;
        };
        match self.configure(config) {
            Ok(()) => true,
            Err(err) => {
                proxy::log(
                    Level::Error,
                    &format!("{FILTER_NAME}: invalid plugin configuration: {err}"),
                );
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(j) = &mut self.jwt {
            j.on_tick();
        }
        if let Some(a) = &self.audit {
            timed!("audit.tick", a.borrow_mut().on_tick());
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        let stream = Stream {
            ctx: RequestContext::default(),
            audit: self.audit.as_ref().map(|a| a.borrow().http()),
            jwt: self.jwt.as_ref().map(JwtRoot::request),
            rate_limit: self
                .limiter
                .as_ref()
                .map(|l| (RateLimit::new(Rc::clone(&l.limiter)), Rc::clone(&l.metrics))),
        };
        Some(Box::new(Http {
            id,
            jwt: self.jwt.as_ref().map(JwtRoot::handle),
            stream: Rc::new(RefCell::new(stream)),
        }))
    }
}

/// One request's state, shared with the wake-up callback when jwt-auth
/// parks the request until keys arrive.
struct Stream {
    ctx: RequestContext,
    audit: Option<AuditHttp>,
    jwt: Option<JwtRequest>,
    rate_limit: Option<(RateLimit, Rc<RefCell<ProxyMetrics>>)>,
}

impl Stream {
    /// When jwt-auth decides a parked request anyway.
    fn jwt_deadline(&self) -> u64 {
        self.jwt.as_ref().map_or(0, JwtRequest::deadline)
    }

    /// After a wake-up: jwt-auth checks again, then the rest of the chain.
    fn on_wake(&mut self, wake: Wake) -> Flow {
        let flow = match &mut self.jwt {
            Some(j) => j.on_wake(&mut self.ctx, wake),
            None => Flow::Continue,
        };
        match flow {
            Flow::Continue => self.after_jwt(&mut ProxyHttp),
            other => other,
        }
    }

    /// The steps after jwt-auth. An internal error answers 500: rate
    /// limiting is never skipped.
    fn after_jwt(&mut self, host: &mut dyn HttpHost) -> Flow {
        let Some((rate_limit, metrics)) = &mut self.rate_limit else {
            return Flow::Continue;
        };
        let Ok(mut metrics) = metrics.try_borrow_mut() else {
            // A fresh handle: the busy one is what failed.
            let mut fresh = ProxyMetrics::default();
            return internal_error(host, &mut fresh, &mut self.ctx, "metrics_busy");
        };
        rate_limit.on_request_headers(host, &mut ProxyShared, &mut *metrics, &mut self.ctx)
    }
}

struct Http {
    id: u32,
    jwt: Option<JwtHandle>,
    stream: Rc<RefCell<Stream>>,
}

impl Context for Http {
    fn on_done(&mut self) -> bool {
        if let Some(h) = &self.jwt {
            h.unpark(self.id);
        }
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let flow = timed!("chain.request_headers", {
            // Every filter reads request headers: one host call for all.
            let mut host = HeaderSnapshot::new(ProxyHttp);
            let mut s = self.stream.borrow_mut();
            let Stream {
                ctx, audit, jwt, ..
            } = &mut *s;
            // The first section to read a header pays for the header map.
            if let Some(a) = audit {
                timed!("audit.request_headers", a.on_request_headers(&host, ctx));
            }
            if ctx.request.method.is_empty() {
                ctx.request = RequestInfo::from_host(&host);
            }
            let flow = jwt.as_mut().map_or(Flow::Continue, |j| {
                timed!("jwt.request_headers", j.on_request_headers(&mut host, ctx))
            });
            match flow {
                Flow::Continue => timed!("rate_limit.request_headers", s.after_jwt(&mut host)),
                other => other,
            }
        });
        match flow {
            Flow::Continue => Action::Continue,
            Flow::Responded => Action::Pause,
            Flow::Pause => {
                if let Some(h) = &self.jwt {
                    h.park_stream(
                        self.id,
                        self.stream.clone(),
                        Stream::jwt_deadline,
                        Stream::on_wake,
                    );
                }
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let mut s = self.stream.borrow_mut();
        let Stream {
            ctx,
            audit,
            rate_limit,
            ..
        } = &mut *s;
        if let Some((r, _)) = rate_limit {
            r.on_response_headers(&mut ProxyHttp);
        }
        if let Some(a) = audit {
            a.on_response_headers(ctx);
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        let mut s = self.stream.borrow_mut();
        let Stream { ctx, audit, .. } = &mut *s;
        if let Some(a) = audit {
            timed!("audit.log", a.on_log(ctx));
        }
    }
}
