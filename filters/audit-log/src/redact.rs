//! What must never reach an audit event: credentials in headers, tokens in
//! query strings, and token-shaped strings anywhere we copy client text.
//!
//! The built-in lists are always in force; configuration only adds to them.

/// Headers whose values carry credentials.
pub const BUILTIN_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-access-token",
    "x-csrf-token",
    "x-xsrf-token",
    "x-amz-security-token",
    "x-goog-iap-jwt-assertion",
    "x-forwarded-client-cert",
];

/// Query parameters that carry credentials (compared case-insensitively).
pub const BUILTIN_QUERY_PARAMS: &[&str] = &[
    "access_token",
    "id_token",
    "refresh_token",
    "token",
    "jwt",
    "code",
    "client_secret",
    "password",
    "passwd",
    "secret",
    "api_key",
    "apikey",
    "key",
    "sig",
    "signature",
    "x-amz-signature",
    "x-amz-security-token",
    "session",
    "sessionid",
    "auth",
];

/// What replaces a redacted value.
pub const REDACTED: &str = "[REDACTED]";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    extra_headers: Vec<String>,
    extra_params: Vec<String>,
}

impl Redactor {
    pub fn new(headers: &[String], params: &[String]) -> Self {
        Redactor {
            extra_headers: headers.iter().map(|h| h.to_ascii_lowercase()).collect(),
            extra_params: params.iter().map(|p| p.to_ascii_lowercase()).collect(),
        }
    }

    pub fn is_sensitive_header(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        BUILTIN_HEADERS.contains(&name.as_str()) || self.extra_headers.contains(&name)
    }

    pub fn is_sensitive_param(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        BUILTIN_QUERY_PARAMS.contains(&name.as_str()) || self.extra_params.contains(&name)
    }

    /// Keeps only allowlisted, non-sensitive parameters, in their original
    /// order and encoding; `None` when nothing is left.
    pub fn filter_query(&self, query: &str, allow: &[String]) -> Option<String> {
        if allow.is_empty() {
            return None;
        }
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or_default();
                allow.iter().any(|a| a.eq_ignore_ascii_case(name)) && !self.is_sensitive_param(name)
            })
            .collect();
        (!kept.is_empty()).then(|| scrub_tokens(&kept.join("&")))
    }
}

/// An RFC 7230 token (a header name).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b) || (i == 0 && b == b':')
        })
}

/// Replaces JWT-shaped substrings (`eyJ...` with two dots) and the
/// credential after `Bearer `/`Basic ` with [`REDACTED`]. A safety net for
/// the text we do copy (path, query values, user agent, labels): a token
/// pasted where it does not belong still does not reach the log store.
pub fn scrub_tokens(s: &str) -> String {
    if !s.contains("eyJ") && !contains_scheme(s) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        let jwt = find_jwt(rest);
        let scheme = find_scheme(rest);
        let next = match (jwt, scheme) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        let Some((start, end)) = next else {
            out.push_str(rest);
            return out;
        };
        out.push_str(rest.get(..start).unwrap_or_default());
        out.push_str(REDACTED);
        rest = rest.get(end..).unwrap_or_default();
    }
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `(start, end)` of the first `eyJ<b64>.<b64>[.<b64>]` run.
fn find_jwt(s: &str) -> Option<(usize, usize)> {
    let bytes = s.as_bytes();
    let mut from = 0;
    while let Some(pos) = s.get(from..).and_then(|r| r.find("eyJ")) {
        let start = from + pos;
        let mut end = start;
        let mut dots = 0;
        while let Some(&b) = bytes.get(end) {
            if is_b64url(b) {
                end += 1;
            } else if b == b'.' && dots < 2 {
                dots += 1;
                end += 1;
            } else {
                break;
            }
        }
        if dots >= 1 && end - start > 10 {
            return Some((start, end));
        }
        from = start + 3;
    }
    None
}

const SCHEMES: [&str; 2] = ["bearer ", "basic "];

fn contains_scheme(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    SCHEMES.iter().any(|p| lower.contains(p))
}

/// `(start, end)` of the credential after the first `Bearer `/`Basic `.
fn find_scheme(s: &str) -> Option<(usize, usize)> {
    let lower = s.to_ascii_lowercase();
    let (at, len) = SCHEMES
        .iter()
        .filter_map(|p| lower.find(p).map(|i| (i, p.len())))
        .min()?;
    let start = at + len;
    let tail = s.get(start..)?;
    let n = tail
        .find(|c: char| c.is_whitespace() || c == ',' || c == ';' || c == '"')
        .unwrap_or(tail.len());
    (n > 0).then_some((start, start + n))
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the
/// cut so nobody mistakes it for the whole value.
pub fn truncate(s: String, max: usize) -> String {
    const MARK: &str = "...[truncated]";
    if s.len() <= max {
        return s;
    }
    let mut end = max.saturating_sub(MARK.len());
    while end > 0 && !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = s.get(..end).unwrap_or_default().to_string();
    out.push_str(MARK);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";

    #[test]
    fn builtins_always_apply() {
        let r = Redactor::new(&["X-Session".into()], &["SID".into()]);
        for h in ["Authorization", "cookie", "SET-COOKIE", "x-session"] {
            assert!(r.is_sensitive_header(h), "{h}");
        }
        assert!(!r.is_sensitive_header("x-tenant"));
        for p in ["access_token", "Token", "sid"] {
            assert!(r.is_sensitive_param(p), "{p}");
        }
    }

    #[test]
    fn query_keeps_only_allowlisted_params() {
        let r = Redactor::default();
        let allow = vec!["page".to_string(), "q".to_string()];
        assert_eq!(
            r.filter_query("page=2&access_token=abc&x=1&q=a%20b", &allow),
            Some("page=2&q=a%20b".to_string())
        );
        assert_eq!(r.filter_query("x=1", &allow), None);
        assert_eq!(r.filter_query("page=1", &[]), None);
        // A token smuggled into an allowlisted parameter is still scrubbed.
        let q = format!("q={JWT}");
        assert_eq!(r.filter_query(&q, &allow), Some("q=[REDACTED]".into()));
    }

    #[test]
    fn token_shapes_are_scrubbed() {
        assert_eq!(
            scrub_tokens(&format!("/reset/{JWT}/x")),
            "/reset/[REDACTED]/x"
        );
        assert_eq!(
            scrub_tokens("curl Bearer abc.def, Basic dXNlcjpwYXNz"),
            "curl Bearer [REDACTED], Basic [REDACTED]"
        );
        assert_eq!(scrub_tokens("/plain/path"), "/plain/path");
        assert_eq!(scrub_tokens("eyJ"), "eyJ");
        assert_eq!(scrub_tokens("ééeyJ"), "ééeyJ");
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(100);
        let t = truncate(s, 31);
        assert!(t.len() <= 31 && t.ends_with("[truncated]"), "{t}");
        assert_eq!(truncate("short".into(), 31), "short");
    }

    #[test]
    fn header_names() {
        assert!(is_token("x-tenant-id"));
        assert!(!is_token("bad name"));
        assert!(!is_token(""));
    }
}
