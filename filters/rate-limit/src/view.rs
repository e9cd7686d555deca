//! The read step: what the rules look at in one request. Every read is a
//! host call, so each is made only when a rule needs it: the pseudo-headers
//! the rules name, the identity when a rule keys on it, and the header list
//! (once) when a key part reads a header.

use filter_common::identity::{Identity, IDENTITY_KEY};
use filter_common::request::Fields;
use filter_common::{HttpHost, RequestContext, RequestInfo};
use std::cell::OnceCell;

/// Fills what the chain has not already put in `ctx`: the pseudo-headers in
/// `fields` and, if `identity` (some rule keys on it), the identity
/// jwt-auth left in filter state when the filters run separately.
pub fn complete(ctx: &mut RequestContext, host: &dyn HttpHost, fields: Fields, identity: bool) {
    if ctx.request.method.is_empty() && ctx.request.path.is_empty() {
        ctx.request = RequestInfo::read(host, fields);
    }
    if identity && ctx.identity.is_none() {
        ctx.identity = host
            .property(&[IDENTITY_KEY])
            .and_then(|v| serde_json::from_slice::<Identity>(&v).ok());
    }
}

/// One request as the rules see it. Reading it writes nothing: the host is
/// only asked for headers and attributes.
pub struct RequestView<'a> {
    host: &'a dyn HttpHost,
    pub info: &'a RequestInfo,
    /// Set by jwt-auth once a token is verified.
    pub identity: Option<&'a Identity>,
    /// Every request header, duplicates included: one host call, made at
    /// most once and only when a key part needs it (a `header` key,
    /// `client_ip` with `trusted_hops`). Cheap inside the chain, whose host
    /// is a [`filter_common::HeaderSnapshot`].
    all: OnceCell<Vec<(String, Vec<u8>)>>,
}

impl<'a> RequestView<'a> {
    /// Nothing is read until a rule asks.
    pub fn new(
        host: &'a dyn HttpHost,
        info: &'a RequestInfo,
        identity: Option<&'a Identity>,
    ) -> Self {
        RequestView {
            host,
            info,
            identity,
            all: OnceCell::new(),
        }
    }

    /// The view of a request whose context [`complete`] filled.
    pub fn of(host: &'a dyn HttpHost, ctx: &'a RequestContext) -> Self {
        Self::new(host, &ctx.request, ctx.identity.as_ref())
    }

    /// For header matchers and Envoy attributes.
    pub fn host(&self) -> &'a dyn HttpHost {
        self.host
    }

    /// Every line of header `name` (case-insensitive), in request order.
    pub fn lines<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.all
            .get_or_init(|| self.host.request_headers())
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}
