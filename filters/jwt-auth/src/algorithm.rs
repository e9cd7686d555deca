//! The JWS algorithms we accept, and which key each one needs.

use std::fmt;

/// A JWS `alg` we implement. `none` is not one of them, in any letter case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
    HS256,
    HS384,
    HS512,
}

/// The key family an algorithm needs (the JWK `kty`, and `crv` for curves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
    Oct,
}

/// The hash behind an algorithm, named as Envoy's `verify_signature` wants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

impl Hash {
    pub fn name(self) -> &'static str {
        match self {
            Hash::Sha256 => "sha256",
            Hash::Sha384 => "sha384",
            Hash::Sha512 => "sha512",
        }
    }
}

impl Alg {
    pub const ALL: [Alg; 12] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
        Alg::HS256,
        Alg::HS384,
        Alg::HS512,
    ];

    /// The default allowlist: every asymmetric algorithm. HMAC must be
    /// listed explicitly, so a public key can never become an HMAC secret.
    pub fn default_allowed() -> Vec<Alg> {
        Alg::ALL.into_iter().filter(|a| !a.is_hmac()).collect()
    }

    /// Exact, case-sensitive name match (RFC 7515 names are case-sensitive).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
            Alg::HS256 => "HS256",
            Alg::HS384 => "HS384",
            Alg::HS512 => "HS512",
        }
    }

    pub fn key_kind(self) -> KeyKind {
        match self {
            Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256 | Alg::PS384 | Alg::PS512 => {
                KeyKind::Rsa
            }
            Alg::ES256 => KeyKind::P256,
            Alg::ES384 => KeyKind::P384,
            Alg::EdDSA => KeyKind::Ed25519,
            Alg::HS256 | Alg::HS384 | Alg::HS512 => KeyKind::Oct,
        }
    }

    pub fn is_hmac(self) -> bool {
        self.key_kind() == KeyKind::Oct
    }

    pub fn hash(self) -> Hash {
        match self {
            Alg::RS256 | Alg::PS256 | Alg::ES256 | Alg::HS256 | Alg::EdDSA => Hash::Sha256,
            Alg::RS384 | Alg::PS384 | Alg::ES384 | Alg::HS384 => Hash::Sha384,
            Alg::RS512 | Alg::PS512 | Alg::HS512 => Hash::Sha512,
        }
    }

    /// Minimum HMAC key length (RFC 7518 §3.2: at least the hash size).
    pub fn min_hmac_key_len(self) -> usize {
        match self.hash() {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
            Hash::Sha512 => 64,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn names_round_trip_and_are_case_sensitive() {
        for a in Alg::ALL {
            assert_eq!(Alg::from_name(a.name()), Some(a));
        }
        assert_eq!(Alg::from_name("rs256"), None);
        for none in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(Alg::from_name(none), None);
        }
    }

    #[test]
    fn hmac_is_not_allowed_by_default() {
        let d = Alg::default_allowed();
        assert!(d.iter().all(|a| !a.is_hmac()));
        assert_eq!(d.len(), 9);
    }
}
