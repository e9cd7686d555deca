//! The proxy-wasm shell: read config, hand each request to the core.

use crate::{Config, FILTER_NAME};
use filter_common::proxy;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};
use std::rc::Rc;

pub fn register() {
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(Root::default()));
}

#[derive(Default)]
struct Root {
    config: Option<Rc<Config>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        self.config = proxy::load_config(FILTER_NAME, Config::parse).map(Rc::new);
        self.config.is_some()
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
        let config = self.config.clone()?;
        Some(Box::new(Http { _config: config }))
    }
}

struct Http {
    _config: Rc<Config>,
}

impl Context for Http {}
impl HttpContext for Http {}
