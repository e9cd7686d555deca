//! Where tokens come from: headers (with a value prefix such as `Bearer `,
//! matched case-insensitively per RFC 6750), query parameters and cookies.
//! Values are bytes: a client may send anything.

use filter_common::RequestInfo;

/// One place a provider looks for tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A header (lower-case name) whose value starts with `prefix`.
    Header {
        name: String,
        prefix: String,
    },
    Param(String),
    Cookie(String),
}

/// A token found in the request, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub token: Vec<u8>,
    /// Where it was found; the same token in several places is one
    /// `Found` with every place (all must be stripped before forwarding).
    pub locations: Vec<Location>,
}

/// Envoy's default when a provider names no location.
pub fn default_locations() -> Vec<Location> {
    vec![
        Location::Header {
            name: "authorization".into(),
            prefix: "Bearer ".into(),
        },
        Location::Param("access_token".into()),
    ]
}

/// At most this many tokens are collected per provider; more is refused.
pub const MAX_TOKENS: usize = 4;

/// Every distinct token at `locations`, in order, up to [`MAX_TOKENS`] + 1
/// (so the caller can tell there were too many). `headers` are all the
/// request's headers, read once per request.
pub fn extract(
    locations: &[Location],
    headers: &[(String, Vec<u8>)],
    req: &RequestInfo,
) -> Vec<Found> {
    let mut out: Vec<Found> = Vec::new();
    let mut push = |token: &[u8], loc: &Location| {
        if token.is_empty() {
            return;
        }
        if let Some(f) = out.iter_mut().find(|f| f.token == token) {
            if !f.locations.contains(loc) {
                f.locations.push(loc.clone());
            }
            return;
        }
        if out.len() <= MAX_TOKENS {
            out.push(Found {
                token: token.to_vec(),
                locations: vec![loc.clone()],
            });
        }
    };
    for loc in locations {
        match loc {
            Location::Header { name, prefix } => {
                for (_, v) in headers.iter().filter(|(k, _)| k == name) {
                    // A header may carry a comma-separated list (merged duplicates).
                    for item in v.split(|b| *b == b',') {
                        if let Some(t) = strip_prefix(trim(item), prefix.as_bytes()) {
                            push(trim(t), loc);
                        }
                    }
                }
            }
            Location::Param(name) => {
                for (k, v) in query_pairs(req.query.as_deref().unwrap_or("")) {
                    if k == name.as_bytes() {
                        push(&v, loc);
                    }
                }
            }
            Location::Cookie(name) => {
                for (_, v) in headers.iter().filter(|(k, _)| k == "cookie") {
                    for pair in v.split(|b| *b == b';') {
                        let pair = trim(pair);
                        if let Some(val) = pair
                            .strip_prefix(name.as_bytes())
                            .and_then(|r| r.strip_prefix(b"="))
                        {
                            push(trim(val), loc);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The `cookie` header(s) without the cookie `name`, joined with `; `;
/// `None` when no other cookie is left. Bytes are kept as sent.
pub fn without_cookie(headers: &[(String, Vec<u8>)], name: &str) -> Option<Vec<u8>> {
    let mut kept: Vec<&[u8]> = Vec::new();
    for (_, v) in headers.iter().filter(|(k, _)| k == "cookie") {
        for pair in v.split(|b| *b == b';') {
            let pair = trim(pair);
            let is_token = pair
                .strip_prefix(name.as_bytes())
                .is_some_and(|r| r.starts_with(b"="));
            if !pair.is_empty() && !is_token {
                kept.push(pair);
            }
        }
    }
    (!kept.is_empty()).then(|| kept.join(&b"; "[..]))
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// ASCII case-insensitive prefix (the auth scheme is case-insensitive).
fn strip_prefix<'a>(v: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    let head = v.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| v.get(prefix.len()..))
        .flatten()
}

/// `a=1&b=2` as raw pairs, percent-decoded.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Vec<u8>, Vec<u8>)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (percent_decode(k.as_bytes()), percent_decode(v.as_bytes()))
    })
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'%' {
            if let (Some(h), Some(l)) = (
                s.get(i + 1).and_then(|b| hex(*b)),
                s.get(i + 2).and_then(|b| hex(*b)),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' { b' ' } else { b });
        i += 1;
    }
    out
}

/// `path?query` with every `name=...` parameter removed.
pub fn remove_param(path: &str, query: &str, name: &str) -> String {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| {
            let k = p.split_once('=').map_or(*p, |(k, _)| k);
            !p.is_empty() && percent_decode(k.as_bytes()) != name.as_bytes()
        })
        .collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filter_common::testing::FakeHost;
    use filter_common::HttpHost;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn run(locs: &[Location], host: &FakeHost) -> Vec<String> {
        let req = RequestInfo::from_host(host);
        extract(locs, &host.request_headers(), &req)
            .into_iter()
            .map(|f| String::from_utf8_lossy(&f.token).into_owned())
            .collect()
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let d = default_locations();
        for v in [
            "Bearer abc",
            "bearer abc",
            "BEARER   abc  ",
            "Bearer abc, Basic zzz",
        ] {
            let h = FakeHost::request("GET", "/", "a", &[("authorization", v)]);
            assert_eq!(run(&d, &h), ["abc"], "{v}");
        }
        for v in ["Basic abc", "Bearer", "Bearerabc", ""] {
            let h = FakeHost::request("GET", "/", "a", &[("authorization", v)]);
            assert!(run(&d, &h).is_empty(), "{v}");
        }
    }

    #[test]
    fn query_param_and_duplicates() {
        let d = default_locations();
        let h = FakeHost::request(
            "GET",
            "/x?a=1&access_token=t%2Eu&b",
            "a",
            &[("authorization", "Bearer t.u")],
        );
        assert_eq!(run(&d, &h), ["t.u"]);
        let h = FakeHost::request(
            "GET",
            "/x?access_token=q",
            "a",
            &[("authorization", "Bearer a"), ("authorization", "Bearer b")],
        );
        assert_eq!(run(&d, &h), ["a", "b", "q"]);
    }

    #[test]
    fn too_many_tokens_are_capped_at_one_more_than_allowed() {
        let d = default_locations();
        let v: Vec<String> = (0..50).map(|i| format!("Bearer t{i}")).collect();
        let h = FakeHost::request("GET", "/", "a", &[("authorization", &v.join(","))]);
        assert_eq!(run(&d, &h).len(), MAX_TOKENS + 1);
    }

    #[test]
    fn custom_header_and_cookie() {
        let locs = vec![
            Location::Header {
                name: "x-jwt".into(),
                prefix: String::new(),
            },
            Location::Cookie("session".into()),
        ];
        let h = FakeHost::request(
            "GET",
            "/",
            "a",
            &[("x-jwt", "abc"), ("cookie", "a=1; session=tok; b=2")],
        );
        assert_eq!(run(&locs, &h), ["abc", "tok"]);
        let h = FakeHost::request("GET", "/", "a", &[("cookie", "sessionx=no; xsession=no")]);
        assert!(run(&locs, &h).is_empty());
    }

    #[test]
    fn a_cookie_is_removed_and_the_others_kept() {
        let h = |v: &[&str]| -> Vec<(String, Vec<u8>)> {
            v.iter()
                .map(|v| ("cookie".to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(
            without_cookie(&h(&["a=1; session=tok; b=2", "sessionx=3"]), "session").unwrap(),
            b"a=1; b=2; sessionx=3"
        );
        assert_eq!(without_cookie(&h(&["session=tok"]), "session"), None);
        let raw = vec![("cookie".to_string(), b"x=\xff; session=t".to_vec())];
        assert_eq!(without_cookie(&raw, "session").unwrap(), b"x=\xff");
    }

    #[test]
    fn non_utf8_bytes_are_carried_not_trapped() {
        let mut h = FakeHost::request("GET", "/", "a", &[]);
        h.request_headers
            .push(("authorization".into(), b"Bearer \xff\xfe".to_vec()));
        let req = RequestInfo::from_host(&h);
        let found = extract(&default_locations(), &h.request_headers(), &req);
        assert_eq!(found[0].token, b"\xff\xfe");
    }

    #[test]
    fn removes_a_param() {
        assert_eq!(
            remove_param("/p", "a=1&access_token=x&b=2", "access_token"),
            "/p?a=1&b=2"
        );
        assert_eq!(remove_param("/p", "access_token=x", "access_token"), "/p");
        assert_eq!(
            remove_param("/p", "access%5Ftoken=x&c", "access_token"),
            "/p?c"
        );
    }
}
