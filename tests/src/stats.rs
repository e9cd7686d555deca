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

    /// A stat by its full name, or 0 when Envoy has not created it yet.
    pub fn get(&self, name: &str) -> i64 {
        self.values.get(name).copied().unwrap_or(0)
    }

    /// A stat defined by a wasm filter (Envoy prefixes them `wasmcustom.`).
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
