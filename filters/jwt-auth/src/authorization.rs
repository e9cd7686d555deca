//! Claim conditions a rule can add on top of authentication ("can read but
//! not write"). A failed condition is a 403 `insufficient_scope`.

use filter_common::ConfigError;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Conditions on the verified token's claims.
///
/// ```json
/// {"all": [{"claim": "scope", "contains": "write"}],
///  "any": [{"claim": "roles", "any_of": ["admin", "editor"]},
///          {"claim": "org.tier", "equals": "gold"}]}
/// ```
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// Every one of these must hold.
    #[serde(default)]
    pub all: Vec<ClaimCondition>,
    /// At least one of these must hold (ignored when empty).
    #[serde(default)]
    pub any: Vec<ClaimCondition>,
}

/// One condition on one claim. Give exactly one of `equals`, `contains`,
/// `any_of`, `present`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct ClaimCondition {
    /// The claim's name; dots reach into nested objects (`realm.roles`). A
    /// top-level claim whose name contains dots is found first.
    pub claim: String,
    /// The claim equals this JSON value exactly.
    #[serde(default)]
    pub equals: Option<Value>,
    /// OAuth scope style: the claim is a space-separated string containing
    /// this word, or an array containing this string.
    #[serde(default)]
    pub contains: Option<String>,
    /// The claim (a string, or any element of an array) is one of these.
    #[serde(default)]
    pub any_of: Option<Vec<String>>,
    /// The claim is present (`true`) or absent (`false`).
    #[serde(default)]
    pub present: Option<bool>,
}

impl Authorization {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.all.is_empty() && self.any.is_empty() {
            return Err(ConfigError::at(
                "",
                "give at least one condition in `all` or `any`",
            ));
        }
        for (list, name) in [(&self.all, "all"), (&self.any, "any")] {
            for (i, c) in list.iter().enumerate() {
                c.validate()
                    .map_err(|m| ConfigError::at(format!("{name}[{i}]"), m))?;
            }
        }
        Ok(())
    }

    pub fn allows(&self, payload: &Map<String, Value>) -> bool {
        self.all.iter().all(|c| c.holds(payload))
            && (self.any.is_empty() || self.any.iter().any(|c| c.holds(payload)))
    }
}

impl ClaimCondition {
    fn validate(&self) -> Result<(), String> {
        if self.claim.is_empty() {
            return Err("`claim` is empty".into());
        }
        let n = [
            self.equals.is_some(),
            self.contains.is_some(),
            self.any_of.is_some(),
            self.present.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n != 1 {
            return Err("give exactly one of equals, contains, any_of, present".into());
        }
        Ok(())
    }

    pub fn holds(&self, payload: &Map<String, Value>) -> bool {
        let v = lookup(payload, &self.claim);
        if let Some(want) = self.present {
            return v.is_some() == want;
        }
        let Some(v) = v else {
            return false;
        };
        if let Some(e) = &self.equals {
            return v == e;
        }
        if let Some(word) = &self.contains {
            return match v {
                Value::String(s) => s.split(' ').any(|w| w == word),
                Value::Array(items) => items.iter().any(|i| i.as_str() == Some(word)),
                _ => false,
            };
        }
        if let Some(set) = &self.any_of {
            let is = |s: &str| set.iter().any(|x| x == s);
            return match v {
                Value::String(s) => is(s),
                Value::Array(items) => items.iter().filter_map(Value::as_str).any(is),
                _ => false,
            };
        }
        false
    }
}

/// Finds a claim by name, then by dotted path into nested objects.
pub fn lookup<'a>(payload: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    if let Some(v) = payload.get(name) {
        return Some(v);
    }
    let mut parts = name.split('.');
    let mut v = payload.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn authz(v: Value) -> Authorization {
        let a: Authorization = serde_json::from_value(v).unwrap();
        a.validate().unwrap();
        a
    }

    fn payload() -> Map<String, Value> {
        json!({
            "scope": "read write:all profile",
            "scp": ["read", "admin"],
            "roles": ["viewer", "editor"],
            "org": {"tier": "gold", "id": 7},
            "https://example.com/group": "ops",
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn conditions() {
        let p = payload();
        assert!(authz(json!({"all":[{"claim":"scope","contains":"read"}]})).allows(&p));
        assert!(!authz(json!({"all":[{"claim":"scope","contains":"write"}]})).allows(&p));
        assert!(authz(json!({"all":[{"claim":"scp","contains":"admin"}]})).allows(&p));
        assert!(authz(json!({"all":[{"claim":"roles","any_of":["admin","editor"]}]})).allows(&p));
        assert!(!authz(json!({"all":[{"claim":"roles","any_of":["admin"]}]})).allows(&p));
        assert!(authz(json!({"all":[{"claim":"org.tier","equals":"gold"}]})).allows(&p));
        assert!(authz(json!({"all":[{"claim":"org.id","equals":7}]})).allows(&p));
        assert!(!authz(json!({"all":[{"claim":"org.id","equals":"7"}]})).allows(&p));
        assert!(
            authz(json!({"all":[{"claim":"https://example.com/group","equals":"ops"}]})).allows(&p)
        );
        assert!(authz(json!({"all":[{"claim":"missing","present":false}]})).allows(&p));
        assert!(!authz(json!({"all":[{"claim":"missing","contains":"x"}]})).allows(&p));
        let either = authz(
            json!({"any":[{"claim":"roles","any_of":["admin"]},{"claim":"org.tier","equals":"gold"}]}),
        );
        assert!(either.allows(&p));
        let both = authz(
            json!({"all":[{"claim":"scope","contains":"read"}],"any":[{"claim":"roles","any_of":["root"]}]}),
        );
        assert!(!both.allows(&p));
    }

    #[test]
    fn invalid_conditions_are_refused() {
        let bad: Authorization =
            serde_json::from_value(json!({"all":[{"claim":"a","equals":1,"present":true}]}))
                .unwrap();
        assert_eq!(bad.validate().unwrap_err().path, "all[0]");
        let bad: Authorization = serde_json::from_value(json!({"any":[{"claim":"a"}]})).unwrap();
        assert_eq!(bad.validate().unwrap_err().path, "any[0]");
        assert!(Authorization::default().validate().is_err());
        assert!(serde_json::from_value::<Authorization>(
            json!({"all":[{"claim":"a","regex":"x"}]})
        )
        .is_err());
    }
}
