//! The request attributes every filter asks about, read once per request.

use crate::host::HttpHost;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// `:method`, upper case as sent.
    pub method: String,
    /// `:path` without the query string.
    pub path: String,
    /// The query string without `?`, if any.
    pub query: Option<String>,
    /// `:authority` (host), lower-cased, port kept.
    pub host: String,
}

impl RequestInfo {
    /// Reads the pseudo-headers. Bytes that are not UTF-8 are replaced, which
    /// can only make a match fail, never succeed where it should not.
    pub fn from_host(host: &dyn HttpHost) -> Self {
        let text = |name: &str| {
            host.request_header(name)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default()
        };
        let full_path = text(":path");
        let (path, query) = split_query(&full_path);
        RequestInfo {
            method: text(":method"),
            path: path.to_string(),
            query: query.map(str::to_string),
            host: text(":authority").to_ascii_lowercase(),
        }
    }
}

/// Splits `/a/b?x=1` into `/a/b` and `x=1`.
pub fn split_query(full: &str) -> (&str, Option<&str>) {
    match full.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (full, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn splits_query() {
        assert_eq!(split_query("/a?b=1?c"), ("/a", Some("b=1?c")));
        assert_eq!(split_query("/a"), ("/a", None));
        assert_eq!(split_query(""), ("", None));
    }
}
