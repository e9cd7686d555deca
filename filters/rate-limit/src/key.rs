//! Where a rate-limit key comes from, and how it is hashed.
//!
//! The key is never stored: its parts are fed into a keyed SipHash-1-3
//! whose 128-bit key (the seed) is random per Envoy process and shared by
//! every worker through shared data. A client cannot predict which slot
//! its key lands in, so it cannot aim collisions at someone else's bucket.
//! Only the 64-bit hash leaves this module, so a huge header costs hashing
//! time, never memory.
//!
//! A header key part is read from every line of that header: a request
//! whose lines disagree is [`Key::Ambiguous`] (RFC 9110 §5.3: a sender
//! must not repeat a field that is not a list), because the upstream may
//! read another line than the one the limit would count. Identical lines
//! are one value; a comma inside one line is part of the value.

use crate::config::{ClientIp, KeySource};
use crate::view::RequestView;
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Envoy attribute with the connection's peer, `ip:port`.
pub const SOURCE_ADDRESS: [&str; 2] = ["source", "address"];
/// Envoy attribute with the route's name.
pub const ROUTE_NAME: [&str; 2] = ["xds", "route_name"];
/// Envoy attribute with the first URI SAN of the peer certificate.
pub const PEER_URI_SAN: [&str; 2] = ["connection", "uri_san_peer_certificate"];

/// One key part of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Value(Vec<u8>),
    /// The request lacks it.
    Missing,
    /// A header sent more than once with different values.
    Ambiguous,
}

impl From<Option<Vec<u8>>> for Part {
    fn from(v: Option<Vec<u8>>) -> Self {
        v.map_or(Part::Missing, Part::Value)
    }
}

/// A request's key for one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Hash(u64),
    /// A part is missing (whatever the other parts are: the key does not
    /// use them then, see `on_missing_key`).
    Missing,
    /// No part is missing, and a header part is repeated with different
    /// values: refused, never counted.
    Ambiguous,
}

/// The hash seed shared by every worker (see [`crate::slots`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed(pub [u8; 16]);

impl Seed {
    fn hasher(&self, rule: &str) -> SipHasher13 {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(self.0.get(..8).unwrap_or(&[0; 8]));
        k1.copy_from_slice(self.0.get(8..).unwrap_or(&[0; 8]));
        let mut h = SipHasher13::new_with_keys(u64::from_le_bytes(k0), u64::from_le_bytes(k1));
        // Rules have separate tables; mixing the rule in makes two keys that
        // collide in one rule unlikely to collide in another.
        part(&mut h, 0, rule.as_bytes());
        h
    }

    /// The hash of a request's key for `rule`; [`Key::Missing`] when a
    /// part of the key is missing from the request, else
    /// [`Key::Ambiguous`] when a header part is.
    pub fn key(&self, rule: &str, sources: &[KeySource], request: &RequestView) -> Key {
        let mut h = self.hasher(rule);
        let mut ambiguous = false;
        for (i, source) in sources.iter().enumerate() {
            let tag = u8::try_from(i + 1).unwrap_or(u8::MAX);
            match value(source, request) {
                Part::Value(v) => part(&mut h, tag, &v),
                Part::Missing => return Key::Missing,
                Part::Ambiguous => ambiguous = true,
            }
        }
        if ambiguous {
            Key::Ambiguous
        } else {
            Key::Hash(h.finish())
        }
    }

    /// The one bucket shared by requests missing a part of their key;
    /// no real key hashes to it except by a 2^-64 accident.
    pub fn missing_key_hash(&self, rule: &str) -> u64 {
        let mut h = self.hasher(rule);
        part(&mut h, u8::MAX, b"\0missing");
        h.finish()
    }
}

/// Length-prefixed, so that ("ab", "c") and ("a", "bc") differ.
fn part(h: &mut SipHasher13, tag: u8, bytes: &[u8]) {
    h.write_u8(tag);
    h.write_u64(bytes.len() as u64);
    h.write(bytes);
}

/// One key part of the request.
pub fn value(source: &KeySource, request: &RequestView) -> Part {
    let host = request.host();
    match source {
        KeySource::ClientIp(c) => client_ip(c, request).into(),
        KeySource::Header(h) => header(request, &h.name),
        KeySource::Identity(_) => request.identity.map(|i| i.key().into_bytes()).into(),
        KeySource::Path(_) => Part::Value(request.info.path.as_bytes().to_vec()),
        KeySource::Method(_) => Part::Value(request.info.method.as_bytes().to_vec()),
        KeySource::Route(_) => host.property(&ROUTE_NAME).filter(|v| !v.is_empty()).into(),
        KeySource::PeerUriSan(_) => host
            .property(&PEER_URI_SAN)
            .filter(|v| !v.is_empty())
            .into(),
    }
}

/// A header's value: its one line, or its lines when they are all the
/// same. Compared byte for byte as the host hands them over (Envoy has
/// already removed the optional whitespace around each line); a comma
/// list inside one line is one opaque value.
fn header(request: &RequestView, name: &str) -> Part {
    let mut lines = request.lines(name);
    let Some(first) = lines.next() else {
        return Part::Missing;
    };
    if lines.any(|other| other != first) {
        return Part::Ambiguous;
    }
    Part::Value(first.to_vec())
}

/// The client address as bytes (4 for IPv4, 16 for IPv6 after masking).
pub fn client_ip(config: &ClientIp, request: &RequestView) -> Option<Vec<u8>> {
    let raw = match config.trusted_hops {
        0 => None,
        hops => forwarded_hop(request, hops),
    };
    let raw = match raw {
        Some(r) => r,
        None => request.host().property(&SOURCE_ADDRESS)?,
    };
    Some(match parse_ip(&raw) {
        Some(ip) => ip_bytes(ip, config.ipv6_prefix_len.unwrap_or(128)),
        // Not an address (a pipe or a proxy's odd entry): the text itself.
        None => raw,
    })
}

/// The `hops`-th entry from the right of every `X-Forwarded-For` line,
/// or `None` when there are fewer entries (then the peer is used).
fn forwarded_hop(request: &RequestView, hops: u32) -> Option<Vec<u8>> {
    let entries = request
        .lines("x-forwarded-for")
        .flat_map(|l| l.split(|b| *b == b','));
    let from_right: Vec<&[u8]> = entries.collect();
    let index = from_right.len().checked_sub(usize::try_from(hops).ok()?)?;
    let entry = from_right.get(index)?.trim_ascii();
    (!entry.is_empty()).then(|| entry.to_vec())
}

/// `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80`.
fn parse_ip(raw: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    text.parse::<SocketAddr>().ok().map(|s| s.ip())
}

fn ip_bytes(ip: IpAddr, v6_prefix: u8) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets().to_vec(),
            None => {
                let bits = u128::from(v6);
                let keep = u32::from(v6_prefix.clamp(1, 128));
                let mask = u128::MAX.checked_shl(128 - keep).unwrap_or(0);
                Ipv6Addr::from(bits & mask).octets().to_vec()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Empty, HeaderKey};
    use filter_common::identity::Identity;
    use filter_common::testing::FakeHost;
    use filter_common::{RequestContext, RequestInfo};
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const SEED: Seed = Seed([7; 16]);

    fn host(headers: &[(&str, &str)], peer: &str) -> FakeHost {
        let mut h = FakeHost::request("GET", "/api/x?q=1", "example.com", headers);
        h.properties
            .insert("source.address".into(), peer.as_bytes().to_vec());
        h
    }

    fn ctx(h: &FakeHost) -> RequestContext {
        RequestContext {
            request: RequestInfo::from_host(h),
            ..Default::default()
        }
    }

    fn ip(trusted_hops: u32, h: &FakeHost) -> Vec<u8> {
        client_ip(
            &ClientIp {
                trusted_hops,
                ipv6_prefix_len: None,
            },
            &RequestView::of(h, &RequestContext::default()),
        )
        .unwrap()
    }

    /// The key of one rule keyed on `sources`, for a request with `headers`.
    fn key_of(sources: &[KeySource], headers: &[(&str, &str)]) -> Key {
        let h = host(headers, "1.1.1.1:1");
        SEED.key("r", sources, &RequestView::of(&h, &ctx(&h)))
    }

    fn header_key(name: &str) -> KeySource {
        KeySource::Header(HeaderKey { name: name.into() })
    }

    #[test]
    fn client_ip_ignores_forwarded_for_by_default() {
        let h = host(&[("x-forwarded-for", "6.6.6.6")], "10.0.0.1:5555");
        assert_eq!(ip(0, &h), vec![10, 0, 0, 1]);
    }

    #[test]
    fn trusted_hops_count_from_the_right() {
        let h = host(
            &[
                ("x-forwarded-for", "6.6.6.6, 1.1.1.1"),
                ("x-forwarded-for", " 2.2.2.2 "),
            ],
            "10.0.0.1:5555",
        );
        assert_eq!(ip(1, &h), vec![2, 2, 2, 2]);
        assert_eq!(ip(2, &h), vec![1, 1, 1, 1]);
        assert_eq!(ip(3, &h), vec![6, 6, 6, 6]);
        // Fewer entries than trusted hops: the header is not to be trusted.
        assert_eq!(ip(4, &h), vec![10, 0, 0, 1]);
        let h = host(&[], "10.0.0.1:5555");
        assert_eq!(ip(1, &h), vec![10, 0, 0, 1]);
    }

    #[test]
    fn ipv6_is_parsed_masked_and_mapped() {
        let h = host(&[], "[2001:db8:1:2:3:4:5:6]:443");
        assert_eq!(ip(0, &h).len(), 16);
        let c = ClientIp {
            trusted_hops: 0,
            ipv6_prefix_len: Some(64),
        };
        let none = RequestContext::default();
        let a = client_ip(&c, &RequestView::of(&h, &none)).unwrap();
        let h2 = host(&[], "[2001:db8:1:2:ffff::1]:1");
        assert_eq!(a, client_ip(&c, &RequestView::of(&h2, &none)).unwrap());
        assert_ne!(ip(0, &h), ip(0, &h2));
        let h = host(&[], "[::ffff:1.2.3.4]:1");
        assert_eq!(ip(0, &h), vec![1, 2, 3, 4]);
        // Garbage stays as bytes, without a panic.
        let h = host(&[("x-forwarded-for", "not-an-ip, \u{7f}")], "pipe");
        assert_eq!(ip(0, &h), b"pipe".to_vec());
        assert_eq!(ip(2, &h), b"not-an-ip".to_vec());
    }

    #[test]
    fn every_source_reads_its_part() {
        let mut h = host(&[("x-api-key", "k1")], "1.2.3.4:1");
        h.properties.insert("xds.route_name".into(), b"r1".to_vec());
        h.properties.insert(
            "connection.uri_san_peer_certificate".into(),
            b"spiffe://a/b".to_vec(),
        );
        let mut c = ctx(&h);
        let v = |s: KeySource, c: &RequestContext| match value(&s, &RequestView::of(&h, c)) {
            Part::Value(v) => Some(v),
            Part::Missing => None,
            Part::Ambiguous => panic!("ambiguous {s:?}"),
        };
        assert_eq!(v(header_key("x-api-key"), &c), Some(b"k1".to_vec()));
        assert_eq!(v(header_key("x-none"), &c), None);
        assert_eq!(v(KeySource::Path(Empty {}), &c), Some(b"/api/x".to_vec()));
        assert_eq!(v(KeySource::Method(Empty {}), &c), Some(b"GET".to_vec()));
        assert_eq!(v(KeySource::Route(Empty {}), &c), Some(b"r1".to_vec()));
        assert_eq!(
            v(KeySource::PeerUriSan(Empty {}), &c),
            Some(b"spiffe://a/b".to_vec())
        );
        assert_eq!(v(KeySource::Identity(Empty {}), &c), None);
        c.identity = Some(Identity {
            provider: "p".into(),
            issuer: "https://iss".into(),
            subject: "alice".into(),
            claims: Default::default(),
        });
        assert_eq!(
            v(KeySource::Identity(Empty {}), &c),
            Some(b"https://iss|alice".to_vec())
        );
    }

    #[test]
    fn hashes_depend_on_every_part_the_rule_and_the_seed() {
        let sources = vec![
            KeySource::Header(HeaderKey { name: "a".into() }),
            KeySource::Header(HeaderKey { name: "b".into() }),
        ];
        let hash = |a: &str, b: &str, rule: &str, seed: Seed| {
            let h = host(&[("a", a), ("b", b)], "1.1.1.1:1");
            match seed.key(rule, &sources, &RequestView::of(&h, &ctx(&h))) {
                Key::Hash(k) => k,
                other => panic!("{other:?}"),
            }
        };
        let base = hash("ab", "c", "r", SEED);
        assert_eq!(base, hash("ab", "c", "r", SEED));
        assert_ne!(base, hash("a", "bc", "r", SEED));
        assert_ne!(base, hash("ab", "c", "s", SEED));
        assert_ne!(base, hash("ab", "c", "r", Seed([8; 16])));
        assert_ne!(base, SEED.missing_key_hash("r"));
        assert_eq!(key_of(&sources, &[("a", "x")]), Key::Missing);
    }

    #[test]
    fn non_utf8_and_huge_values_hash_cleanly() {
        let mut h = host(&[], "1.1.1.1:1");
        h.request_headers
            .push(("x-k".into(), vec![0xff, 0xfe, 0x00, 0x80]));
        h.request_headers
            .push(("x-big".into(), vec![b'a'; 1 << 20]));
        h.request_headers
            .push(("x-k".into(), vec![0xff, 0xfe, 0x00, 0x80]));
        h.request_headers
            .push(("x-twice".into(), vec![0xff; 1 << 20]));
        h.request_headers
            .push(("x-twice".into(), vec![0xff; 1 << 20]));
        let c = ctx(&h);
        for name in ["x-k", "x-big", "x-twice"] {
            let key = SEED.key("r", &[header_key(name)], &RequestView::of(&h, &c));
            assert!(matches!(key, Key::Hash(_)), "{name}: {key:?}");
        }
        // Two identical lines of non-UTF-8 bytes were one key above; a
        // third line differing in one byte makes it ambiguous.
        h.request_headers
            .push(("x-k".into(), vec![0xff, 0xfe, 0x00, 0x81]));
        let key = SEED.key("r", &[header_key("x-k")], &RequestView::of(&h, &c));
        assert_eq!(key, Key::Ambiguous);
    }

    #[test]
    fn identical_repeated_lines_are_one_key() {
        let k = [header_key("x-api-key")];
        let once = key_of(&k, &[("x-api-key", "spent")]);
        assert!(matches!(once, Key::Hash(_)));
        assert_eq!(
            key_of(&k, &[("x-api-key", "spent"), ("x-api-key", "spent")]),
            once
        );
        // Other headers in between do not matter; names are case-insensitive.
        assert_eq!(
            key_of(
                &k,
                &[
                    ("x-api-key", "spent"),
                    ("x-other", "fresh"),
                    ("X-Api-Key", "spent"),
                    ("x-api-key", "spent"),
                ]
            ),
            once
        );
    }

    #[test]
    fn different_repeated_lines_are_ambiguous_in_any_order() {
        let k = [header_key("x-api-key")];
        for lines in [
            &[("x-api-key", "fresh-1"), ("x-api-key", "spent")][..],
            &[("x-api-key", "spent"), ("x-api-key", "fresh-1")],
            &[("x-api-key", "spent"), ("X-API-KEY", "fresh-1")],
            &[
                ("x-api-key", "spent"),
                ("x-api-key", "spent"),
                ("x-api-key", "x"),
            ],
            // Bytes, not text: letter case and whitespace are differences.
            &[("x-api-key", "spent"), ("x-api-key", "SPENT")],
            &[("x-api-key", "spent"), ("x-api-key", "spent ")],
            // An empty line is a value too.
            &[("x-api-key", ""), ("x-api-key", "spent")],
        ] {
            assert_eq!(key_of(&k, lines), Key::Ambiguous, "{lines:?}");
        }
    }

    #[test]
    fn a_comma_list_in_one_line_is_one_opaque_key() {
        let k = [header_key("x-api-key")];
        let list = key_of(&k, &[("x-api-key", "spent, fresh")]);
        assert!(matches!(list, Key::Hash(_)));
        assert_ne!(list, key_of(&k, &[("x-api-key", "spent")]));
        assert_ne!(list, key_of(&k, &[("x-api-key", "fresh")]));
        // As two lines it would be ambiguous, not this key.
        assert_eq!(
            key_of(&k, &[("x-api-key", "spent"), ("x-api-key", "fresh")]),
            Key::Ambiguous
        );
    }

    #[test]
    fn a_missing_part_wins_over_an_ambiguous_one() {
        // With a part missing, the key does not use the other parts
        // (`on_missing_key`), so their lines do not matter; in any order.
        let dup = [("x-a", "1"), ("x-a", "2")];
        for sources in [
            [header_key("x-a"), header_key("x-none")],
            [header_key("x-none"), header_key("x-a")],
        ] {
            assert_eq!(key_of(&sources, &dup), Key::Missing);
        }
        let two = [header_key("x-a"), header_key("x-b")];
        assert_eq!(
            key_of(&two, &[("x-a", "1"), ("x-a", "2"), ("x-b", "b")]),
            Key::Ambiguous
        );
        assert_eq!(
            key_of(&two, &[("x-b", "b"), ("x-a", "1"), ("x-b", "c")]),
            Key::Ambiguous
        );
        // Only the parts a rule keys on are looked at.
        assert!(matches!(
            key_of(
                &[header_key("x-b")],
                &[("x-a", "1"), ("x-a", "2"), ("x-b", "b")]
            ),
            Key::Hash(_)
        ));
    }
}
