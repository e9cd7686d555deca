//! The seam between a filter's pure logic and the proxy. The glue implements
//! these traits on top of proxy-wasm hostcalls ([`crate::proxy`]); unit tests
//! implement them with plain maps.

/// Log levels, as Envoy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// One HTTP stream, seen from a filter. Header names are lower case.
/// Values are bytes: client input is not necessarily UTF-8.
pub trait HttpHost {
    /// The first value of a request header.
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Every request header, duplicates included, in order.
    fn request_headers(&self) -> Vec<(String, Vec<u8>)>;
    /// Replaces every value of the header with one value.
    fn set_request_header(&mut self, name: &str, value: &[u8]);
    /// Removes every value of the header.
    fn remove_request_header(&mut self, name: &str);
    fn response_header(&self, name: &str) -> Option<Vec<u8>>;
    fn set_response_header(&mut self, name: &str, value: &[u8]);
    /// An Envoy attribute such as `["source", "address"]`.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Writes filter state readable by later filters and access logs as
    /// `wasm.<path>`; clients cannot forge it.
    fn set_property(&mut self, path: &[&str], value: &[u8]);
    /// Answers the request locally; later filters and the upstream are skipped.
    fn send_response(&mut self, status: u32, headers: &[(&str, &str)], body: &[u8]);
    /// Host wall clock, in nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> u64;
    fn log(&self, level: Level, message: &str);
}

/// Outcome of a compare-and-swap write to shared data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasOutcome {
    Written,
    /// Someone else wrote first: read again and retry.
    Conflict,
    /// The host refused the write for another reason.
    Failed,
}

/// Envoy's shared data: a key/value store shared by every worker's VM with
/// the same `vm_id`. Keys are never freed, so callers must bound their key
/// space by design.
pub trait SharedData {
    /// The value and its CAS token.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes if `cas` still matches (`None` writes unconditionally).
    fn set(&mut self, key: &str, value: &[u8], cas: Option<u32>) -> CasOutcome;
}

/// Envoy stats, named by the filter. They appear in Envoy as
/// `wasmcustom.<name>`.
pub trait Metrics {
    fn increment(&mut self, name: &str, delta: i64);
    fn gauge(&mut self, name: &str, value: u64);
}
