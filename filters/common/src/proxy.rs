//! The host seam implemented on proxy-wasm hostcalls (Envoy only).
//!
//! Request-path calls go through [`crate::abi`], which never panics: the
//! SDK's context traits `unwrap()` every result, its `String` getters panic
//! on non-UTF-8 client bytes, and its `hostcalls` panic on unexpected
//! statuses; any of these would trap the worker's VM.

use crate::abi::{self, Map};
use crate::host::{Callout, Callouts, CasOutcome, HostError, HttpHost, Level, Metrics, SharedData};
use crate::stats::{StatId, StatKind};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MetricType, Status};
use std::collections::HashMap;
use std::time::UNIX_EPOCH;

/// The HTTP stream whose callback is running (the effective context).
#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyHttp;

impl HttpHost for ProxyHttp {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        abi::get_header(Map::RequestHeaders, name)
    }
    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        abi::get_headers(Map::RequestHeaders)
    }
    fn set_request_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        abi::replace_header(Map::RequestHeaders, name, value)
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        abi::remove_header(Map::RequestHeaders, name)
    }
    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        abi::get_header(Map::ResponseHeaders, name)
    }
    fn set_response_header(&mut self, name: &str, value: &[u8]) {
        // Informational headers (rate-limit state): nothing to fail closed on.
        let _ = abi::replace_header(Map::ResponseHeaders, name, value);
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        property(path)
    }
    fn set_property(&mut self, path: &[&str], value: &[u8]) {
        abi::set_property(path, value);
    }
    fn send_response(
        &mut self,
        status: u32,
        details: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        let headers: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
        abi::send_local_response(status, details, &headers, body)
    }
    fn now_nanos(&self) -> u64 {
        now_nanos()
    }
    fn log(&self, level: Level, message: &str) {
        log(level, message);
    }
}

pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    abi::get_property(path)
}

pub fn now_nanos() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

pub fn log(level: Level, message: &str) {
    let level = match level {
        Level::Trace => LogLevel::Trace,
        Level::Debug => LogLevel::Debug,
        Level::Info => LogLevel::Info,
        Level::Warn => LogLevel::Warn,
        Level::Error => LogLevel::Error,
    };
    let _ = hostcalls::log(level, message);
}

/// The status of the callout response being delivered, `None` for a failed
/// call (refused, reset, timed out: it has no headers, and reading them
/// would get a status the SDK panics on).
pub fn callout_status(num_headers: usize) -> Option<u32> {
    if num_headers == 0 {
        return None;
    }
    let raw = abi::get_header(Map::HttpCallResponseHeaders, ":status");
    crate::callout::status(raw.as_deref())
}

/// The plugin configuration handed to `on_configure`.
pub fn plugin_configuration() -> Vec<u8> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Callouts through Envoy clusters.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyCallouts;

impl Callouts for ProxyCallouts {
    fn dispatch(&mut self, call: &Callout<'_>) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(
            call.cluster,
            call.headers.to_vec(),
            call.body,
            vec![],
            std::time::Duration::from_millis(call.timeout_ms),
        )
        .map_err(|s| HostError {
            call: "dispatch_http_call",
            status: s as u32,
        })
    }
}

/// Shared data across the workers of one Envoy.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyShared;

impl SharedData for ProxyShared {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(v), cas)) => Some((v, cas.unwrap_or(0))),
            _ => None,
        }
    }
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> CasOutcome {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => CasOutcome::Written,
            Err(Status::CasMismatch) => CasOutcome::Conflict,
            Err(_) => CasOutcome::Failed,
        }
    }
}

/// Envoy stats defined on first use and cached per VM.
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    ids: HashMap<String, u32>,
}

impl ProxyMetrics {
    fn id(&mut self, name: &str, kind: MetricType) -> Option<u32> {
        if let Some(id) = self.ids.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(kind, name).ok()?;
        self.ids.insert(name.to_string(), id);
        Some(id)
    }
}

impl Metrics for ProxyMetrics {
    fn define(&mut self, kind: StatKind, name: &str) -> Result<StatId, HostError> {
        let kind = match kind {
            StatKind::Counter => MetricType::Counter,
            StatKind::Gauge => MetricType::Gauge,
        };
        hostcalls::define_metric(kind, name)
            .map(StatId)
            .map_err(|s| HostError {
                call: "define_metric",
                status: s as u32,
            })
    }
    fn add(&mut self, id: StatId, delta: i64) {
        let _ = hostcalls::increment_metric(id.0, delta);
    }
    fn record(&mut self, id: StatId, value: u64) {
        let _ = hostcalls::record_metric(id.0, value);
    }
    fn increment(&mut self, name: &str, delta: i64) {
        if let Some(id) = self.id(name, MetricType::Counter) {
            let _ = hostcalls::increment_metric(id, delta);
        }
    }
    fn gauge(&mut self, name: &str, value: u64) {
        if let Some(id) = self.id(name, MetricType::Gauge) {
            let _ = hostcalls::record_metric(id, value);
        }
    }
}

/// Reads and parses the plugin configuration. On error, logs the field path
/// and message at `error` level (it shows in Envoy's log) and returns `None`,
/// so `on_configure` can return `false` and Envoy refuses the plugin.
pub fn load_config<T>(
    filter: &str,
    parse: impl FnOnce(&[u8]) -> Result<T, crate::ConfigError>,
) -> Option<T> {
    match parse(&plugin_configuration()) {
        Ok(config) => Some(config),
        Err(err) => {
            log(
                Level::Error,
                &format!("{filter}: invalid plugin configuration: {err}"),
            );
            None
        }
    }
}
