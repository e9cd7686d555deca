//! The schemas in `schemas/` and the filters' parsers agree: every example
//! configuration in the repository passes both, every broken one in
//! `tests/data/bad-configs/` is refused by both (at the same place), and the
//! rules a schema cannot express (`tests/data/parser-only-configs/`, listed
//! in README.md "Config schema") are refused by the parser alone.

use crate::check_config::{check, find, Filter, Outcome};
use crate::schemas::schema;
use jsonschema::Validator;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Each broken configuration and where the parser must say it is broken.
const BAD: &[(&str, &str)] = &[
    ("audit-log.bad-enum-format", "sinks.http[0].format"),
    ("audit-log.missing-cluster", "sinks.http[0].cluster"),
    ("audit-log.sampling-rate-above-one", "sampling.allowed_rate"),
    ("audit-log.unknown-sink", "sinks.kafka"),
    (
        "audit-log.wrong-type-header-pair",
        "sinks.http[0].headers[0]",
    ),
    (
        "audit-log.wrong-type-sampling-rate",
        "sampling.allowed_rate",
    ),
    ("chain.section-not-an-object", "rate_limit"),
    ("chain.unknown-section", "jwt"),
    (
        "jwt-auth.bad-duration",
        "providers.a.remote_jwks.cache_duration",
    ),
    (
        "jwt-auth.min-rsa-key-bits-too-small",
        "providers.a.min_rsa_key_bits",
    ),
    (
        "jwt-auth.missing-cluster",
        "providers.a.remote_jwks.http_uri.cluster",
    ),
    ("jwt-auth.missing-match", "rules[0].match"),
    ("jwt-auth.unknown-field-jwt-cache", "providers.a.jwt_cache"),
    ("jwt-auth.wrong-type-audiences", "providers.a.audiences"),
    ("rate-limit.bad-enum-unit", "rules[0].limit.unit"),
    ("rate-limit.bad-key-source", "rules[0].key[0]"),
    ("rate-limit.match-regex", "rules[0].match.safe_regex"),
    ("rate-limit.missing-limit", "rules[0].limit"),
    (
        "rate-limit.negative-rate",
        "rules[0].limit.requests_per_unit",
    ),
    ("rate-limit.rule-name-with-space", "rules[0].name"),
    ("rate-limit.status-out-of-range", "status"),
    ("rate-limit.unknown-field", "rules[0].limit.brust"),
    ("rate-limit.wrong-type-slots", "slots"),
    ("rate-limit.zero-slots", "slots"),
];

/// Each configuration only the parser refuses, and where.
const PARSER_ONLY: &[(&str, &str)] = &[
    (
        "audit-log.queue-smaller-than-batch",
        "sinks.http[0].queue_max_bytes",
    ),
    ("audit-log.redacted-header-logged", "headers[0].name"),
    (
        "jwt-auth.authorization-needs-requires",
        "rules[0].authorization",
    ),
    ("jwt-auth.hmac-needs-oct-keys", "providers.a.algorithms"),
    (
        "jwt-auth.invalid-jwks",
        "providers.a.local_jwks.inline_string",
    ),
    ("jwt-auth.keys-from-one-source", "providers.a"),
    ("jwt-auth.no-key-source", "providers.a"),
    ("jwt-auth.requirement-exactly-one", "rules[0].requires"),
    (
        "jwt-auth.timeout-over-60s",
        "providers.a.remote_jwks.http_uri.timeout",
    ),
    (
        "jwt-auth.unknown-provider-name",
        "rules[0].requires.provider_name",
    ),
    ("rate-limit.duplicate-rule-names", "rules[1].name"),
    ("rate-limit.match-prefix-and-path", "rules[0].match.path"),
];

fn validator(filter: Filter) -> Validator {
    jsonschema::validator_for(&schema(filter)).unwrap()
}

/// The instance paths (in the parser's `a.b[0]` form) of every schema error.
fn schema_errors(v: &Validator, config: &[u8]) -> Vec<String> {
    let Ok(value) = serde_json::from_slice::<Value>(config) else {
        return vec![String::new()];
    };
    v.iter_errors(&value)
        .map(|e| dotted(&e.instance_path().to_string()))
        .collect()
}

/// `/rules/0/limit` as `rules[0].limit`.
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out += &format!("[{seg}]");
        } else if out.is_empty() {
            out += &seg;
        } else {
            out += &format!(".{seg}");
        }
    }
    out
}

fn at_or_above(schema_path: &str, parser_path: &str) -> bool {
    schema_path.is_empty()
        || parser_path == schema_path
        || parser_path.starts_with(&format!("{schema_path}."))
        || parser_path.starts_with(&format!("{schema_path}["))
}

/// `tests/data/<dir>/<filter>.<what>.json`, by stem.
fn corpus(dir: &str) -> BTreeMap<String, (Filter, Vec<u8>)> {
    let dir: PathBuf = crate::tools::root().join("tests/data").join(dir);
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(
            path.extension().and_then(|e| e.to_str()),
            Some("json"),
            "{path:?}"
        );
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let module = stem.split('.').next().unwrap();
        let filter = Filter::from_name(module)
            .unwrap_or_else(|| panic!("{path:?}: name it <filter>.<what it breaks>.json"));
        out.insert(stem, (filter, std::fs::read(&path).unwrap()));
    }
    out
}

fn assert_covers(corpus: &BTreeMap<String, (Filter, Vec<u8>)>, table: &[(&str, &str)]) {
    let files: Vec<&str> = corpus.keys().map(String::as_str).collect();
    let listed: Vec<&str> = table.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        files, listed,
        "the table and the files must list the same configurations"
    );
}

#[test]
fn every_example_config_passes_schema_and_parser() {
    let root = crate::tools::root();
    let mut files = Vec::new();
    for dir in ["envoy", "envoy/bench", "envoy/istio"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.extension().and_then(|e| e.to_str()) == Some("yaml") {
                files.push(p);
            }
        }
    }
    files.sort();
    let validators: BTreeMap<&str, Validator> = Filter::ALL
        .iter()
        .map(|f| (f.module(), validator(*f)))
        .collect();
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for file in &files {
        let text = std::fs::read(file).unwrap();
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        // Docker compose files and native-only configs hold no plugin.
        let found = match find(&name, &text, None) {
            Ok(found) => found,
            Err(e)
                if e.to_string()
                    .contains("no WasmPlugin and no Envoy wasm filter") =>
            {
                continue
            }
            Err(e) => panic!("{name}: {e:#}"),
        };
        for f in &found {
            match check(f) {
                Outcome::Accepted(filter) => {
                    let errors = schema_errors(&validators[filter.module()], &f.config);
                    assert!(
                        errors.is_empty(),
                        "{}: schema refuses it at {errors:?}",
                        f.origin
                    );
                    *seen.entry(filter.module()).or_default() += 1;
                }
                Outcome::Foreign(_) => {}
                other => panic!("{}: {other:?}", f.origin),
            }
        }
    }
    for filter in Filter::ALL {
        assert!(
            seen.get(filter.module()).copied().unwrap_or(0) > 0,
            "no example of {} in {files:?}",
            filter.module()
        );
    }
}

/// The first ```json block of each filter's README is its example
/// configuration.
#[test]
fn readme_examples_pass_schema_and_parser() {
    for filter in [Filter::JwtAuth, Filter::RateLimit, Filter::AuditLog] {
        let path = crate::tools::root()
            .join("filters")
            .join(filter.module())
            .join("README.md");
        let text = std::fs::read_to_string(&path).unwrap();
        let block = text
            .split("```json\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .unwrap_or_else(|| panic!("{path:?}: no ```json block"));
        filter
            .parse(block.as_bytes())
            .unwrap_or_else(|e| panic!("{path:?}: {}", filter.refusal(&e)));
        let errors = schema_errors(&validator(filter), block.as_bytes());
        assert!(
            errors.is_empty(),
            "{path:?}: schema refuses it at {errors:?}"
        );
    }
}

#[test]
fn broken_configs_are_refused_by_both_at_the_same_place() {
    let bad = corpus("bad-configs");
    assert_covers(&bad, BAD);
    let expected: BTreeMap<&str, &str> = BAD.iter().copied().collect();
    for (stem, (filter, config)) in &bad {
        let err = filter.parse(config).expect_err(stem);
        assert_eq!(err.path, expected[stem.as_str()], "{stem}: {err}");
        let errors = schema_errors(&validator(*filter), config);
        assert!(
            errors.iter().any(|s| at_or_above(s, &err.path)),
            "{stem}: the schema must refuse it at or above `{}`; it says {errors:?}",
            err.path
        );
        // The same section inside the chain's configuration.
        let section = match filter {
            Filter::Chain => continue,
            f => f.log_name(),
        };
        let value: Value = serde_json::from_slice(config).unwrap();
        let wrapped = serde_json::to_vec(&serde_json::json!({ section: value })).unwrap();
        let err = Filter::Chain.parse(&wrapped).expect_err(stem);
        assert_eq!(
            err.path,
            format!("{section}.{}", expected[stem.as_str()]),
            "{stem}"
        );
        let errors = schema_errors(&validator(Filter::Chain), &wrapped);
        assert!(
            errors.iter().any(|s| at_or_above(s, &err.path)),
            "{stem} in the chain: {errors:?}"
        );
    }
}

#[test]
fn rules_the_schema_cannot_express_are_refused_by_the_parser_alone() {
    let only = corpus("parser-only-configs");
    assert_covers(&only, PARSER_ONLY);
    let expected: BTreeMap<&str, &str> = PARSER_ONLY.iter().copied().collect();
    let readme = std::fs::read_to_string(crate::tools::root().join("README.md")).unwrap();
    for (stem, (filter, config)) in &only {
        let errors = schema_errors(&validator(*filter), config);
        assert!(
            errors.is_empty(),
            "{stem}: the schema refuses it at {errors:?}"
        );
        let err = filter.parse(config).expect_err(stem);
        assert_eq!(err.path, expected[stem.as_str()], "{stem}: {err}");
        assert!(
            readme.contains(&format!("`{stem}`")),
            "{stem}: README.md \"Config schema\" must list this rule"
        );
    }
}

#[test]
fn pointers_become_parser_paths() {
    assert_eq!(dotted("/rules/0/limit/unit"), "rules[0].limit.unit");
    assert_eq!(dotted(""), "");
    assert!(at_or_above("rules[0]", "rules[0].limit"));
    assert!(!at_or_above("rules[1]", "rules[10].limit"));
}
