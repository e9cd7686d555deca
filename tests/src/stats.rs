//! Envoy's stats, read from the admin endpoint (`/stats?format=json`).

use anyhow::Result;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub values: BTreeMap<String, i64>,
}

impl Stats {
    pub async fn fetch(url: &str) -> Result<Stats> {
        let body: serde_json::Value = reqwest::get(url).await?.json().await?;
        let mut values = BTreeMap::new();
        if let Some(list) = body["stats"].as_array() {
            for s in list {
                if let (Some(name), Some(value)) = (s["name"].as_str(), s["value"].as_i64()) {
                    values.insert(name.to_string(), value);
                }
            }
        }
        Ok(Stats { values })
    }

    /// A stat by its full name. A stat Envoy does not have fails the test,
    /// naming the stats that look like it: a misspelt name must not read
    /// as 0. (The filters define their counters at configure, so every
    /// counter they have exists from the start.)
    pub fn get(&self, name: &str) -> i64 {
        match self.values.get(name) {
            Some(v) => *v,
            None => panic!("no stat named {name}; similar: {:?}", self.similar(name)),
        }
    }

    /// Stat names sharing a dot-separated part with `name`, for the message
    /// of a failed lookup.
    pub fn similar(&self, name: &str) -> Vec<&str> {
        let parts: Vec<&str> = name
            .split('.')
            .filter(|p| !p.is_empty() && *p != "wasmcustom")
            .collect();
        let mut out: Vec<&str> = self
            .values
            .keys()
            .filter(|k| k.split('.').any(|kp| parts.contains(&kp)))
            .map(String::as_str)
            .collect();
        out.truncate(40);
        out
    }

    /// A stat defined by a wasm filter (Envoy prefixes them `wasmcustom.`);
    /// fails the test if it does not exist, as [`Stats::get`].
    pub fn custom(&self, name: &str) -> i64 {
        self.get(&format!("wasmcustom.{name}"))
    }

    /// Every stat whose name contains `part`.
    pub fn matching(&self, part: &str) -> BTreeMap<String, i64> {
        self.values
            .iter()
            .filter(|(k, _)| k.contains(part))
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> Stats {
        let mut values = BTreeMap::new();
        values.insert("wasmcustom.jwt_auth.allowed".to_string(), 3);
        values.insert("wasmcustom.jwt_auth.denied.expired".to_string(), 0);
        values.insert("http.ingress.downstream_rq_total".to_string(), 7);
        Stats { values }
    }

    #[test]
    fn existing_stats_read_their_value_even_at_zero() {
        let s = stats();
        assert_eq!(s.custom("jwt_auth.allowed"), 3);
        assert_eq!(s.custom("jwt_auth.denied.expired"), 0);
        assert_eq!(s.get("http.ingress.downstream_rq_total"), 7);
    }

    #[test]
    fn a_misspelt_stat_fails_and_names_similar_ones() {
        let s = stats();
        let err = std::panic::catch_unwind(|| s.custom("jwt_auth.alowed")).unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(
            msg.contains("no stat named wasmcustom.jwt_auth.alowed"),
            "{msg}"
        );
        assert!(msg.contains("wasmcustom.jwt_auth.allowed"), "{msg}");
        assert!(!msg.contains("downstream_rq_total"), "{msg}");
        assert!(std::panic::catch_unwind(|| s.get("http.ingress.downstream_rq")).is_err());
    }
}
