//! The floor: the least a wasm HTTP filter can do. It reads one request
//! header and lets the request go on. `cargo xtask bench` runs it to show
//! what any proxy-wasm filter costs before it does any work of its own.
//!
//! Its plugin configuration may name one host call and a count
//! (`"property 20"`): the filter then makes that call that many more times
//! per request, in the request headers callback, or in `on_log` when the
//! name starts with `log:` (`"log:property.xds.route_name 20"`: any
//! attribute by its dotted path). `cargo xtask bench --calibrate` compares such variants with
//! the plain floor to price each kind of host call, which is what decides
//! how the filters should talk to Envoy.
//!
//! It only means something for Envoy (`wasm32-wasip1`); on every other
//! target it compiles to an empty library so workspace builds stay green.
#![cfg_attr(not(target_os = "wasi"), allow(unused))]

#[cfg(target_os = "wasi")]
mod glue {
    use proxy_wasm::hostcalls;
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
    use std::hint::black_box;

    /// The header the floor reads: one host call, one copy across the boundary.
    const HEADER: &str = "authorization";

    /// The `expr` op's expression: the stream attributes audit-log reads,
    /// `has()` only where a stream may lack one.
    const EXPR: &str = r#"[request.protocol, source.address,
        has(response.code) ? response.code : -1,
        has(response.code_details) ? response.code_details : '',
        request.total_size, response.total_size,
        has(upstream.address) ? upstream.address : '',
        has(xds.cluster_name) ? xds.cluster_name : '',
        xds.route_name, connection.mtls,
        has(request.id) ? request.id : '']"#;

    pub fn register() {
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| {
            Box::new(Root {
                op: Op::None,
                count: 0,
                in_log: false,
            })
        });
    }

    /// The host calls `--calibrate` prices (see `xtask/src/bench/calibrate.rs`).
    #[derive(Clone)]
    enum Op {
        None,
        /// A request header that is present (`authorization`).
        Header,
        /// A request header that is absent.
        HeaderMissing,
        /// Every request header in one call.
        Map,
        /// A string attribute (`request.protocol`).
        Property,
        /// An integer attribute (`request.total_size`).
        PropertyInt,
        /// Any attribute, by its path.
        PropertyAt(Vec<String>),
        /// Writing a request header.
        SetHeader,
        /// Removing a request header that is not there.
        RemoveHeader,
        /// Reading one shared-data key.
        SharedGet,
        /// Reading it and writing it back with its CAS.
        SharedCas,
        /// Writing filter state.
        FilterState,
        /// The host clock.
        Time,
        /// A log call below the log level (the call, no output).
        Log,
        /// Incrementing a counter (defined once, at configure).
        Metric(u32),
        /// Evaluating one CEL expression (created at configure) that lists
        /// the attributes audit-log reads at stream end (tried as a
        /// replacement for ten single reads: cheaper here, dearer in the
        /// chain; see BENCHMARKS.md).
        Expr(u32),
    }

    impl Op {
        fn parse(name: &str) -> Option<Op> {
            Some(match name {
                "header" => Op::Header,
                "header_missing" => Op::HeaderMissing,
                "map" => Op::Map,
                "property" => Op::Property,
                "property_int" => Op::PropertyInt,
                "set_header" => Op::SetHeader,
                "remove_header" => Op::RemoveHeader,
                "shared_get" => Op::SharedGet,
                "shared_cas" => Op::SharedCas,
                "filter_state" => Op::FilterState,
                "time" => Op::Time,
                "log" => Op::Log,
                "expr" => {
                    let created =
                        hostcalls::call_foreign_function("expr_create", Some(EXPR.as_bytes()));
                    let token = created.ok().flatten()?;
                    Op::Expr(u32::from_le_bytes(token.get(..4)?.try_into().ok()?))
                }
                "metric" => {
                    Op::Metric(hostcalls::define_metric(MetricType::Counter, "floor.calls").ok()?)
                }
                _ => Op::PropertyAt(
                    name.strip_prefix("property.")?
                        .split('.')
                        .map(str::to_string)
                        .collect(),
                ),
            })
        }

        fn run(&self) {
            let req = MapType::HttpRequestHeaders;
            match self {
                Op::None => {}
                Op::Header => {
                    black_box(hostcalls::get_map_value_bytes(req, HEADER).ok());
                }
                Op::HeaderMissing => {
                    black_box(hostcalls::get_map_value_bytes(req, "x-floor-absent").ok());
                }
                Op::Map => {
                    black_box(hostcalls::get_map_bytes(req).ok());
                }
                Op::Property => {
                    black_box(hostcalls::get_property(vec!["request", "protocol"]).ok());
                }
                Op::PropertyInt => {
                    black_box(hostcalls::get_property(vec!["request", "total_size"]).ok());
                }
                Op::PropertyAt(path) => {
                    black_box(
                        hostcalls::get_property(path.iter().map(String::as_str).collect()).ok(),
                    );
                }
                Op::SetHeader => {
                    black_box(hostcalls::set_map_value_bytes(req, "x-floor", Some(b"1")).ok());
                }
                Op::RemoveHeader => {
                    black_box(hostcalls::set_map_value_bytes(req, "x-floor-absent", None).ok());
                }
                Op::SharedGet => {
                    black_box(hostcalls::get_shared_data("floor").ok());
                }
                Op::SharedCas => {
                    if let Ok((value, cas)) = hostcalls::get_shared_data("floor") {
                        let v = value.unwrap_or_else(|| vec![0; 16]);
                        black_box(hostcalls::set_shared_data("floor", Some(&v), cas).ok());
                    }
                }
                Op::FilterState => {
                    black_box(hostcalls::set_property(vec!["floor"], Some(b"1")).ok());
                }
                Op::Time => {
                    black_box(hostcalls::get_current_time().ok());
                }
                Op::Log => {
                    black_box(hostcalls::log(LogLevel::Trace, "floor").ok());
                }
                Op::Expr(token) => {
                    let arg = token.to_le_bytes();
                    match hostcalls::call_foreign_function("expr_evaluate", Some(&arg)) {
                        Ok(v) => {
                            black_box(v);
                        }
                        Err(e) => {
                            let _ = hostcalls::log(LogLevel::Warn, &format!("floor: expr {e:?}"));
                        }
                    }
                }
                Op::Metric(id) => {
                    black_box(hostcalls::increment_metric(*id, 1).ok());
                }
            }
        }
    }

    struct Root {
        op: Op,
        count: u32,
        in_log: bool,
    }

    impl Context for Root {}

    impl RootContext for Root {
        fn on_configure(&mut self, size: usize) -> bool {
            let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
                .ok()
                .flatten()
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&config);
            let mut words = text.split_whitespace();
            let first = words.next();
            self.in_log = first.is_some_and(|w| w.starts_with("log:"));
            let (op, count) = match (first.map(|w| w.trim_start_matches("log:")), words.next()) {
                (None, _) => (Op::None, 0),
                (Some(name), count) => {
                    let (Some(op), Some(count)) =
                        (Op::parse(name), count.and_then(|c| c.parse().ok()))
                    else {
                        let _ = hostcalls::log(
                            LogLevel::Error,
                            &format!("floor: expected `<host call> <count>`, got `{text}`"),
                        );
                        return false;
                    };
                    (op, count)
                }
            };
            self.op = op;
            self.count = count;
            true
        }

        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }

        fn create_http_context(&self, _id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(Floor {
                op: self.op.clone(),
                count: self.count,
                in_log: self.in_log,
            }))
        }
    }

    struct Floor {
        op: Op,
        count: u32,
        in_log: bool,
    }

    impl Floor {
        fn run(&self) {
            for _ in 0..self.count {
                self.op.run();
            }
        }
    }

    impl Context for Floor {}

    impl HttpContext for Floor {
        fn on_http_request_headers(&mut self, _headers: usize, _eos: bool) -> Action {
            // `_bytes`: a non-UTF-8 value must not trap the VM.
            let value = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, HEADER);
            black_box(value.ok().flatten().map(|v| v.len()));
            if !self.in_log {
                self.run();
            }
            Action::Continue
        }

        fn on_log(&mut self) {
            if self.in_log {
                self.run();
            }
        }
    }
}

#[cfg(target_os = "wasi")]
proxy_wasm::main! {{
    glue::register();
}}
