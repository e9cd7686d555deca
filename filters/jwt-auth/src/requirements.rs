//! Which providers a rule requires, with Envoy's `JwtRequirement` semantics:
//! `provider_name`, `provider_and_audiences`, `requires_any`,
//! `requires_all`, `allow_missing`, `allow_missing_or_failed`, nested as
//! deep as needed.

use crate::status::Reason;
use filter_common::ConfigError;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Envoy's `JwtRequirement`, in proto-JSON. Give exactly one field.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RequirementJson {
    /// A valid token from this provider is required.
    #[serde(default)]
    pub provider_name: Option<String>,
    /// As `provider_name`, with these audiences instead of the provider's.
    #[serde(default)]
    pub provider_and_audiences: Option<ProviderWithAudiences>,
    /// At least one of these requirements must pass.
    #[serde(default)]
    pub requires_any: Option<RequirementList>,
    /// Every one of these requirements must pass.
    #[serde(default)]
    pub requires_all: Option<RequirementList>,
    /// `{}`: passes without a token; a token that is present must be valid.
    #[serde(default)]
    pub allow_missing: Option<Empty>,
    /// `{}`: always passes; a valid token still yields an identity.
    #[serde(default)]
    pub allow_missing_or_failed: Option<Empty>,
    /// Refused: claims of unverified tokens are never forwarded.
    #[serde(
        default,
        deserialize_with = "crate::native::extract_only_without_validation"
    )]
    pub extract_only_without_validation: Option<crate::native::Refused>,
}

/// Envoy's `ProviderWithAudiences`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ProviderWithAudiences {
    pub provider_name: String,
    /// Replace the provider's `audiences` for this requirement (empty: the
    /// provider's own, as in Envoy).
    #[serde(default, deserialize_with = "crate::native::one_or_many")]
    #[cfg_attr(
        feature = "schema",
        schemars(schema_with = "crate::schema::one_or_many")
    )]
    pub audiences: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RequirementList {
    pub requirements: Vec<RequirementJson>,
}

/// The empty message `{}`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// A validated requirement; providers by index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Provider(usize),
    Any(Vec<Requirement>),
    All(Vec<Requirement>),
    /// Judged by the first `n` providers: those configured, not the copies
    /// made for `provider_and_audiences` (Envoy does the same).
    AllowMissing(usize),
    AllowMissingOrFailed(usize),
}

/// Provider names to indices while requirements compile. A
/// `provider_and_audiences` with its own audiences gets an index past the
/// configured providers; the config then adds a copy of that provider with
/// those audiences there (see [`ProviderIndex::overrides`]).
#[derive(Debug, Clone, Default)]
pub struct ProviderIndex {
    names: BTreeMap<String, usize>,
    /// `(configured provider, audiences)`, for indices `configured + i`.
    pub overrides: Vec<(usize, Vec<String>)>,
}

impl ProviderIndex {
    pub fn new(names: BTreeMap<String, usize>) -> Self {
        ProviderIndex {
            names,
            overrides: Vec::new(),
        }
    }

    /// How many providers are configured.
    pub fn configured(&self) -> usize {
        self.names.len()
    }

    fn resolve(&mut self, name: &str, audiences: &[String]) -> Option<usize> {
        let p = *self.names.get(name)?;
        if audiences.is_empty() {
            return Some(p);
        }
        let mut auds = audiences.to_vec();
        auds.sort();
        auds.dedup();
        let i = match self.overrides.iter().position(|o| *o == (p, auds.clone())) {
            Some(i) => i,
            None => {
                self.overrides.push((p, auds));
                self.overrides.len() - 1
            }
        };
        Some(self.configured() + i)
    }
}

/// Nesting deeper than this is refused (it only costs stack).
const MAX_DEPTH: usize = 8;

impl RequirementJson {
    /// Resolves provider names; errors are relative to this requirement.
    pub fn compile(&self, providers: &mut ProviderIndex) -> Result<Requirement, ConfigError> {
        self.compile_at(providers, 0)
    }

    fn compile_at(
        &self,
        providers: &mut ProviderIndex,
        depth: usize,
    ) -> Result<Requirement, ConfigError> {
        if depth > MAX_DEPTH {
            return Err(ConfigError::at(
                "",
                format!("nested deeper than {MAX_DEPTH}"),
            ));
        }
        let set = [
            self.provider_name.is_some(),
            self.provider_and_audiences.is_some(),
            self.requires_any.is_some(),
            self.requires_all.is_some(),
            self.allow_missing.is_some(),
            self.allow_missing_or_failed.is_some(),
        ];
        if set.iter().filter(|b| **b).count() != 1 {
            return Err(ConfigError::at(
                "",
                "give exactly one of provider_name, provider_and_audiences, requires_any, requires_all, allow_missing, allow_missing_or_failed",
            ));
        }
        if let Some(name) = &self.provider_name {
            return providers
                .resolve(name, &[])
                .map(Requirement::Provider)
                .ok_or_else(|| {
                    ConfigError::at("provider_name", format!("no provider named `{name}`"))
                });
        }
        if let Some(pa) = &self.provider_and_audiences {
            if pa.audiences.iter().any(String::is_empty) {
                return Err(ConfigError::at(
                    "provider_and_audiences.audiences",
                    "must not hold an empty audience",
                ));
            }
            let name = &pa.provider_name;
            return providers
                .resolve(name, &pa.audiences)
                .map(Requirement::Provider)
                .ok_or_else(|| {
                    ConfigError::at(
                        "provider_and_audiences.provider_name",
                        format!("no provider named `{name}`"),
                    )
                });
        }
        let mut list = |l: &RequirementList,
                        field: &str|
         -> Result<Vec<Requirement>, ConfigError> {
            if l.requirements.len() < 2 {
                return Err(ConfigError::at(
                    format!("{field}.requirements"),
                    "give at least two requirements",
                ));
            }
            l.requirements
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    r.compile_at(providers, depth + 1)
                        .map_err(|e| filter_common::nest(&format!("{field}.requirements[{i}]"), e))
                })
                .collect()
        };
        if let Some(l) = &self.requires_any {
            return list(l, "requires_any").map(Requirement::Any);
        }
        if let Some(l) = &self.requires_all {
            return list(l, "requires_all").map(Requirement::All);
        }
        let configured = providers.configured();
        if self.allow_missing.is_some() {
            return Ok(Requirement::AllowMissing(configured));
        }
        Ok(Requirement::AllowMissingOrFailed(configured))
    }
}

/// What one provider made of the request's tokens.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderOutcome<V> {
    /// No token where this provider looks.
    Missing,
    Verified(V),
    Failed(Reason),
    /// Keys are not there yet (or a refetch for an unknown `kid` is due).
    NeedKeys,
}

/// What a requirement made of the request.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<V> {
    /// Passed, with the tokens that verified (maybe none).
    Allowed(Vec<V>),
    Missing,
    Failed(Reason),
    NeedKeys,
}

impl Requirement {
    /// Evaluates with `verify(provider)` (the caller memoises it).
    pub fn evaluate<V: Clone>(
        &self,
        providers: usize,
        verify: &mut dyn FnMut(usize) -> ProviderOutcome<V>,
    ) -> Outcome<V> {
        match self {
            Requirement::Provider(p) => match verify(*p) {
                ProviderOutcome::Missing => Outcome::Missing,
                ProviderOutcome::Verified(v) => Outcome::Allowed(vec![v]),
                ProviderOutcome::Failed(r) => Outcome::Failed(r),
                ProviderOutcome::NeedKeys => Outcome::NeedKeys,
            },
            Requirement::Any(list) => {
                let results: Vec<Outcome<V>> =
                    list.iter().map(|r| r.evaluate(providers, verify)).collect();
                if let Some(ok) = results.iter().find(|o| matches!(o, Outcome::Allowed(_))) {
                    return ok.clone();
                }
                if results.iter().any(|o| matches!(o, Outcome::NeedKeys)) {
                    return Outcome::NeedKeys;
                }
                results
                    .into_iter()
                    .find(|o| matches!(o, Outcome::Failed(_)))
                    .unwrap_or(Outcome::Missing)
            }
            Requirement::All(list) => {
                let results: Vec<Outcome<V>> =
                    list.iter().map(|r| r.evaluate(providers, verify)).collect();
                if let Some(bad) = results
                    .iter()
                    .find(|o| matches!(o, Outcome::Failed(_) | Outcome::Missing))
                {
                    return bad.clone();
                }
                if results.iter().any(|o| matches!(o, Outcome::NeedKeys)) {
                    return Outcome::NeedKeys;
                }
                let mut all = Vec::new();
                for r in results {
                    if let Outcome::Allowed(v) = r {
                        all.extend(v);
                    }
                }
                Outcome::Allowed(all)
            }
            Requirement::AllowMissing(configured)
            | Requirement::AllowMissingOrFailed(configured) => {
                // Every provider's locations are searched; a token is judged
                // by the providers whose issuer it names.
                let mut verified = Vec::new();
                let mut need_keys = false;
                let mut failed = None;
                let mut foreign = false;
                for p in 0..providers.min(*configured) {
                    match verify(p) {
                        ProviderOutcome::Verified(v) => verified.push(v),
                        ProviderOutcome::NeedKeys => need_keys = true,
                        ProviderOutcome::Failed(Reason::IssuerMismatch) => foreign = true,
                        ProviderOutcome::Failed(r) => failed = failed.or(Some(r)),
                        ProviderOutcome::Missing => {}
                    }
                }
                let failure = failed.or(foreign.then_some(Reason::IssuerMismatch));
                if !verified.is_empty() {
                    Outcome::Allowed(verified)
                } else if need_keys {
                    Outcome::NeedKeys
                } else if let (Some(r), Requirement::AllowMissing(_)) = (failure, self) {
                    Outcome::Failed(r)
                } else {
                    Outcome::Allowed(Vec::new())
                }
            }
        }
    }

    /// Providers this requirement may consult.
    pub fn providers(&self, all: usize, out: &mut Vec<usize>) {
        match self {
            Requirement::Provider(p) => out.push(*p),
            Requirement::Any(l) | Requirement::All(l) => {
                l.iter().for_each(|r| r.providers(all, out));
            }
            Requirement::AllowMissing(n) | Requirement::AllowMissingOrFailed(n) => {
                out.extend(0..all.min(*n));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn index() -> ProviderIndex {
        ProviderIndex::new(
            [("a".to_string(), 0), ("b".to_string(), 1)]
                .into_iter()
                .collect(),
        )
    }

    fn compile(v: serde_json::Value) -> Result<Requirement, ConfigError> {
        let r: RequirementJson = serde_json::from_value(v).unwrap();
        r.compile(&mut index())
    }

    type O = ProviderOutcome<&'static str>;

    fn eval(r: &Requirement, a: O, b: O) -> Outcome<&'static str> {
        r.evaluate(2, &mut |p| if p == 0 { a.clone() } else { b.clone() })
    }

    #[test]
    fn compiles_envoy_shapes() {
        assert_eq!(
            compile(json!({"provider_name":"a"})).unwrap(),
            Requirement::Provider(0)
        );
        let any = compile(
            json!({"requires_any":{"requirements":[{"provider_name":"a"},{"allow_missing":{}}]}}),
        )
        .unwrap();
        assert_eq!(
            any,
            Requirement::Any(vec![Requirement::Provider(0), Requirement::AllowMissing(2)])
        );
        let e = compile(
            json!({"requires_all":{"requirements":[{"provider_name":"a"},{"provider_name":"zz"}]}}),
        )
        .unwrap_err();
        assert_eq!(e.path, "requires_all.requirements[1].provider_name");
        assert!(compile(json!({})).is_err());
        assert!(compile(json!({"provider_name":"a","allow_missing":{}})).is_err());
        let r: Result<RequirementJson, _> =
            serde_json::from_value(json!({"provider_and_audiences":{}}));
        assert!(r.is_err(), "provider_name is required");
        let r: Result<RequirementJson, _> =
            serde_json::from_value(json!({"extract_only_without_validation":{}}));
        assert!(r
            .unwrap_err()
            .to_string()
            .contains("allow_missing_or_failed"));
    }

    #[test]
    fn provider_and_audiences_get_their_own_index() {
        let mut idx = index();
        let c = |v: serde_json::Value, idx: &mut ProviderIndex| {
            serde_json::from_value::<RequirementJson>(v)
                .unwrap()
                .compile(idx)
        };
        let cases = [
            // Empty audiences: the provider itself, as in Envoy.
            (
                json!({"provider_and_audiences": {"provider_name": "b"}}),
                Ok(1),
            ),
            (
                json!({"provider_and_audiences": {"provider_name": "a", "audiences": ["x", "y"]}}),
                Ok(2),
            ),
            // The same set (in any order) shares the index.
            (
                json!({"provider_and_audiences": {"provider_name": "a", "audiences": ["y", "x", "x"]}}),
                Ok(2),
            ),
            (
                json!({"provider_and_audiences": {"provider_name": "b", "audiences": ["x", "y"]}}),
                Ok(3),
            ),
            (
                json!({"provider_and_audiences": {"provider_name": "zz", "audiences": ["x"]}}),
                Err("provider_and_audiences.provider_name"),
            ),
            (
                json!({"provider_and_audiences": {"provider_name": "a", "audiences": [""]}}),
                Err("provider_and_audiences.audiences"),
            ),
            (
                json!({"provider_name": "a", "provider_and_audiences": {"provider_name": "a"}}),
                Err(""),
            ),
        ];
        for (v, want) in cases {
            match (c(v.clone(), &mut idx), want) {
                (Ok(Requirement::Provider(i)), Ok(w)) => assert_eq!(i, w, "{v}"),
                (Err(e), Err(path)) => assert_eq!(e.path, path, "{v}: {e}"),
                (got, want) => panic!("{v}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(
            idx.overrides,
            [
                (0, vec!["x".to_string(), "y".to_string()]),
                (1, vec!["x".to_string(), "y".to_string()])
            ]
        );
        // allow_missing still judges by the two configured providers only.
        let m = c(json!({"allow_missing": {}}), &mut idx).unwrap();
        let mut seen = Vec::new();
        m.providers(4, &mut seen);
        assert_eq!(seen, [0, 1]);
    }

    #[test]
    fn envoy_semantics() {
        use ProviderOutcome::*;
        let a = Requirement::Provider(0);
        assert_eq!(eval(&a, Missing, Missing), Outcome::Missing);
        assert_eq!(
            eval(&a, Verified("x"), Missing),
            Outcome::Allowed(vec!["x"])
        );
        assert_eq!(
            eval(&a, Failed(Reason::Expired), Missing),
            Outcome::Failed(Reason::Expired)
        );

        let any = Requirement::Any(vec![Requirement::Provider(0), Requirement::Provider(1)]);
        assert_eq!(
            eval(&any, Failed(Reason::IssuerMismatch), Verified("b")),
            Outcome::Allowed(vec!["b"])
        );
        assert_eq!(
            eval(&any, Missing, Failed(Reason::Expired)),
            Outcome::Failed(Reason::Expired)
        );
        assert_eq!(
            eval(&any, NeedKeys, Failed(Reason::Expired)),
            Outcome::NeedKeys
        );
        assert_eq!(eval(&any, Missing, Missing), Outcome::Missing);

        let all = Requirement::All(vec![Requirement::Provider(0), Requirement::Provider(1)]);
        assert_eq!(
            eval(&all, Verified("a"), Verified("b")),
            Outcome::Allowed(vec!["a", "b"])
        );
        assert_eq!(eval(&all, Verified("a"), Missing), Outcome::Missing);
        assert_eq!(eval(&all, NeedKeys, Missing), Outcome::Missing);
        assert_eq!(eval(&all, NeedKeys, Verified("b")), Outcome::NeedKeys);

        let m = Requirement::AllowMissing(2);
        assert_eq!(eval(&m, Missing, Missing), Outcome::Allowed(vec![]));
        assert_eq!(
            eval(&m, Failed(Reason::BadSignature), Missing),
            Outcome::Failed(Reason::BadSignature)
        );
        assert_eq!(
            eval(&m, Failed(Reason::IssuerMismatch), Verified("b")),
            Outcome::Allowed(vec!["b"])
        );
        assert_eq!(
            eval(
                &m,
                Failed(Reason::IssuerMismatch),
                Failed(Reason::IssuerMismatch)
            ),
            Outcome::Failed(Reason::IssuerMismatch)
        );
        let mf = Requirement::AllowMissingOrFailed(2);
        assert_eq!(
            eval(&mf, Failed(Reason::BadSignature), Missing),
            Outcome::Allowed(vec![])
        );
        assert_eq!(
            eval(&mf, Verified("a"), Missing),
            Outcome::Allowed(vec!["a"])
        );
        assert_eq!(eval(&mf, NeedKeys, Missing), Outcome::NeedKeys);

        // The common "optional token" idiom.
        let optional =
            Requirement::Any(vec![Requirement::Provider(0), Requirement::AllowMissing(2)]);
        assert_eq!(eval(&optional, Missing, Missing), Outcome::Allowed(vec![]));
        assert_eq!(
            eval(&optional, Failed(Reason::Expired), Missing),
            Outcome::Failed(Reason::Expired)
        );
    }
}
