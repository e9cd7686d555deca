//! Every reason this filter rejects a request, in one place: each one gives
//! the HTTP status, the RFC 6750 `error` and `error_description`, the metric
//! label (`jwt_auth.denied.<label>`) and the audit reason.

/// Why a request was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No token where the rule's providers look for one.
    TokenMissing,
    /// Not a JWS compact serialization, bad base64url or bad JSON.
    Malformed,
    /// More tokens in the request than we verify.
    TooManyTokens,
    /// `alg` is `none`, unknown, or not in the provider's allowlist.
    AlgNotAllowed,
    /// A `crit` header parameter we do not understand (RFC 7515 §4.1.11).
    UnsupportedCrit,
    /// No key in the provider's set has the token's `kid`.
    UnknownKid,
    /// Keys exist but none fits the token's `alg` (kty, crv or JWK alg).
    NoMatchingKey,
    /// The signature does not verify.
    BadSignature,
    /// `exp` is in the past (beyond the clock skew).
    Expired,
    /// `nbf` is in the future (beyond the clock skew).
    NotYetValid,
    /// `iat` is in the future (beyond the clock skew).
    IssuedInFuture,
    /// `exp`, `nbf` or `iat` is not a number, or is absurd.
    BadTimeClaim,
    /// The provider requires `exp` (or `max_lifetime`) and it is absent.
    ExpirationRequired,
    /// `exp` is further ahead than the provider's `max_lifetime` allows.
    LifetimeTooLong,
    /// `iss` differs from the provider's issuer.
    IssuerMismatch,
    /// No `aud` value is one of the provider's audiences.
    AudienceMismatch,
    /// A claim in the payload has the wrong type (e.g. a numeric `sub`).
    BadClaim,
    /// The token is valid but the rule's claim conditions do not hold.
    InsufficientScope,
    /// The peer certificate's URI SAN is not one the rule accepts.
    PeerNotAllowed,
    /// The provider's keys have not arrived yet (remote JWKS).
    KeysUnavailable,
    /// Too many requests are already waiting for keys on this worker.
    Overloaded,
    /// The proxy refused to strip a client-sent identity header or token,
    /// or to write an identity header: the request cannot go on safely.
    HostError,
}

/// Counts rejections the proxy refused to send (the request then stays
/// paused until Envoy's stream timeout or the client's reset ends it).
pub const METRIC_SEND_FAILED: &str = "jwt_auth.send_failed";

impl Reason {
    pub const ALL: [Reason; 22] = [
        Reason::TokenMissing,
        Reason::Malformed,
        Reason::TooManyTokens,
        Reason::AlgNotAllowed,
        Reason::UnsupportedCrit,
        Reason::UnknownKid,
        Reason::NoMatchingKey,
        Reason::BadSignature,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::IssuedInFuture,
        Reason::BadTimeClaim,
        Reason::ExpirationRequired,
        Reason::LifetimeTooLong,
        Reason::IssuerMismatch,
        Reason::AudienceMismatch,
        Reason::BadClaim,
        Reason::InsufficientScope,
        Reason::PeerNotAllowed,
        Reason::KeysUnavailable,
        Reason::Overloaded,
        Reason::HostError,
    ];

    /// The label used in metrics, response bodies and audit events.
    pub fn label(self) -> &'static str {
        match self {
            Reason::TokenMissing => "token_missing",
            Reason::Malformed => "malformed",
            Reason::TooManyTokens => "too_many_tokens",
            Reason::AlgNotAllowed => "alg_not_allowed",
            Reason::UnsupportedCrit => "unsupported_crit",
            Reason::UnknownKid => "unknown_kid",
            Reason::NoMatchingKey => "no_matching_key",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::IssuedInFuture => "issued_in_future",
            Reason::BadTimeClaim => "bad_time_claim",
            Reason::ExpirationRequired => "expiration_required",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::IssuerMismatch => "issuer_mismatch",
            Reason::AudienceMismatch => "audience_mismatch",
            Reason::BadClaim => "bad_claim",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::PeerNotAllowed => "peer_not_allowed",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::Overloaded => "overloaded",
            Reason::HostError => "host_error",
        }
    }

    /// A short, fixed sentence: never derived from the token.
    pub fn description(self) -> &'static str {
        match self {
            Reason::TokenMissing => "Jwt is missing",
            Reason::Malformed => "Jwt is not a valid JWS compact serialization",
            Reason::TooManyTokens => "Too many Jwts in the request",
            Reason::AlgNotAllowed => "Jwt algorithm is not allowed",
            Reason::UnsupportedCrit => "Jwt has an unsupported critical header",
            Reason::UnknownKid => "Jwt key id is unknown",
            Reason::NoMatchingKey => "No key fits the Jwt algorithm",
            Reason::BadSignature => "Jwt verification fails",
            Reason::Expired => "Jwt is expired",
            Reason::NotYetValid => "Jwt is not yet valid",
            Reason::IssuedInFuture => "Jwt is issued in the future",
            Reason::BadTimeClaim => "Jwt has an invalid time claim",
            Reason::ExpirationRequired => "Jwt has no expiration",
            Reason::LifetimeTooLong => "Jwt lifetime is too long",
            Reason::IssuerMismatch => "Jwt issuer is not configured",
            Reason::AudienceMismatch => "Audiences in Jwt are not allowed",
            Reason::BadClaim => "Jwt has an invalid claim",
            Reason::InsufficientScope => "Jwt claims do not grant access",
            Reason::PeerNotAllowed => "Peer identity is not allowed",
            Reason::KeysUnavailable => "Verification keys are not available",
            Reason::Overloaded => "Too many requests are waiting for keys",
            Reason::HostError => "The proxy refused a request header change",
        }
    }

    pub fn status(self) -> u32 {
        match self {
            // As Envoy's jwt_authn: a valid token meant for another API.
            Reason::AudienceMismatch => 403,
            Reason::InsufficientScope | Reason::PeerNotAllowed => 403,
            Reason::KeysUnavailable | Reason::Overloaded => 503,
            Reason::HostError => 500,
            _ => 401,
        }
    }

    /// The RFC 6750 `error` code, if the response carries one.
    pub fn bearer_error(self) -> Option<&'static str> {
        match self {
            Reason::TokenMissing
            | Reason::KeysUnavailable
            | Reason::Overloaded
            | Reason::HostError => None,
            Reason::InsufficientScope | Reason::PeerNotAllowed => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// `jwt_auth.denied.<label>`.
    pub fn metric(self) -> String {
        format!("jwt_auth.denied.{}", self.label())
    }

    /// Envoy's response code details: `jwt_auth_denied{<label>}`, or
    /// `jwt_auth_internal_error{<label>}` when the proxy failed us.
    pub fn details(self) -> String {
        let what = match self {
            Reason::HostError => "jwt_auth_internal_error",
            _ => "jwt_auth_denied",
        };
        filter_common::code_details(what, self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn labels_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.label()), "{}", r.label());
            assert!(r
                .label()
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b == b'_'));
            assert!(!r.description().contains('"'));
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(Reason::TokenMissing.status(), 401);
        assert_eq!(Reason::TokenMissing.bearer_error(), None);
        assert_eq!(Reason::Expired.bearer_error(), Some("invalid_token"));
        assert_eq!(Reason::InsufficientScope.status(), 403);
        assert_eq!(Reason::AudienceMismatch.status(), 403);
        assert_eq!(
            Reason::AudienceMismatch.bearer_error(),
            Some("invalid_token")
        );
        assert_eq!(Reason::KeysUnavailable.status(), 503);
        assert_eq!(Reason::HostError.status(), 500);
        assert_eq!(Reason::HostError.bearer_error(), None);
    }

    #[test]
    fn details_name_the_reason_in_envoys_style() {
        assert_eq!(Reason::Expired.details(), "jwt_auth_denied{expired}");
        assert_eq!(
            Reason::HostError.details(),
            "jwt_auth_internal_error{host_error}"
        );
        for r in Reason::ALL {
            assert!(r.details().contains(&format!("{{{}}}", r.label())));
        }
    }
}
