//! `cargo xtask check-config FILE [--filter NAME]`: checks plugin
//! configurations offline with the parser each filter runs in
//! `on_configure`, and prints what Envoy would log.
//!
//! FILE is a plugin configuration (JSON, with `--filter`), an Istio
//! `WasmPlugin` (its `pluginConfig`, for the module its `url` names) or an
//! Envoy config (every `envoy.extensions.filters.http.wasm.v3.Wasm` filter's
//! `configuration`, for the filter its `root_id` or module file names).

use anyhow::{bail, Context, Result};
use filter_common::ConfigError;
use serde_yaml_ng::Value as Yaml;
use std::path::Path;

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";

/// One of our modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Chain,
    JwtAuth,
    RateLimit,
    AuditLog,
}

impl Filter {
    pub const ALL: [Filter; 4] = [
        Filter::Chain,
        Filter::JwtAuth,
        Filter::RateLimit,
        Filter::AuditLog,
    ];

    /// The crate and image name: `jwt-auth`.
    pub fn module(self) -> &'static str {
        match self {
            Filter::Chain => "chain",
            Filter::JwtAuth => "jwt-auth",
            Filter::RateLimit => "rate-limit",
            Filter::AuditLog => "audit-log",
        }
    }

    /// The name in Envoy's log, also the `root_id` and `.wasm` file name.
    pub fn log_name(self) -> &'static str {
        match self {
            Filter::Chain => chain::FILTER_NAME,
            Filter::JwtAuth => jwt_auth::FILTER_NAME,
            Filter::RateLimit => rate_limit::FILTER_NAME,
            Filter::AuditLog => audit_log::FILTER_NAME,
        }
    }

    /// `jwt-auth` or `jwt_auth`.
    pub fn from_name(name: &str) -> Option<Filter> {
        Filter::ALL
            .into_iter()
            .find(|f| name == f.module() || name == f.log_name())
    }

    /// The filter whose name a module file or image name contains
    /// (`oci://r.example/portcullis/jwt-auth:1.0`, `/etc/envoy/chain.wasm`),
    /// if exactly one does.
    pub fn from_module_path(path: &str) -> Option<Filter> {
        let last = path.rsplit('/').next().unwrap_or(path);
        let last = last.split('@').next().unwrap_or(last);
        let last = last.split(':').next().unwrap_or(last);
        let last = last.strip_suffix(".wasm").unwrap_or(last);
        let found: Vec<Filter> = Filter::ALL
            .into_iter()
            .filter(|f| last.contains(f.module()) || last.contains(f.log_name()))
            .collect();
        match found.as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }

    /// Exactly what the filter's `on_configure` runs
    /// (`filter_common::proxy::load_config(FILTER_NAME, Config::parse)`).
    pub fn parse(self, bytes: &[u8]) -> Result<(), ConfigError> {
        match self {
            Filter::Chain => chain::Config::parse(bytes).map(drop),
            Filter::JwtAuth => jwt_auth::Config::parse(bytes).map(drop),
            Filter::RateLimit => rate_limit::Config::parse(bytes).map(drop),
            Filter::AuditLog => audit_log::Config::parse(bytes).map(drop),
        }
    }

    /// The line Envoy logs when the filter refuses a configuration.
    pub fn refusal(self, err: &ConfigError) -> String {
        format!("{}: invalid plugin configuration: {err}", self.log_name())
    }
}

/// One plugin configuration found in a file.
#[derive(Debug)]
pub struct Found {
    /// Where it is: `envoy/chain.yaml: http filter portcullis (root_id chain)`.
    pub origin: String,
    /// Which filter reads it, or why that cannot be told.
    pub filter: Result<Filter, String>,
    /// The bytes the plugin receives.
    pub config: Vec<u8>,
}

/// What became of one configuration.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Accepted(Filter),
    /// The filter refused it: the line Envoy would log.
    Refused(String),
    /// Not checked: which filter reads it is unknown.
    Unknown(String),
    /// A wasm filter that is not ours (`envoy/bench/floor.yaml`).
    Foreign(String),
}

/// Every plugin configuration in `text`. `name` (the file's name) tells a
/// JSON configuration from YAML; `filter` overrides what the file says.
pub fn find(name: &str, text: &[u8], filter: Option<Filter>) -> Result<Vec<Found>> {
    let ext = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("");
    let plain = || {
        vec![Found {
            origin: name.to_string(),
            filter: filter.ok_or_else(|| {
                "a plugin configuration alone: name its filter with --filter chain|jwt-auth|rate-limit|audit-log".to_string()
            }),
            config: text.to_vec(),
        }]
    };
    if ext == "json" {
        return Ok(plain());
    }
    let docs = match yaml_documents(text) {
        Ok(docs) => docs,
        Err(e) if matches!(ext, "yaml" | "yml") => return Err(e.context(format!("reading {name}"))),
        Err(_) => return Ok(plain()),
    };
    let mut found = Vec::new();
    for doc in &docs {
        if doc.get("kind").and_then(Yaml::as_str) == Some("WasmPlugin") {
            found.push(wasm_plugin(name, doc, filter)?);
        } else {
            envoy_filters(name, doc, filter, &mut found)?;
        }
    }
    if found.is_empty() {
        if matches!(ext, "yaml" | "yml") {
            bail!("{name}: no WasmPlugin and no Envoy wasm filter ({WASM_FILTER}) in it");
        }
        return Ok(plain());
    }
    Ok(found)
}

fn yaml_documents(text: &[u8]) -> Result<Vec<Yaml>> {
    let text = std::str::from_utf8(text).context("not UTF-8")?;
    let mut docs = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        let value: Yaml = serde::Deserialize::deserialize(doc)?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

/// istiod hands `pluginConfig` to the plugin as JSON, and nothing at all
/// when it has no fields (`{}` included): the plugin then reads an empty
/// configuration.
fn wasm_plugin(name: &str, doc: &Yaml, filter: Option<Filter>) -> Result<Found> {
    let meta = |k: &str| {
        doc.get("metadata")
            .and_then(|m| m.get(k))
            .and_then(Yaml::as_str)
            .map(str::to_string)
    };
    let id = match (meta("namespace"), meta("name")) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n,
        _ => "(unnamed)".to_string(),
    };
    let spec = doc.get("spec");
    let url = spec.and_then(|s| s.get("url")).and_then(Yaml::as_str);
    let filter = match (filter, url) {
        (Some(f), _) => Ok(f),
        (None, Some(url)) => Filter::from_module_path(url)
            .ok_or_else(|| format!("cannot tell which filter `{url}` is: name it with --filter")),
        (None, None) => Err("no spec.url: name the filter with --filter".to_string()),
    };
    let config = match spec.and_then(|s| s.get("pluginConfig")) {
        None | Some(Yaml::Null) => Vec::new(),
        Some(Yaml::Mapping(m)) if m.is_empty() => Vec::new(),
        Some(v) => serde_json::to_vec(v)
            .with_context(|| format!("{name}: WasmPlugin {id}: pluginConfig as JSON"))?,
    };
    Ok(Found {
        origin: format!("{name}: WasmPlugin {id}"),
        filter,
        config,
    })
}

/// Walks the whole document for wasm HTTP filters (listeners, ECDS, ...).
fn envoy_filters(
    name: &str,
    node: &Yaml,
    filter: Option<Filter>,
    out: &mut Vec<Found>,
) -> Result<()> {
    match node {
        Yaml::Mapping(map) => {
            if node.get("@type").and_then(Yaml::as_str) == Some(WASM_FILTER) {
                out.push(envoy_filter(name, node, filter)?);
            }
            for (_, v) in map {
                envoy_filters(name, v, filter, out)?;
            }
        }
        Yaml::Sequence(seq) => {
            for v in seq {
                envoy_filters(name, v, filter, out)?;
            }
        }
        Yaml::Tagged(t) => envoy_filters(name, &t.value, filter, out)?,
        _ => {}
    }
    Ok(())
}

fn envoy_filter(name: &str, typed_config: &Yaml, filter: Option<Filter>) -> Result<Found> {
    let config = typed_config.get("config");
    let field = |k: &str| config.and_then(|c| c.get(k)).and_then(Yaml::as_str);
    let root_id = field("root_id").unwrap_or("");
    let code = config
        .and_then(|c| c.get("vm_config"))
        .and_then(|v| v.get("code"));
    let module = code
        .and_then(|c| c.get("local"))
        .and_then(|l| l.get("filename"))
        .or_else(|| {
            code.and_then(|c| c.get("remote"))
                .and_then(|r| r.get("http_uri"))
                .and_then(|h| h.get("uri"))
        })
        .and_then(Yaml::as_str);
    let origin = format!(
        "{name}: wasm filter `{}` (root_id `{root_id}`)",
        field("name").unwrap_or("")
    );
    let filter = match filter {
        Some(f) => Ok(f),
        None => Filter::from_name(root_id)
            .or_else(|| module.and_then(Filter::from_module_path))
            .ok_or_else(|| {
                format!(
                    "foreign:root_id `{root_id}`, module `{}`",
                    module.unwrap_or("")
                )
            }),
    };
    let configuration = config.and_then(|c| c.get("configuration"));
    let bytes = match configuration {
        None => Vec::new(),
        Some(c) => {
            let kind = c.get("@type").and_then(Yaml::as_str).unwrap_or("");
            if kind != STRING_VALUE {
                bail!("{origin}: configuration of type `{kind}`: only {STRING_VALUE} is checked");
            }
            c.get("value")
                .and_then(Yaml::as_str)
                .unwrap_or("")
                .as_bytes()
                .to_vec()
        }
    };
    Ok(Found {
        origin,
        filter,
        config: bytes,
    })
}

/// Runs each filter's parser on what it would receive.
pub fn check(found: &Found) -> Outcome {
    match &found.filter {
        Ok(f) => match f.parse(&found.config) {
            Ok(()) => Outcome::Accepted(*f),
            Err(e) => Outcome::Refused(f.refusal(&e)),
        },
        Err(why) => match why.strip_prefix("foreign:") {
            Some(what) => Outcome::Foreign(what.to_string()),
            None => Outcome::Unknown(why.clone()),
        },
    }
}

/// The command: prints one line per configuration; fails when one is
/// refused or cannot be checked, or when the file has none of ours.
pub fn check_config(args: &[&str]) -> Result<()> {
    let usage =
        "usage: cargo xtask check-config FILE [--filter chain|jwt-auth|rate-limit|audit-log]";
    let mut file = None;
    let mut filter = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match *a {
            "--filter" => {
                let name = it.next().context(usage)?;
                filter = Some(Filter::from_name(name).with_context(|| {
                    format!("unknown filter `{name}`: chain, jwt-auth, rate-limit or audit-log")
                })?);
            }
            f if file.is_none() && !f.starts_with("--") => file = Some(f),
            other => bail!("unexpected argument `{other}`\n{usage}"),
        }
    }
    let file = file.context(usage)?;
    let text = std::fs::read(file).with_context(|| format!("reading {file}"))?;
    let (mut ours, mut failed) = (0, 0);
    for found in find(file, &text, filter)? {
        match check(&found) {
            Outcome::Accepted(f) => {
                ours += 1;
                println!("{}: ok ({})", found.origin, f.module());
            }
            Outcome::Refused(line) => {
                ours += 1;
                failed += 1;
                println!("{}: refused\n{line}", found.origin);
            }
            Outcome::Unknown(why) => {
                failed += 1;
                println!("{}: not checked: {why}", found.origin);
            }
            Outcome::Foreign(what) => {
                println!("{}: skipped, not one of ours ({what})", found.origin);
            }
        }
    }
    if failed > 0 {
        bail!("{file}: {failed} plugin configuration(s) refused or not checked");
    }
    if ours == 0 {
        bail!("{file}: none of its wasm filters is one of ours: name it with --filter");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(name: &str, text: &str, filter: Option<Filter>) -> Vec<(String, Outcome)> {
        find(name, text.as_bytes(), filter)
            .unwrap()
            .iter()
            .map(|f| (f.origin.clone(), check(f)))
            .collect()
    }

    #[test]
    fn module_names_from_urls_and_files() {
        for (url, want) in [
            (
                "oci://127.0.0.1:5000/portcullis/jwt-auth:0.1.0",
                Some(Filter::JwtAuth),
            ),
            ("oci://r.example/p/chain@sha256:ab12", Some(Filter::Chain)),
            ("file:///opt/wasm/rate_limit.wasm", Some(Filter::RateLimit)),
            ("https://h.example/audit-log.wasm", Some(Filter::AuditLog)),
            ("/etc/envoy/wasm/examples/floor.wasm", None),
            ("oci://r.example/portcullis", None),
        ] {
            assert_eq!(Filter::from_module_path(url), want, "{url}");
        }
        assert_eq!(Filter::from_name("jwt_auth"), Some(Filter::JwtAuth));
        assert_eq!(Filter::from_name("jwt-auth"), Some(Filter::JwtAuth));
        assert_eq!(Filter::from_name("jwt"), None);
    }

    #[test]
    fn a_json_config_needs_its_filter_and_gets_envoys_message() {
        let bad =
            r#"{"rules": [{"name": "a", "limit": {"requests_per_unit": 1, "unit": "week"}}]}"#;
        let out = found("x.json", bad, Some(Filter::RateLimit));
        let Outcome::Refused(line) = &out[0].1 else {
            panic!("{out:?}")
        };
        assert!(
            line.starts_with("rate_limit: invalid plugin configuration: rules[0].limit.unit: unknown variant `week`"),
            "{line}"
        );
        let out = found("x.json", "{}", None);
        assert!(
            matches!(&out[0].1, Outcome::Unknown(w) if w.contains("--filter")),
            "{out:?}"
        );
        // Not JSON at all: the parser's own message, as in Envoy.
        let out = found("x.json", "{} x", Some(Filter::Chain));
        assert!(
            matches!(&out[0].1, Outcome::Refused(l) if l.starts_with("chain: invalid plugin configuration: (root): trailing characters")),
            "{out:?}"
        );
    }

    #[test]
    fn a_wasm_plugin_is_checked_against_the_module_its_url_names() {
        let plugin = |url: &str, config: &str| {
            format!(
                "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata: {{name: limits, namespace: shop}}\nspec:\n  url: {url}\n  pluginConfig:\n{config}"
            )
        };
        let good = "    rules:\n    - name: per-client\n      limit: {requests_per_unit: 10, unit: second}\n";
        let out = found(
            "p.yaml",
            &plugin("oci://r.example/portcullis/rate-limit:1", good),
            None,
        );
        assert_eq!(
            out,
            [(
                "p.yaml: WasmPlugin shop/limits".to_string(),
                Outcome::Accepted(Filter::RateLimit)
            )]
        );
        // The same section is not a jwt-auth configuration.
        let out = found(
            "p.yaml",
            &plugin("oci://r.example/portcullis/jwt-auth:1", good),
            None,
        );
        assert!(
            matches!(&out[0].1, Outcome::Refused(l) if l == "jwt_auth: invalid plugin configuration: rules[0].name: unknown field `name`, expected one of `match`, `requires`, `requirement_name`, `authorization`, `peer_principals`"),
            "{out:?}"
        );
        // Two documents, the second with a module we cannot tell.
        let two = format!(
            "{}\n---\n{}",
            plugin("oci://r.example/portcullis/rate-limit:1", good),
            plugin("oci://r.example/portcullis/other:1", good)
        );
        let out = found("p.yaml", &two, None);
        assert_eq!(out.len(), 2);
        assert!(
            matches!(&out[1].1, Outcome::Unknown(w) if w.contains("other")),
            "{out:?}"
        );
        // `pluginConfig: {}` reaches the plugin as nothing, which no filter
        // accepts (Envoy would refuse the plugin).
        let out = found(
            "p.yaml",
            &plugin("oci://r.example/portcullis/chain:1", "    {}\n"),
            None,
        );
        assert!(
            matches!(&out[0].1, Outcome::Refused(l) if l.starts_with("chain: invalid plugin configuration: (root): EOF while parsing")),
            "{out:?}"
        );
    }

    #[test]
    fn envoy_configs_are_walked_for_every_wasm_filter() {
        let root = crate::tools::root();
        let text = std::fs::read(root.join("envoy/chain-filters.yaml")).unwrap();
        let out: Vec<Outcome> = find("chain-filters.yaml", &text, None)
            .unwrap()
            .iter()
            .map(check)
            .collect();
        assert_eq!(
            out,
            [
                Outcome::Accepted(Filter::AuditLog),
                Outcome::Accepted(Filter::JwtAuth),
                Outcome::Accepted(Filter::RateLimit)
            ]
        );
        let text = std::fs::read(root.join("envoy/bench/floor.yaml")).unwrap();
        let out: Vec<Outcome> = find("floor.yaml", &text, None)
            .unwrap()
            .iter()
            .map(check)
            .collect();
        assert!(matches!(out.as_slice(), [Outcome::Foreign(_)]), "{out:?}");
        // The same file with a broken configuration is refused.
        let text =
            String::from_utf8(std::fs::read(root.join("envoy/chain.yaml")).unwrap()).unwrap();
        let broken = text.replacen("\"jwt_auth\"", "\"jwt_auht\"", 1);
        assert_ne!(broken, text, "envoy/chain.yaml has no \"jwt_auth\" section");
        let out: Vec<Outcome> = find("chain.yaml", broken.as_bytes(), None)
            .unwrap()
            .iter()
            .map(check)
            .collect();
        assert!(
            matches!(out.as_slice(), [Outcome::Refused(l)] if l.starts_with("chain: invalid plugin configuration: jwt_auht: unknown field `jwt_auht`")),
            "{out:?}"
        );
        assert!(find("x.yaml", b"static_resources: {}\n", None).is_err());
    }
}
