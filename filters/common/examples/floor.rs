//! The floor: the least a wasm HTTP filter can do. It reads one request
//! header and lets the request go on. `cargo xtask bench` runs it to show
//! what any proxy-wasm filter costs before it does any work of its own.
//!
//! It only means something for Envoy (`wasm32-wasip1`); on every other
//! target it compiles to an empty library so workspace builds stay green.
#![cfg_attr(not(target_os = "wasi"), allow(unused))]

#[cfg(target_os = "wasi")]
mod glue {
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, ContextType, LogLevel, MapType};

    /// The header the floor reads: one host call, one copy across the boundary.
    const HEADER: &str = "authorization";

    pub fn register() {
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| Box::new(Root));
    }

    struct Root;

    impl Context for Root {}

    impl RootContext for Root {
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Floor))
        }
    }

    struct Floor;

    impl Context for Floor {}

    impl HttpContext for Floor {
        fn on_http_request_headers(&mut self, _headers: usize, _eos: bool) -> Action {
            // `_bytes`: a non-UTF-8 value must not trap the VM.
            let value = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, HEADER);
            std::hint::black_box(value.ok().flatten().map(|v| v.len()));
            Action::Continue
        }
    }
}

#[cfg(target_os = "wasi")]
proxy_wasm::main! {{
    glue::register();
}}
