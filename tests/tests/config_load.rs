//! Every module loads a valid config and refuses a broken one, naming the
//! field path in Envoy's log.

use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::servers::EchoUpstream;

/// (envoy config, root_id, a broken plugin config, the path the log must name)
const CASES: [(&str, &str, &str, &str); 4] = [
    (
        "jwt-auth.yaml",
        "jwt_auth",
        r#"{"bogus_field": 1}"#,
        "bogus_field",
    ),
    (
        "rate-limit.yaml",
        "rate_limit",
        r#"{"bogus_field": 1}"#,
        "bogus_field",
    ),
    (
        "audit-log.yaml",
        "audit_log",
        r#"{"bogus_field": 1}"#,
        "bogus_field",
    ),
    (
        "chain.yaml",
        "chain",
        r#"{"rate_limit": {"bogus_field": 1}}"#,
        "rate_limit.bogus_field",
    ),
];

#[tokio::test(flavor = "multi_thread")]
async fn valid_configs_load_and_serve() {
    let upstream = EchoUpstream::start().await.unwrap();
    for file in [
        "jwt-auth.yaml",
        "rate-limit.yaml",
        "audit-log.yaml",
        "chain-filters.yaml",
        "chain.yaml",
    ] {
        let envoy = Envoy::start(EnvoyOptions::new(file).upstream(upstream.port()))
            .await
            .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        let log = envoy.log();
        assert!(
            !log.contains("invalid plugin configuration"),
            "{file}:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn broken_configs_are_refused_with_the_field_path() {
    for (file, root_id, broken, path) in CASES {
        let log =
            Envoy::start_expecting_failure(EnvoyOptions::new(file).plugin_config(root_id, broken))
                .await
                .unwrap_or_else(|e| panic!("{file}: {e:#}"));
        let line = log
            .lines()
            .find(|l| l.contains("invalid plugin configuration"))
            .unwrap_or_else(|| panic!("{file}: no config error in the log:\n{log}"));
        assert!(line.contains(&format!("{path}: ")), "{file}: {line}");
        assert!(
            log.contains(&format!("Unable to create Wasm plugin {root_id}")),
            "{file}:\n{log}"
        );
    }
}
