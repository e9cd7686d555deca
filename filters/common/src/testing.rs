//! In-memory hosts for unit tests of the filter cores.

use crate::host::{CasOutcome, HostError, HttpHost, Level, Metrics, SharedData};
use crate::stats::{StatId, StatKind};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

/// A local response: `(status, headers, body)`.
pub type Sent = (u32, Vec<(String, String)>, Vec<u8>);

/// Hostcalls a [`FakeHost`] refuses, as Envoy may (e.g. a header map that
/// is gone), so unit tests can prove a filter fails closed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    pub set_request_header: bool,
    pub remove_request_header: bool,
    pub send_response: bool,
}

/// The status a refused fake hostcall returns (proxy-wasm `InternalFailure`).
pub const FAULT_STATUS: u32 = 10;

/// A request as a list of headers and properties, recording what the
/// filter did to it.
#[derive(Debug, Default, Clone)]
pub struct FakeHost {
    pub request_headers: Vec<(String, Vec<u8>)>,
    pub response_headers: Vec<(String, Vec<u8>)>,
    pub properties: BTreeMap<String, Vec<u8>>,
    /// `(status, headers, body)` once `send_response` succeeded.
    pub sent: Option<Sent>,
    /// The response code details of that response.
    pub sent_details: Option<String>,
    /// Calls to refuse.
    pub faults: Faults,
    pub now_nanos: u64,
    pub logs: RefCell<Vec<(Level, String)>>,
}

impl FakeHost {
    pub fn request(method: &str, path: &str, authority: &str, headers: &[(&str, &str)]) -> Self {
        let mut h = FakeHost::default();
        h.push(":method", method);
        h.push(":path", path);
        h.push(":authority", authority);
        for (k, v) in headers {
            h.push(k, v);
        }
        h
    }

    pub fn push(&mut self, name: &str, value: &str) {
        self.request_headers
            .push((name.to_ascii_lowercase(), value.as_bytes().to_vec()));
    }

    pub fn header_str(&self, name: &str) -> Option<String> {
        self.request_header(name)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }
}

impl HttpHost for FakeHost {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.request_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.request_headers.clone()
    }
    fn set_request_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        if self.faults.set_request_header {
            return Err(fault("set_request_header"));
        }
        self.request_headers.retain(|(k, _)| k != name);
        self.request_headers
            .push((name.to_string(), value.to_vec()));
        Ok(())
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        if self.faults.remove_request_header {
            return Err(fault("remove_request_header"));
        }
        self.request_headers.retain(|(k, _)| k != name);
        Ok(())
    }
    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.response_headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    fn set_response_header(&mut self, name: &str, value: &[u8]) {
        self.response_headers.retain(|(k, _)| k != name);
        self.response_headers
            .push((name.to_string(), value.to_vec()));
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.properties.get(&path.join(".")).cloned()
    }
    fn set_property(&mut self, path: &[&str], value: &[u8]) {
        self.properties.insert(path.join("."), value.to_vec());
    }
    fn send_response(
        &mut self,
        status: u32,
        details: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        if self.faults.send_response {
            return Err(fault("send_response"));
        }
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.sent = Some((status, headers, body.to_vec()));
        self.sent_details = Some(details.to_string());
        Ok(())
    }
    fn now_nanos(&self) -> u64 {
        self.now_nanos
    }
    fn log(&self, level: Level, message: &str) {
        self.logs.borrow_mut().push((level, message.to_string()));
    }
}

fn fault(call: &'static str) -> HostError {
    HostError {
        call,
        status: FAULT_STATUS,
    }
}

/// A [`FakeHost`] that counts its request-header reads: `one` single-header
/// reads, `all` whole-map reads (each is a host call in Envoy).
#[derive(Debug, Default)]
pub struct CountingHost {
    pub host: FakeHost,
    pub one: Cell<u32>,
    pub all: Cell<u32>,
}

impl CountingHost {
    pub fn new(host: FakeHost) -> Self {
        CountingHost {
            host,
            ..CountingHost::default()
        }
    }
}

impl HttpHost for CountingHost {
    fn request_header(&self, name: &str) -> Option<Vec<u8>> {
        self.one.set(self.one.get() + 1);
        self.host.request_header(name)
    }
    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        self.all.set(self.all.get() + 1);
        self.host.request_headers()
    }
    fn set_request_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostError> {
        self.host.set_request_header(name, value)
    }
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError> {
        self.host.remove_request_header(name)
    }
    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.host.response_header(name)
    }
    fn set_response_header(&mut self, name: &str, value: &[u8]) {
        self.host.set_response_header(name, value);
    }
    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        self.host.property(path)
    }
    fn set_property(&mut self, path: &[&str], value: &[u8]) {
        self.host.set_property(path, value);
    }
    fn send_response(
        &mut self,
        status: u32,
        details: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        self.host.send_response(status, details, headers, body)
    }
    fn now_nanos(&self) -> u64 {
        self.host.now_nanos()
    }
    fn log(&self, level: Level, message: &str) {
        self.host.log(level, message);
    }
}

/// Shared data with CAS, as Envoy implements it (every write bumps the
/// token; a missing key is created whatever CAS is passed).
#[derive(Debug, Default, Clone)]
pub struct FakeSharedData {
    pub entries: BTreeMap<String, (Vec<u8>, u32)>,
}

impl SharedData for FakeSharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.entries.get(key).cloned()
    }
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> CasOutcome {
        let current = self.entries.get(key).map(|(_, c)| *c);
        match (current, cas) {
            (Some(c), Some(want)) if c != want => CasOutcome::Conflict,
            _ => {
                let next = current.unwrap_or(0).wrapping_add(1).max(1);
                self.entries.insert(key.to_string(), (value.to_vec(), next));
                CasOutcome::Written
            }
        }
    }
}

/// Metrics as a map from name to value.
#[derive(Debug, Default, Clone)]
pub struct FakeMetrics {
    pub values: BTreeMap<String, i64>,
    /// Stat names by id, in definition order.
    pub names: Vec<String>,
    /// Refuse every definition, as a host out of stat slots would.
    pub refuse: bool,
}

impl FakeMetrics {
    fn name(&self, id: StatId) -> Option<String> {
        self.names.get(usize::try_from(id.0).ok()?).cloned()
    }
}

impl Metrics for FakeMetrics {
    fn define(&mut self, _kind: StatKind, name: &str) -> Result<StatId, HostError> {
        if self.refuse {
            return Err(fault("define_metric"));
        }
        if let Some(i) = self.names.iter().position(|n| n == name) {
            return Ok(StatId(u32::try_from(i).unwrap_or(u32::MAX)));
        }
        self.names.push(name.to_string());
        self.values.entry(name.to_string()).or_default();
        Ok(StatId(
            u32::try_from(self.names.len() - 1).unwrap_or(u32::MAX),
        ))
    }
    fn add(&mut self, id: StatId, delta: i64) {
        let name = self
            .name(id)
            .unwrap_or_else(|| format!("<undefined stat {}>", id.0));
        *self.values.entry(name).or_default() += delta;
    }
    fn record(&mut self, id: StatId, value: u64) {
        let name = self
            .name(id)
            .unwrap_or_else(|| format!("<undefined stat {}>", id.0));
        self.values
            .insert(name, i64::try_from(value).unwrap_or(i64::MAX));
    }
    fn increment(&mut self, name: &str, delta: i64) {
        *self.values.entry(name.to_string()).or_default() += delta;
    }
    fn gauge(&mut self, name: &str, value: u64) {
        self.values
            .insert(name.to_string(), i64::try_from(value).unwrap_or(i64::MAX));
    }
}

/// A callout as [`FakeCallouts`] recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentCallout {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout_ms: u64,
}

/// Callouts recorded instead of sent; tokens count up from 1.
#[derive(Debug, Default, Clone)]
pub struct FakeCallouts {
    pub calls: Vec<SentCallout>,
    /// Refuse every call, as Envoy does for an unknown cluster.
    pub refuse: bool,
}

impl crate::host::Callouts for FakeCallouts {
    fn dispatch(&mut self, call: &crate::host::Callout<'_>) -> Result<u32, HostError> {
        if self.refuse {
            return Err(fault("dispatch_http_call"));
        }
        self.calls.push(SentCallout {
            cluster: call.cluster.to_string(),
            headers: call
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: call.body.map(<[u8]>::to_vec),
            timeout_ms: call.timeout_ms,
        });
        Ok(u32::try_from(self.calls.len()).unwrap_or(u32::MAX))
    }
}
