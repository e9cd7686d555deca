//! Fields of Envoy's `jwt_authn` config that we do not implement, so that a
//! pasted native config either loads or says what to use instead.
//!
//! Two kinds (the README's field table lists every one):
//! - **accepted, no effect**: our behaviour already covers what the field
//!   asks for, and ignoring it can never let more requests through
//!   (`jwt_cache_config`, `remote_jwks.async_fetch`, ...). Each one present
//!   gives an `info` notice at load.
//! - **refused**: the config is refused, naming the field and what to use
//!   instead. A boolean whose default is what we do is accepted when false.

use crate::duration::Millis;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// A field we refuse; it never deserializes (see [`refuse!`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {}

/// `fn $name`: a `deserialize_with` that refuses the field with `$why`.
macro_rules! refuse {
    ($name:ident, $why:expr) => {
        pub fn $name<'de, D: Deserializer<'de>>(_: D) -> Result<Option<Refused>, D::Error> {
            Err(D::Error::custom($why))
        }
    };
}

/// `fn $name`: a `deserialize_with` for a boolean that is accepted when
/// false (what we do) and refused with `$why` when true.
macro_rules! refuse_true {
    ($name:ident, $why:expr) => {
        pub fn $name<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
            match bool::deserialize(d)? {
                false => Ok(false),
                true => Err(D::Error::custom($why)),
            }
        }
    };
}

const METADATA: &str = "not supported: a wasm filter cannot write dynamic metadata; read the \
    verified identity from filter state `wasm.portcullis.identity` (JSON), or send claims \
    upstream with `claim_to_headers` or `forward_payload_header`";

refuse!(payload_in_metadata, METADATA);
refuse!(header_in_metadata, METADATA);
refuse!(normalize_payload_in_metadata, METADATA);
refuse!(
    failed_status_in_metadata,
    "not supported: a wasm filter cannot write dynamic metadata; the decision and its reason \
     are in filter state `wasm.portcullis.jwt` (JSON)"
);
refuse!(
    subjects,
    "not supported: check `sub` with the rule's `authorization`, e.g. \
     {\"all\": [{\"claim\": \"sub\", \"any_of\": [\"spiffe://example.com/a\"]}]}"
);
refuse_true!(
    pad_forward_payload_header,
    "not supported: the payload header is unpadded base64url, as in the token; remove the \
     field (or set it false)"
);
refuse_true!(
    clear_route_cache,
    "not supported: rules here do not re-pick the route after claim headers are written; \
     remove the field (or set it false)"
);
refuse!(
    claim_path,
    "not supported: use `claim_name` (dots reach nested claims, and a top-level name that \
     contains dots is found first)"
);
refuse!(
    filename,
    "not supported: a wasm filter cannot read files; put the JWKS in `inline_string`, or \
     serve it and use `remote_jwks`"
);
refuse!(
    environment_variable,
    "not supported: a wasm filter cannot read Envoy's environment; put the JWKS in \
     `inline_string`, or serve it and use `remote_jwks`"
);
refuse!(
    watched_directory,
    "not supported: a wasm filter cannot watch files; use `remote_jwks` for keys that change"
);
refuse!(
    extract_only_without_validation,
    "not supported: claims of a token whose signature was not checked are never forwarded; \
     use `allow_missing_or_failed` (a valid token still yields its claims) or `provider_name`"
);
refuse!(
    filter_state_rules,
    "not supported: pick requirements with `rules` (match on path, method, host or headers)"
);
refuse_true!(
    strip_failure_response,
    "not supported: the rejection body holds only the reason label and a fixed message, never \
     token content; remove the field (or set it false)"
);

/// Envoy's `JwtCacheConfig`: accepted, no effect. Our verified-token cache
/// is always on (sized with the top-level `token_cache`).
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct JwtCacheConfigJson {
    #[serde(default)]
    pub jwt_cache_size: Option<u32>,
    #[serde(default)]
    pub jwt_max_token_size: Option<u32>,
}

/// Envoy's `JwksAsyncFetch`: accepted, no effect. We always fetch keys
/// ahead, once for all workers; requests that come before the first set
/// wait for it, then get 503 (never let through).
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct AsyncFetchJson {
    #[serde(default)]
    pub fast_listener: bool,
    #[serde(default)]
    pub failed_refetch_duration: Option<Millis>,
}

/// What a no-op field says at load (an `info` line in Envoy's log).
pub const JWT_CACHE_CONFIG: &str =
    "has no effect: verified tokens are always cached (size the cache with `token_cache`)";
pub const ASYNC_FETCH: &str = "has no effect: keys are always fetched ahead, once for all workers";
pub const RETRY_POLICY: &str = "has no effect: a failed fetch is retried every second until \
    keys arrive, and a stale set is kept while refreshes fail";
pub const STAT_PREFIX: &str = "has no effect: stats are named `wasmcustom.jwt_auth.*`";

/// A repeated string field given as one string (`audiences: api`): Envoy's
/// loader takes it as a list of one, and so do we. (A visitor, not an
/// untagged enum: those cost the wasm module tens of KiB.)
pub fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Self::Value, E> {
            Ok(vec![s.to_string()])
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut a: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(s) = a.next_element::<String>()? {
                out.push(s);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Keys, OCT_SKIPPED_METRIC};
    use crate::filter::{Check, JwtAuth, Mode};
    use crate::status::Reason;
    use crate::testkit::{claims, jwks, Key, KeyName, NOW};
    use crate::verifier::PureRust;
    use filter_common::testing::{FakeHost, FakeMetrics, FakeSharedData};
    use filter_common::{Level, RequestContext};
    use serde_json::{json, Value};
    use std::cell::RefCell;
    use std::rc::Rc;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn local() -> Value {
        json!({"inline_string": jwks(&[Key::get(KeyName::RsaA)])})
    }

    fn remote() -> Value {
        json!({"http_uri": {"uri": "http://idp/jwks.json", "cluster": "idp", "timeout": "1s"}})
    }

    /// A config with provider `p` (`local_jwks` unless `provider` says
    /// otherwise) and `top` merged in.
    fn config(provider: Value, top: Value) -> Value {
        let mut p = json!({"issuer": "https://issuer.test", "local_jwks": local()});
        for (k, v) in provider.as_object().unwrap() {
            if k == "remote_jwks" {
                p.as_object_mut().unwrap().remove("local_jwks");
            }
            p[k] = v.clone();
        }
        let mut c = json!({"providers": {"p": p}});
        for (k, v) in top.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    enum Want {
        /// Loads; the notices hold this text (`""`: no notice).
        Loads(&'static str),
        /// Refused at this path, with a message holding this text.
        Refused(&'static str, &'static str),
    }

    #[test]
    fn every_native_field_is_supported_accepted_or_refused() {
        use Want::{Loads, Refused};
        let on_rule = |r: Value| json!({"rules": [r]});
        let cases: Vec<(&str, Value, Value, Want)> = vec![
            // JwtAuthentication
            (
                "stat_prefix",
                json!({}),
                json!({"stat_prefix": "jwt"}),
                Loads("stat_prefix has no effect"),
            ),
            (
                "bypass_cors_preflight",
                json!({}),
                json!({"bypass_cors_preflight": true}),
                Loads(""),
            ),
            (
                "requirement_map",
                json!({}),
                json!({"requirement_map": {"r": {"provider_name": "p"}}, "rules": [{"match": {"prefix": "/"}, "requirement_name": "r"}]}),
                Loads(""),
            ),
            (
                "requirement_name unknown",
                json!({}),
                on_rule(json!({"match": {"prefix": "/"}, "requirement_name": "zz"})),
                Refused("rules[0].requirement_name", "no requirement named"),
            ),
            (
                "requires and requirement_name",
                json!({}),
                json!({"requirement_map": {"r": {"provider_name": "p"}}, "rules": [{"match": {"prefix": "/"}, "requirement_name": "r", "requires": {"provider_name": "p"}}]}),
                Refused("rules[0].requirement_name", "not both"),
            ),
            (
                "filter_state_rules",
                json!({}),
                json!({"filter_state_rules": {"name": "x", "requires": {}}}),
                Refused("filter_state_rules", "with `rules`"),
            ),
            (
                "strip_failure_response false",
                json!({}),
                json!({"strip_failure_response": false}),
                Loads(""),
            ),
            (
                "strip_failure_response true",
                json!({}),
                json!({"strip_failure_response": true}),
                Refused("strip_failure_response", "never token content"),
            ),
            // JwtProvider
            (
                "audiences as one string",
                json!({"audiences": "api"}),
                json!({}),
                Loads(""),
            ),
            (
                "jwt_cache_config",
                json!({"jwt_cache_config": {"jwt_cache_size": 100, "jwt_max_token_size": 4096}}),
                json!({}),
                Loads("providers.p.jwt_cache_config has no effect"),
            ),
            (
                "jwt_cache_config typo",
                json!({"jwt_cache_config": {"size": 1}}),
                json!({}),
                Refused("providers.p.jwt_cache_config.size", "unknown field"),
            ),
            (
                "subjects",
                json!({"subjects": {"prefix": "spiffe://x/"}}),
                json!({}),
                Refused("providers.p.subjects", "authorization"),
            ),
            (
                "pad_forward_payload_header false",
                json!({"pad_forward_payload_header": false}),
                json!({}),
                Loads(""),
            ),
            (
                "pad_forward_payload_header true",
                json!({"pad_forward_payload_header": true}),
                json!({}),
                Refused("providers.p.pad_forward_payload_header", "unpadded"),
            ),
            (
                "payload_in_metadata",
                json!({"payload_in_metadata": "jwt"}),
                json!({}),
                Refused(
                    "providers.p.payload_in_metadata",
                    "wasm.portcullis.identity",
                ),
            ),
            (
                "header_in_metadata",
                json!({"header_in_metadata": "h"}),
                json!({}),
                Refused("providers.p.header_in_metadata", "dynamic metadata"),
            ),
            (
                "normalize_payload_in_metadata",
                json!({"normalize_payload_in_metadata": {"space_delimited_claims": ["scope"]}}),
                json!({}),
                Refused(
                    "providers.p.normalize_payload_in_metadata",
                    "dynamic metadata",
                ),
            ),
            (
                "failed_status_in_metadata",
                json!({"failed_status_in_metadata": "f"}),
                json!({}),
                Refused(
                    "providers.p.failed_status_in_metadata",
                    "wasm.portcullis.jwt",
                ),
            ),
            (
                "clear_route_cache false",
                json!({"clear_route_cache": false}),
                json!({}),
                Loads(""),
            ),
            (
                "clear_route_cache true",
                json!({"clear_route_cache": true}),
                json!({}),
                Refused("providers.p.clear_route_cache", "route"),
            ),
            (
                "claim_path",
                json!({"claim_to_headers": [{"header_name": "x-a", "claim_path": [{"key": "a"}]}]}),
                json!({}),
                Refused("providers.p.claim_to_headers[0].claim_path", "claim_name"),
            ),
            // DataSource
            (
                "local_jwks.filename",
                json!({"local_jwks": {"filename": "/etc/jwks.json"}}),
                json!({}),
                Refused("providers.p.local_jwks.filename", "inline_string"),
            ),
            (
                "local_jwks.environment_variable",
                json!({"local_jwks": {"environment_variable": "JWKS"}}),
                json!({}),
                Refused(
                    "providers.p.local_jwks.environment_variable",
                    "inline_string",
                ),
            ),
            (
                "local_jwks.inline_bytes",
                json!({"local_jwks": {"inline_bytes": base64_of(&jwks(&[Key::get(KeyName::RsaA)]))}}),
                json!({}),
                Loads(""),
            ),
            (
                "local_jwks.inline_bytes garbled",
                json!({"local_jwks": {"inline_bytes": "!!"}}),
                json!({}),
                Refused("providers.p.local_jwks.inline_bytes", "base64"),
            ),
            (
                "local_jwks empty",
                json!({"local_jwks": {}}),
                json!({}),
                Refused("providers.p.local_jwks", "inline_string"),
            ),
            // As Envoy's docs examples write a JWKS: `n` folded over lines.
            (
                "local_jwks with line breaks in n",
                json!({"local_jwks": {"inline_string": folded_jwks()}}),
                json!({}),
                Loads(""),
            ),
            // RemoteJwks
            (
                "cache_duration as an object",
                json!({"remote_jwks": {"http_uri": {"uri": "http://idp/k", "cluster": "idp", "timeout": {"seconds": 2}}, "cache_duration": {"seconds": 300}}}),
                json!({}),
                Loads(""),
            ),
            (
                "async_fetch",
                json!({"remote_jwks": merge(remote(), json!({"async_fetch": {"fast_listener": true, "failed_refetch_duration": "2s"}}))}),
                json!({}),
                Loads("remote_jwks.async_fetch has no effect"),
            ),
            (
                "retry_policy",
                json!({"remote_jwks": merge(remote(), json!({"retry_policy": {"retry_back_off": {"base_interval": "0.01s", "max_interval": "20s"}, "num_retries": 10}}))}),
                json!({}),
                Loads("remote_jwks.retry_policy has no effect"),
            ),
            // JwtRequirement
            (
                "provider_and_audiences",
                json!({}),
                on_rule(
                    json!({"match": {"prefix": "/"}, "requires": {"provider_and_audiences": {"provider_name": "p", "audiences": "other"}}}),
                ),
                Loads(""),
            ),
            (
                "extract_only_without_validation",
                json!({}),
                on_rule(
                    json!({"match": {"prefix": "/"}, "requires": {"extract_only_without_validation": {}}}),
                ),
                Refused(
                    "rules[0].requires.extract_only_without_validation",
                    "allow_missing_or_failed",
                ),
            ),
            // RouteMatch forms we lack (filters/common) and typos: unknown.
            (
                "match.safe_regex",
                json!({}),
                on_rule(json!({"match": {"safe_regex": {"regex": "/a.*"}}})),
                Refused("rules[0].match.safe_regex", "unknown field"),
            ),
            (
                "a typo",
                json!({"isuer": "x"}),
                json!({}),
                Refused("providers.p.isuer", "unknown field"),
            ),
        ];
        for (name, provider, top, want) in cases {
            let doc = config(provider, top);
            match (Config::parse(doc.to_string().as_bytes()), want) {
                (Ok(c), Want::Loads(notice)) => {
                    let said: Vec<&str> = c.notices.iter().map(|n| n.message.as_str()).collect();
                    if notice.is_empty() {
                        assert!(said.is_empty(), "{name}: {said:?}");
                    } else {
                        assert!(said.iter().any(|m| m.contains(notice)), "{name}: {said:?}");
                        assert!(c.notices.iter().all(|n| n.level == Level::Info), "{name}");
                    }
                }
                (Err(e), Want::Refused(path, says)) => {
                    assert_eq!(e.path, path, "{name}: {e}");
                    assert!(e.message.contains(says), "{name}: {e}");
                }
                (Ok(_), Want::Refused(path, _)) => panic!("{name}: loaded, want refused at {path}"),
                (Err(e), Want::Loads(_)) => panic!("{name}: refused: {e}"),
            }
        }
    }

    /// The RSA test key's JWKS with its `n` broken over indented lines.
    fn folded_jwks() -> String {
        let mut jwk = Key::get(KeyName::RsaA).jwk();
        let n = jwk["n"].as_str().unwrap().to_string();
        let (a, b) = n.split_at(40);
        jwk["n"] = Value::String("PLACEHOLDER".into());
        json!({ "keys": [jwk] })
            .to_string()
            .replace("PLACEHOLDER", &format!("{a}\n        {b}"))
            .replace("{\"keys\":", "{\"keys\":\n\t")
    }

    fn merge(mut a: Value, b: Value) -> Value {
        for (k, v) in b.as_object().unwrap() {
            a[k] = v.clone();
        }
        a
    }

    fn base64_of(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn check(auth: &mut JwtAuth, method: &str, path: &str, headers: &[(&str, &str)]) -> Check {
        let mut host = FakeHost::request(method, path, "api.test", headers);
        host.now_nanos = NOW as u64 * 1_000_000_000;
        let mut ctx = RequestContext::default();
        let mut m = FakeMetrics::default();
        auth.check(&mut host, &mut ctx, &PureRust, &mut m, Mode::MayWait)
    }

    fn with_token(auth: &mut JwtAuth, path: &str, token: &str) -> Check {
        let bearer = format!("Bearer {token}");
        check(auth, "GET", path, &[("authorization", &bearer)])
    }

    #[test]
    fn a_mixed_local_jwks_loads_without_its_oct_keys() {
        let (rsa, ec, hmac) = (
            Key::get(KeyName::RsaA),
            Key::get(KeyName::P256),
            Key::get(KeyName::Hmac),
        );
        let set = jwks(&[
            Key::get(KeyName::RsaA),
            Key::get(KeyName::P256),
            Key::get(KeyName::Hmac),
        ]);
        let rules = json!([{"match": {"prefix": "/"}, "requires": {"provider_name": "main"}}]);
        let load = |algorithms: Option<Value>| {
            let mut p =
                json!({"issuer": "https://issuer.test", "local_jwks": {"inline_string": set}});
            if let Some(a) = algorithms {
                p["algorithms"] = a;
            }
            Config::parse(
                json!({"providers": {"main": p}, "rules": rules})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap()
        };
        let c = load(None);
        let Keys::Local(keys) = &c.providers[0].keys else {
            panic!("local keys")
        };
        assert_eq!((keys.keys.len(), keys.oct_skipped), (2, 1));
        assert_eq!(c.notices.len(), 1);
        assert_eq!(c.notices[0].level, Level::Warn);
        assert_eq!(
            c.notices[0].message,
            "jwt_auth: provider \"main\": 1 oct (HMAC) key in local_jwks skipped: list HS256, HS384 or HS512 in algorithms to use it"
        );
        assert_eq!(c.notices[0].metric, Some((OCT_SKIPPED_METRIC, 1)));

        use crate::algorithm::Alg;
        let good = claims(json!({}));
        let mut auth = JwtAuth::new(Rc::new(c));
        let hs_with_rsa_kid =
            hmac.sign_with_header(Alg::HS256, &json!({"alg": "HS256", "kid": "rsa-a"}), &good);
        let rs_with_oct_kid =
            rsa.sign_with_header(Alg::RS256, &json!({"alg": "RS256", "kid": "hmac"}), &good);
        let decisions = [
            ("RS256", rsa.token(Alg::RS256, &good), Check::Continue),
            ("ES256", ec.token(Alg::ES256, &good), Check::Continue),
            (
                "HS256 with the oct key",
                hmac.token(Alg::HS256, &good),
                Check::Responded(Reason::AlgNotAllowed),
            ),
            (
                "HS512 with the oct key",
                hmac.token(Alg::HS512, &good),
                Check::Responded(Reason::AlgNotAllowed),
            ),
            (
                "HS256 naming the RSA kid",
                hs_with_rsa_kid,
                Check::Responded(Reason::AlgNotAllowed),
            ),
            (
                "RS256 naming the oct kid",
                rs_with_oct_kid,
                Check::Responded(Reason::UnknownKid),
            ),
        ];
        for (name, token, want) in &decisions {
            assert_eq!(with_token(&mut auth, "/x", token), *want, "{name}");
        }

        // With HMAC listed, the same set keeps its oct key and HS256 passes.
        let c = load(Some(json!(["RS256", "HS256"])));
        assert!(c.notices.is_empty());
        let mut auth = JwtAuth::new(Rc::new(c));
        assert_eq!(
            with_token(&mut auth, "/x", &hmac.token(Alg::HS256, &good)),
            Check::Continue
        );
        assert_eq!(
            with_token(&mut auth, "/x", &ec.token(Alg::ES256, &good)),
            Check::Responded(Reason::AlgNotAllowed)
        );

        // Only oct keys and no HMAC: nothing could verify, so refused.
        let only = json!({"providers": {"main": {"local_jwks": {"inline_string": jwks(&[Key::get(KeyName::Hmac)])}}}});
        let e = Config::parse(only.to_string().as_bytes()).unwrap_err();
        assert_eq!(e.path, "providers.main.local_jwks.inline_string");
        assert!(e.message.contains("HS256, HS384 or HS512"), "{e}");
    }

    #[test]
    fn notices_are_said_once_per_envoy() {
        let set = jwks(&[
            Key::get(KeyName::RsaA),
            Key::get(KeyName::Hmac),
            Key::get(KeyName::Hmac),
        ]);
        let doc = json!({"providers": {"a": {"local_jwks": {"inline_string": set}, "jwt_cache_config": {}}}});
        let c = Config::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(c.notices.len(), 2);
        let mut shared = FakeSharedData::default();
        let said: RefCell<Vec<(Level, String)>> = RefCell::default();
        let log = |l: Level, m: &str| said.borrow_mut().push((l, m.to_string()));
        let mut metrics = FakeMetrics::default();
        // Three VMs (main thread and two workers) load the same config.
        let spoke: Vec<bool> = (0..3)
            .map(|_| c.announce(&mut shared, &mut metrics, &log))
            .collect();
        assert_eq!(spoke, [true, false, false]);
        let said = said.into_inner();
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said.iter().any(|(l, m)| *l == Level::Warn
            && m.contains("2 oct (HMAC) keys")
            && m.ends_with("to use them")));
        assert_eq!(metrics.values[OCT_SKIPPED_METRIC], 2);
        // A config without notices says nothing and marks nothing.
        let quiet = Config::parse(br#"{}"#).unwrap();
        let before = shared.entries.len();
        assert!(!quiet.announce(&mut shared, &mut metrics, &|_, _| panic!("said")));
        assert_eq!(shared.entries.len(), before);
    }

    #[test]
    fn provider_and_audiences_checks_its_own_audiences_only() {
        let rsa = Key::get(KeyName::RsaA);
        use crate::algorithm::Alg;
        let doc = json!({
            "providers": {"main": {"issuer": "https://issuer.test", "audiences": ["api"], "local_jwks": local()}},
            "rules": [
                {"match": {"prefix": "/special"}, "requires": {"provider_and_audiences": {"provider_name": "main", "audiences": ["special"]}}},
                {"match": {"prefix": "/optional"}, "requires": {"allow_missing": {}}},
                {"match": {"prefix": "/"}, "requires": {"provider_name": "main"}}
            ]
        });
        let c = Config::parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(c.providers.len(), 2);
        assert_eq!(c.providers[1].name, "main");
        assert_eq!(c.providers[1].claims.audiences, ["special"]);
        assert!(matches!(c.providers[1].keys, Keys::SameAs(0)));
        let mut auth = JwtAuth::new(Rc::new(c));
        let special = rsa.token(Alg::RS256, &claims(json!({"aud": "special"})));
        let api = rsa.token(Alg::RS256, &claims(json!({"aud": "api"})));
        let mismatch = Check::Responded(Reason::AudienceMismatch);
        let cases = [
            ("/special", &special, Check::Continue),
            ("/special", &api, mismatch),
            ("/x", &api, Check::Continue),
            ("/x", &special, mismatch),
            // allow_missing judges by the configured providers, not the copy.
            ("/optional", &special, mismatch),
            ("/optional", &api, Check::Continue),
        ];
        for (path, token, want) in cases {
            assert_eq!(with_token(&mut auth, path, token), want, "{path}");
        }
    }

    #[test]
    fn requirement_name_and_cors_preflight() {
        let doc = json!({
            "providers": {"main": {"issuer": "https://issuer.test", "local_jwks": local()}},
            "bypass_cors_preflight": true,
            "requirement_map": {"needs_main": {"provider_name": "main"}},
            "rules": [{"match": {"prefix": "/"}, "requirement_name": "needs_main"}]
        });
        let mut auth = JwtAuth::new(Rc::new(Config::parse(doc.to_string().as_bytes()).unwrap()));
        let missing = Check::Responded(Reason::TokenMissing);
        let preflight = [
            ("origin", "https://app.test"),
            ("access-control-request-method", "POST"),
        ];
        type Headers<'a> = &'a [(&'a str, &'a str)];
        let cases: [(&str, Headers, Check); 5] = [
            ("OPTIONS", &preflight, Check::Continue),
            ("GET", &preflight, missing),
            ("OPTIONS", &[("origin", "https://app.test")], missing),
            (
                "OPTIONS",
                &[("origin", ""), ("access-control-request-method", "POST")],
                missing,
            ),
            ("OPTIONS", &[], missing),
        ];
        for (method, headers, want) in cases {
            assert_eq!(
                check(&mut auth, method, "/x", headers),
                want,
                "{method} {headers:?}"
            );
        }
    }
}
