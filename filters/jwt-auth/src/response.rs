//! The local responses: 401 and 403 with an RFC 6750 `WWW-Authenticate`
//! challenge, 503 when keys are unavailable, 500 when the proxy refused a
//! header change, each with a small JSON body naming the reason and the
//! reason as Envoy's response code details. Nothing from the request is
//! echoed.

use crate::status::Reason;
use filter_common::{HostError, HttpHost};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Rejection {
    pub fn new(reason: Reason, realm: &str) -> Self {
        let mut headers = vec![("content-type", "application/json".to_string())];
        let status = reason.status();
        if status < 500 {
            let mut challenge = format!("Bearer realm=\"{realm}\"");
            if let Some(err) = reason.bearer_error() {
                challenge.push_str(&format!(
                    ", error=\"{err}\", error_description=\"{}\"",
                    reason.description()
                ));
            }
            headers.push(("www-authenticate", challenge));
        }
        let body = serde_json::json!({
            "status": status,
            "error": reason.bearer_error().unwrap_or(match status {
                500 => "internal_error",
                503 => "unavailable",
                _ => "unauthorized",
            }),
            "reason": reason.label(),
            "message": reason.description(),
        })
        .to_string();
        Rejection {
            reason,
            status,
            headers,
            body,
        }
    }

    /// On error nothing was sent: keep the request paused.
    pub fn send(&self, host: &mut dyn HttpHost) -> Result<(), HostError> {
        let headers: Vec<(&str, &str)> =
            self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        host.send_response(
            self.status,
            &self.reason.details(),
            &headers,
            self.body.as_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn challenge(r: &Rejection) -> Option<&str> {
        r.headers
            .iter()
            .find(|(k, _)| *k == "www-authenticate")
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn missing_invalid_forbidden_unavailable() {
        let r = Rejection::new(Reason::TokenMissing, "api");
        assert_eq!(r.status, 401);
        assert_eq!(challenge(&r), Some("Bearer realm=\"api\""));
        let r = Rejection::new(Reason::Expired, "api");
        assert_eq!(
            challenge(&r),
            Some("Bearer realm=\"api\", error=\"invalid_token\", error_description=\"Jwt is expired\"")
        );
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["reason"], "expired");
        assert_eq!(body["status"], 401);
        let r = Rejection::new(Reason::InsufficientScope, "api");
        assert_eq!(r.status, 403);
        assert!(challenge(&r)
            .unwrap()
            .contains("error=\"insufficient_scope\""));
        let r = Rejection::new(Reason::KeysUnavailable, "api");
        assert_eq!(r.status, 503);
        assert_eq!(challenge(&r), None);
        assert!(r.body.contains("keys_unavailable"));
        let r = Rejection::new(Reason::HostError, "api");
        assert_eq!(r.status, 500);
        assert_eq!(challenge(&r), None);
        let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["error"], "internal_error");
        assert_eq!(body["reason"], "host_error");
    }
}
