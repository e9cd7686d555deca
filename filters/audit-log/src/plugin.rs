//! The standalone audit-log plugin (the `plugin` feature): one root and
//! one HTTP context around [`AuditRoot`] and [`AuditHttp`]. The `chain`
//! module links the glue without this entry point.

use crate::glue::{AuditHttp, AuditRoot};
use crate::{fill_from_filter_state, Config, FILTER_NAME};
use filter_common::proxy::{self, ProxyHttp};
use filter_common::{HeaderSnapshot, Level, RequestContext};
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;

pub fn register() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}

/// The standalone plugin's root.
#[derive(Default)]
struct Root(Option<AuditRoot>);

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body: usize, _: usize) {
        if let Some(a) = &mut self.0 {
            a.on_http_call_response(token, headers, body);
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(config) = proxy::load_config(FILTER_NAME, Config::parse) else {
            return false;
        };
        match AuditRoot::new(Rc::new(config)) {
            Ok(audit) => {
                if let Some(period) = audit.tick_period() {
                    let _ = proxy_wasm::hostcalls::set_tick_period(period);
                }
                self.0 = Some(audit);
                true
            }
            Err(e) => {
                proxy::log(Level::Error, &format!("{FILTER_NAME}: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(a) = &mut self.0 {
            a.on_tick();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let audit = self.0.as_ref()?.http();
        Some(Box::new(Http(audit, RequestContext::default())))
    }
}

/// The standalone plugin's request.
struct Http(AuditHttp, RequestContext);

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        self.0
            .on_request_headers(&HeaderSnapshot::new(ProxyHttp), &mut self.1);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.0.on_response_headers(&self.1);
        Action::Continue
    }

    fn on_log(&mut self) {
        fill_from_filter_state(&ProxyHttp, &mut self.1);
        self.0.on_log(&self.1);
    }
}
