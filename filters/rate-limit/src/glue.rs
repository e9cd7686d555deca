//! The proxy-wasm shell: configure the limiter in every VM, hand each
//! request to the core, publish the decision for audit-log.

use crate::{Config, RateLimit, RateLimiter, FILTER_NAME};
use filter_common::identity::RATE_LIMIT_DECISION_KEY;
use filter_common::proxy::{self, ProxyHttp, ProxyMetrics, ProxyShared};
use filter_common::{Flow, HttpHost, Level, RateLimitOutcome, RequestContext};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

pub fn register() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}

/// 128 random bits from the host (WASI `random_get`, through std).
pub fn random_seed() -> [u8; 16] {
    let a = RandomState::new().build_hasher().finish();
    let b = RandomState::new().build_hasher().finish();
    let mut seed = [0u8; 16];
    for (s, v) in seed
        .iter_mut()
        .zip(a.to_le_bytes().into_iter().chain(b.to_le_bytes()))
    {
        *s = v;
    }
    seed
}

#[derive(Default)]
struct Root {
    limiter: Option<Rc<RateLimiter>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = proxy::load_config(FILTER_NAME, Config::parse) else {
            return false;
        };
        match RateLimiter::configure(
            config,
            &mut ProxyShared,
            &mut ProxyMetrics::default(),
            random_seed(),
            proxy::now_nanos(),
        ) {
            Ok(limiter) => {
                if limiter.created_slots() > 0 {
                    proxy::log(
                        Level::Info,
                        &format!(
                            "{FILTER_NAME}: created {} state slots in shared data",
                            limiter.created_slots()
                        ),
                    );
                }
                self.limiter = Some(Rc::new(limiter));
                true
            }
            Err(err) => {
                proxy::log(Level::Error, &format!("{FILTER_NAME}: {err}"));
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let limiter = self.limiter.clone()?;
        Some(Box::new(Http {
            rate_limit: RateLimit::new(limiter),
        }))
    }
}

struct Http {
    rate_limit: RateLimit,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let mut host = ProxyHttp;
        // Left empty: the core reads only the pseudo-headers its rules use.
        let mut ctx = RequestContext::default();
        // Stats are counted by id: a fresh handle holds nothing to share.
        let flow = self.rate_limit.on_request_headers(
            &mut host,
            &mut ProxyShared,
            &mut ProxyMetrics::default(),
            &mut ctx,
        );
        // For audit-log. "allowed" is left out: filter state costs an
        // allocation per request, and its absence already means it.
        if let Some(decision) = ctx
            .rate_limit
            .as_ref()
            .filter(|d| d.outcome != RateLimitOutcome::Allowed)
        {
            if let Ok(json) = serde_json::to_vec(decision) {
                host.set_property(&[RATE_LIMIT_DECISION_KEY], &json);
            }
        }
        match flow {
            Flow::Continue => Action::Continue,
            Flow::Pause | Flow::Responded => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.rate_limit.on_response_headers(&mut ProxyHttp);
        Action::Continue
    }
}
