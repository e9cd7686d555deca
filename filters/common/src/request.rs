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

/// Which pseudo-headers to read. Each is a host call, so a filter that
/// looks at only some of them (rate-limit, by its rules) reads only those.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fields {
    /// `:method`.
    pub method: bool,
    /// `:path` (path and query).
    pub path: bool,
    /// `:authority`.
    pub host: bool,
}

impl Fields {
    pub const ALL: Fields = Fields {
        method: true,
        path: true,
        host: true,
    };
}

impl RequestInfo {
    /// Reads the pseudo-headers. Bytes that are not UTF-8 are replaced, which
    /// can only make a match fail, never succeed where it should not.
    pub fn from_host(host: &dyn HttpHost) -> Self {
        Self::read(host, Fields::ALL)
    }

    /// Reads the pseudo-headers in `fields`, as [`RequestInfo::from_host`]
    /// does; the others stay empty.
    pub fn read(host: &dyn HttpHost, fields: Fields) -> Self {
        let text = |name: &str| {
            host.request_header(name)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default()
        };
        let mut info = RequestInfo::default();
        if fields.path {
            let full_path = text(":path");
            let (path, query) = split_query(&full_path);
            info.path = path.to_string();
            info.query = query.map(str::to_string);
        }
        if fields.method {
            info.method = text(":method");
        }
        if fields.host {
            info.host = text(":authority").to_ascii_lowercase();
        }
        info
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
    fn reads_only_the_fields_asked_for() {
        let h = crate::testing::FakeHost::request("GET", "/a?b=1", "Ex.com", &[]);
        let all = RequestInfo::from_host(&h);
        assert_eq!(
            (all.method.as_str(), all.path.as_str(), all.host.as_str()),
            ("GET", "/a", "ex.com")
        );
        assert_eq!(all.query.as_deref(), Some("b=1"));
        let path = Fields {
            path: true,
            ..Fields::default()
        };
        let some = RequestInfo::read(&h, path);
        assert_eq!(
            (some.path.as_str(), some.query.as_deref()),
            ("/a", Some("b=1"))
        );
        assert!(some.method.is_empty() && some.host.is_empty());
        assert_eq!(
            RequestInfo::read(&h, Fields::default()),
            RequestInfo::default()
        );
    }

    #[test]
    fn splits_query() {
        assert_eq!(split_query("/a?b=1?c"), ("/a", Some("b=1?c")));
        assert_eq!(split_query("/a"), ("/a", None));
        assert_eq!(split_query(""), ("", None));
    }
}
