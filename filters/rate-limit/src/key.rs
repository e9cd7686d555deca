//! Where a rate-limit key comes from, and how it is hashed.
//!
//! The key is never stored: its parts are fed into a keyed SipHash-1-3
//! whose 128-bit key (the seed) is random per Envoy process and shared by
//! every worker through shared data. A client cannot predict which slot
//! its key lands in, so it cannot aim collisions at someone else's bucket.
//! Only the 64-bit hash leaves this module, so a huge header costs hashing
//! time, never memory.

use crate::config::{ClientIp, KeySource};
use filter_common::{HttpHost, RequestContext};
use siphasher::sip::SipHasher13;
use std::hash::Hasher;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Envoy attribute with the connection's peer, `ip:port`.
pub const SOURCE_ADDRESS: [&str; 2] = ["source", "address"];
/// Envoy attribute with the route's name.
pub const ROUTE_NAME: [&str; 2] = ["xds", "route_name"];
/// Envoy attribute with the first URI SAN of the peer certificate.
pub const PEER_URI_SAN: [&str; 2] = ["connection", "uri_san_peer_certificate"];

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

    /// The hash of a request's key for `rule`, or `None` when a part of
    /// the key is missing from the request.
    pub fn key_hash(
        &self,
        rule: &str,
        sources: &[KeySource],
        host: &dyn HttpHost,
        ctx: &RequestContext,
    ) -> Option<u64> {
        let mut h = self.hasher(rule);
        for (i, source) in sources.iter().enumerate() {
            let tag = u8::try_from(i + 1).unwrap_or(u8::MAX);
            part(&mut h, tag, &value(source, host, ctx)?);
        }
        Some(h.finish())
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

/// One key part's bytes, or `None` when the request lacks it.
pub fn value(source: &KeySource, host: &dyn HttpHost, ctx: &RequestContext) -> Option<Vec<u8>> {
    match source {
        KeySource::ClientIp(c) => client_ip(c, host),
        KeySource::Header(h) => host.request_header(&h.name),
        KeySource::Identity(_) => ctx.identity.as_ref().map(|i| i.key().into_bytes()),
        KeySource::Path(_) => Some(ctx.request.path.as_bytes().to_vec()),
        KeySource::Method(_) => Some(ctx.request.method.as_bytes().to_vec()),
        KeySource::Route(_) => host.property(&ROUTE_NAME).filter(|v| !v.is_empty()),
        KeySource::PeerUriSan(_) => host.property(&PEER_URI_SAN).filter(|v| !v.is_empty()),
    }
}

/// The client address as bytes (4 for IPv4, 16 for IPv6 after masking).
pub fn client_ip(config: &ClientIp, host: &dyn HttpHost) -> Option<Vec<u8>> {
    let raw = match config.trusted_hops {
        0 => None,
        hops => forwarded_hop(host, hops),
    };
    let raw = match raw {
        Some(r) => r,
        None => host.property(&SOURCE_ADDRESS)?,
    };
    Some(match parse_ip(&raw) {
        Some(ip) => ip_bytes(ip, config.ipv6_prefix_len.unwrap_or(128)),
        // Not an address (a pipe or a proxy's odd entry): the text itself.
        None => raw,
    })
}

/// The `hops`-th entry from the right of every `X-Forwarded-For` line,
/// or `None` when there are fewer entries (then the peer is used).
fn forwarded_hop(host: &dyn HttpHost, hops: u32) -> Option<Vec<u8>> {
    let lines: Vec<Vec<u8>> = host
        .request_headers()
        .into_iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-forwarded-for"))
        .map(|(_, v)| v)
        .collect();
    let entries = lines.iter().flat_map(|l| l.split(|b| *b == b','));
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
    use filter_common::RequestInfo;
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
            h,
        )
        .unwrap()
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
        let a = client_ip(&c, &h).unwrap();
        let h2 = host(&[], "[2001:db8:1:2:ffff::1]:1");
        assert_eq!(a, client_ip(&c, &h2).unwrap());
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
        let v = |s: KeySource, c: &RequestContext| value(&s, &h, c);
        let header = |n: &str| KeySource::Header(HeaderKey { name: n.into() });
        assert_eq!(v(header("x-api-key"), &c), Some(b"k1".to_vec()));
        assert_eq!(v(header("x-none"), &c), None);
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
            seed.key_hash(rule, &sources, &h, &ctx(&h)).unwrap()
        };
        let base = hash("ab", "c", "r", SEED);
        assert_eq!(base, hash("ab", "c", "r", SEED));
        assert_ne!(base, hash("a", "bc", "r", SEED));
        assert_ne!(base, hash("ab", "c", "s", SEED));
        assert_ne!(base, hash("ab", "c", "r", Seed([8; 16])));
        assert_ne!(base, SEED.missing_key_hash("r"));
        let h = host(&[("a", "x")], "1.1.1.1:1");
        assert_eq!(SEED.key_hash("r", &sources, &h, &ctx(&h)), None);
    }

    #[test]
    fn non_utf8_and_huge_values_hash_cleanly() {
        let mut h = host(&[], "1.1.1.1:1");
        h.request_headers
            .push(("x-k".into(), vec![0xff, 0xfe, 0x00, 0x80]));
        h.request_headers
            .push(("x-big".into(), vec![b'a'; 1 << 20]));
        let c = ctx(&h);
        for name in ["x-k", "x-big"] {
            let sources = vec![KeySource::Header(HeaderKey { name: name.into() })];
            assert!(SEED.key_hash("r", &sources, &h, &c).is_some());
        }
    }
}
