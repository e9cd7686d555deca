//! The seam between a filter's pure logic and the proxy. The glue implements
//! these traits on top of proxy-wasm hostcalls ([`crate::proxy`]); unit tests
//! implement them with plain maps.

pub use crate::stats::{StatId, StatKind};

/// Log levels, as Envoy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// A hostcall the host refused. Writes that guard the request (stripping a
/// forged identity header, sending a rejection) return it so the filter can
/// fail closed instead of letting the request go on as if they had worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError {
    /// The hostcall, e.g. `remove_request_header`.
    pub call: &'static str,
    /// The proxy-wasm status the host returned (e.g. 2 `BadArgument`).
    pub status: u32,
}

impl std::fmt::Display for HostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} failed with proxy-wasm status {}",
            self.call, self.status
        )
    }
}

impl std::error::Error for HostError {}

/// Envoy's response code details for a local reply, in Envoy's own style:
/// `<what>{<detail>}`, e.g. `jwt_auth_denied{expired}`. Envoy rewrites
/// details containing whitespace, so anything outside `[a-z0-9_.-]` in
/// either part becomes `_` (upper case is lowered).
pub fn code_details(what: &str, detail: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                let c = c.to_ascii_lowercase();
                if c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    format!("{}{{{}}}", clean(what), clean(detail))
}

/// One HTTP stream, seen from a filter. Header names are lower case.
/// Values are bytes: client input is not necessarily UTF-8.
pub trait HttpHost {
    /// The first value of a request header.
    fn request_header(&self, name: &str) -> Option<Vec<u8>>;
    /// Every request header, duplicates included, in order.
    fn request_headers(&self) -> Vec<(String, Vec<u8>)>;
    /// Replaces every value of the header with one value. Filters write
    /// identity headers with it: on error the request must not go on.
    fn set_request_header(&mut self, name: &str, value: &[u8]) -> Result<(), HostError>;
    /// Removes every value of the header. Filters strip forged identity
    /// headers with it: on error the request must not go on.
    fn remove_request_header(&mut self, name: &str) -> Result<(), HostError>;
    fn response_header(&self, name: &str) -> Option<Vec<u8>>;
    fn set_response_header(&mut self, name: &str, value: &[u8]);
    /// An Envoy attribute such as `["source", "address"]`.
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// Writes filter state readable by later filters and access logs as
    /// `wasm.<path>`; clients cannot forge it.
    fn set_property(&mut self, path: &[&str], value: &[u8]);
    /// Answers the request locally; later filters and the upstream are
    /// skipped. `details` is Envoy's `%RESPONSE_CODE_DETAILS%` (see
    /// [`code_details`]). On error nothing was sent: the caller must keep
    /// the request paused, never continue it.
    fn send_response(
        &mut self,
        status: u32,
        details: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError>;
    /// Host wall clock, in nanoseconds since the Unix epoch.
    fn now_nanos(&self) -> u64;
    fn log(&self, level: Level, message: &str);
}

/// An HTTP call through an Envoy cluster (JWKS fetches, audit sinks).
#[derive(Debug, Clone, Copy)]
pub struct Callout<'a> {
    pub cluster: &'a str,
    /// Pseudo-headers (`:method`, `:path`, `:authority`) included.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Option<&'a [u8]>,
    pub timeout_ms: u64,
}

/// Per root: starts callouts. The answer arrives later in the root's
/// `on_http_call_response` under the returned token.
pub trait Callouts {
    /// The call's token, or the host's refusal (e.g. an unknown cluster).
    fn dispatch(&mut self, call: &Callout<'_>) -> Result<u32, HostError>;
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

/// Envoy stats. They appear in Envoy as `wasmcustom.<name>`. Filters
/// declare theirs once ([`crate::stats`]) and define them at configure
/// time; the request path only adds to ids.
pub trait Metrics {
    /// Defines (or finds) a stat. Configure time only.
    fn define(&mut self, kind: StatKind, name: &str) -> Result<StatId, HostError>;
    /// Adds to a counter.
    fn add(&mut self, id: StatId, delta: i64);
    /// Sets a gauge.
    fn record(&mut self, id: StatId, value: u64);
    /// Deprecated: by name, defined on first use. Being replaced by typed
    /// stats in every filter; do not add callers.
    fn increment(&mut self, name: &str, delta: i64);
    /// Deprecated: see [`Metrics::increment`].
    fn gauge(&mut self, name: &str, value: u64);
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn code_details_keep_to_what_envoy_accepts() {
        assert_eq!(
            code_details("jwt_auth_denied", "expired"),
            "jwt_auth_denied{expired}"
        );
        assert_eq!(
            code_details("rate_limited", "Per-Client"),
            "rate_limited{per-client}"
        );
        assert_eq!(code_details("x y", "a b{c}\n"), "x_y{a_b_c__}");
    }
}
