//! `envoy/docker-compose.yaml` without a Docker engine: the file parses,
//! every service it names exists, every file it mounts exists, Envoy accepts
//! the config it mounts, the checked-in demo key set matches the checked-in
//! key, and a token from `cargo xtask token`'s code passes real Envoy running
//! chain.yaml with that key set, with audit events reaching the checked-in
//! collector script.

use e2e::demo_issuer::{self, TokenRequest};
use e2e::envoy::{Envoy, EnvoyOptions, COLLECTOR_PORT, JWKS_PORT, UPSTREAM_PORT};
use e2e::paths;
use e2e::servers::{EchoUpstream, JwksServer};
use e2e::tokens::RsaIssuer;
use reqwest::{Client, Method};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The parts of the compose file the demo relies on; any other key is refused
/// so that a typo (`depend_on`) cannot pass unnoticed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Compose {
    services: BTreeMap<String, Service>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Service {
    image: String,
    network_mode: Option<String>,
    working_dir: Option<String>,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    volumes: Vec<String>,
    #[serde(default)]
    depends_on: Vec<String>,
}

/// One `HOST:CONTAINER[:MODE]` bind mount, the host side resolved against
/// `envoy/` (compose resolves it against the compose file's directory).
#[derive(Debug)]
struct Mount {
    host: PathBuf,
    container: String,
}

fn envoy_dir() -> PathBuf {
    paths::workspace_root().join("envoy")
}

fn compose() -> Compose {
    let path = envoy_dir().join("docker-compose.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn mounts(service: &Service) -> Vec<Mount> {
    service
        .volumes
        .iter()
        .map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            assert!(
                (2..=3).contains(&parts.len()),
                "volume `{v}`: expected HOST:CONTAINER[:MODE]"
            );
            assert!(
                parts[0].starts_with("./") || parts[0].starts_with("../"),
                "volume `{v}`: the host side should be relative to envoy/"
            );
            Mount {
                host: envoy_dir().join(parts[0]),
                container: parts[1].to_string(),
            }
        })
        .collect()
}

/// The host path a container path comes from, through the service's mounts.
fn host_path(service: &Service, container_path: &str) -> Option<PathBuf> {
    mounts(service).into_iter().find_map(|m| {
        let rest = container_path.strip_prefix(&m.container)?;
        if rest.is_empty() {
            Some(m.host)
        } else {
            rest.strip_prefix('/').map(|r| m.host.join(r))
        }
    })
}

/// The `-c` file of the Envoy service, as a file name under `envoy/`.
fn envoy_config_name(c: &Compose) -> String {
    let envoy = &c.services["envoy"];
    let at = envoy
        .command
        .iter()
        .position(|a| a == "-c")
        .expect("the envoy service passes -c");
    let in_container = &envoy.command[at + 1];
    let host = host_path(envoy, in_container)
        .unwrap_or_else(|| panic!("{in_container} is not mounted into the envoy service"));
    assert_eq!(
        host.parent().map(|p| p.canonicalize().unwrap()),
        Some(envoy_dir().canonicalize().unwrap()),
        "the mounted Envoy config should be one of envoy/*.yaml (the tests run those)"
    );
    host.file_name().unwrap().to_string_lossy().into_owned()
}

/// The JSON configuration of the `chain` plugin in `envoy/<name>`.
fn chain_plugin_config(name: &str) -> Value {
    let text = std::fs::read_to_string(envoy_dir().join(name)).unwrap();
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let filters = &yaml["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
        ["typed_config"]["http_filters"];
    let seq = filters.as_sequence().expect("http_filters is a list");
    let chain = seq
        .iter()
        .find(|f| f["typed_config"]["config"]["root_id"].as_str() == Some("chain"))
        .expect("a plugin with root_id chain");
    let value = chain["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .expect("the plugin's configuration value");
    serde_json::from_str(value).unwrap()
}

#[test]
fn every_dependency_and_every_upstream_is_a_service() {
    let c = compose();
    for name in ["envoy", "upstream", "jwks", "collector"] {
        assert!(c.services.contains_key(name), "no `{name}` service");
    }
    for (name, s) in &c.services {
        assert!(!s.image.is_empty(), "{name}: no image");
        // Host networking is what keeps chain.yaml's 127.0.0.1 addresses.
        assert_eq!(s.network_mode.as_deref(), Some("host"), "{name}");
        for dep in &s.depends_on {
            assert!(
                c.services.contains_key(dep),
                "{name} depends on `{dep}`, which is not defined"
            );
            assert_ne!(dep, name, "{name} depends on itself");
        }
    }
    // Envoy starts after everything its clusters call.
    let envoy = &c.services["envoy"];
    let mut deps = envoy.depends_on.clone();
    deps.sort();
    assert_eq!(deps, ["collector", "jwks", "upstream"]);
    // Each cluster port of the mounted config is served by the service for it.
    let config = std::fs::read_to_string(envoy_dir().join(envoy_config_name(&c))).unwrap();
    for (service, port) in [
        ("upstream", UPSTREAM_PORT),
        ("jwks", JWKS_PORT),
        ("collector", COLLECTOR_PORT),
    ] {
        assert!(
            config.contains(&format!("port_value: {port} ")),
            "the mounted config has no cluster on {port}"
        );
        let s = &c.services[service];
        let port = port.to_string();
        assert!(
            s.command.contains(&port) || s.environment.values().any(|v| *v == port),
            "{service} does not listen on {port}: {s:?}"
        );
    }
}

#[test]
fn every_mounted_path_exists() {
    let c = compose();
    for (name, s) in &c.services {
        for m in mounts(s) {
            assert!(
                m.host.exists(),
                "{name}: {} (mounted at {}) is missing{}",
                m.host.display(),
                m.container,
                if m.container == "/etc/envoy/wasm" {
                    ": build the filters first (cargo xtask build)"
                } else {
                    ""
                }
            );
        }
    }
    // Every module the mounted config loads is there, seen through the mounts.
    let envoy = &c.services["envoy"];
    let config = std::fs::read_to_string(envoy_dir().join(envoy_config_name(&c))).unwrap();
    let modules: Vec<&str> = config
        .lines()
        .filter_map(|l| l.split("filename: ").nth(1))
        .map(|r| r.trim_end_matches(['}', ' ']))
        .collect();
    assert!(!modules.is_empty(), "the mounted config loads no module");
    for module in modules {
        let host = host_path(envoy, module)
            .unwrap_or_else(|| panic!("{module} is not under any mount of the envoy service"));
        assert!(
            host.is_file(),
            "{module} → {}: missing (cargo xtask build)",
            host.display()
        );
    }
    // The JWKS server's root holds the key set, not the private key.
    let jwks = &c.services["jwks"];
    let root = jwks.working_dir.as_deref().expect("jwks: working_dir");
    let served = host_path(jwks, &format!("{root}/jwks.json")).expect("jwks.json is served");
    assert_eq!(
        served.canonicalize().unwrap(),
        demo_issuer::demo_dir()
            .join(demo_issuer::JWKS_FILE)
            .canonicalize()
            .unwrap()
    );
    let key = demo_issuer::demo_dir()
        .join(demo_issuer::KEY_FILE)
        .canonicalize()
        .unwrap();
    for (name, s) in &c.services {
        for m in mounts(s) {
            assert!(
                !key.starts_with(m.host.canonicalize().unwrap()),
                "{name} mounts the demo private key ({})",
                m.container
            );
        }
    }
}

#[test]
fn envoy_validates_the_mounted_config() {
    let envoy = paths::ensure_envoy().unwrap();
    let name = envoy_config_name(&compose());
    let dir = tempfile::tempdir().unwrap();
    let validate = |text: &str| {
        let file = dir.path().join("envoy.yaml");
        std::fs::write(&file, text).unwrap();
        let out = Command::new(&envoy)
            .args(["--mode", "validate", "--disable-hot-restart", "-c"])
            .arg(&file)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // As mounted, the modules are at /etc/envoy/wasm, which validation reads:
    // the check below is a real one.
    let raw = std::fs::read_to_string(envoy_dir().join(&name)).unwrap();
    let (ok, log) = validate(&raw);
    assert!(!ok, "validated without the modules:\n{log}");
    assert!(log.contains("/etc/envoy/wasm/"), "{log}");
    // With /etc/envoy/wasm rewritten to the built modules (ports kept).
    let rendered = EnvoyOptions::new(&name).fixed_ports().render().unwrap();
    assert!(!rendered.contains("/etc/envoy/wasm/"), "{rendered}");
    let (ok, log) = validate(&rendered);
    assert!(ok, "envoy --mode validate refused {name}:\n{log}");
    assert!(log.contains("OK"), "{log}");
}

#[test]
fn the_key_set_matches_the_key_and_chain_yaml() {
    let jwks = demo_issuer::jwks().unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let kid = keys[0]["kid"].as_str().unwrap();
    let expected = RsaIssuer::from_key(
        demo_issuer::ISSUER,
        kid,
        demo_issuer::private_key().unwrap(),
    )
    .jwk();
    assert_eq!(
        keys[0],
        expected,
        "envoy/demo/jwks.json does not hold the public half of issuer-key.pem; it should be:\n{}",
        serde_json::to_string_pretty(&json!({ "keys": [expected] })).unwrap()
    );
    demo_issuer::issuer().unwrap();
    // The DEMO ONLY notice sits above the key.
    let pem = std::fs::read_to_string(demo_issuer::demo_dir().join(demo_issuer::KEY_FILE)).unwrap();
    assert!(pem.starts_with("DEMO ONLY"), "{}", demo_issuer::KEY_FILE);
    // The provider in the config compose mounts expects this issuer and
    // audience and fetches this key set from the jwks service.
    let config = chain_plugin_config(&envoy_config_name(&compose()));
    let providers = config["jwt_auth"]["providers"].as_object().unwrap();
    assert_eq!(providers.len(), 1, "{providers:?}");
    let provider = providers.values().next().unwrap();
    assert_eq!(provider["issuer"], demo_issuer::ISSUER);
    assert_eq!(provider["audiences"], json!([demo_issuer::AUDIENCE]));
    assert_eq!(
        provider["remote_jwks"]["http_uri"]["uri"],
        format!("http://127.0.0.1:{JWKS_PORT}/{}", demo_issuer::JWKS_FILE)
    );
}

/// The checked-in collector script, run with the local Python on a free
/// port; what it prints is kept. Stopped on drop.
struct ScriptCollector {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ScriptCollector {
    fn start() -> ScriptCollector {
        let python = ["python3", "python"]
            .into_iter()
            .find(|p| {
                Command::new(p)
                    .arg("--version")
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .expect("python3 runs envoy/demo/collector.py: apt-get install -y python3");
        let mut child = Command::new(python)
            .arg("-u")
            .arg(demo_issuer::demo_dir().join("collector.py"))
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let port = first
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.rsplit(':').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("collector.py printed `{first}`"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        ScriptCollector { child, port, lines }
    }

    /// The events printed so far, once at least `min` arrived (or after 30 s).
    async fn events(&self, min: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events: Vec<Value> = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}`: {e}")))
                .collect();
            if events.len() >= min || Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ScriptCollector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Envoy's workers post batches at the same time: each event must still come
/// out as one whole line, and each batch answered 200 only once printed.
#[tokio::test]
async fn the_collector_script_prints_concurrent_batches_whole() {
    let collector = ScriptCollector::start();
    let url = format!("http://127.0.0.1:{}/ingest", collector.port);
    let mut posts = tokio::task::JoinSet::new();
    for batch in 0..40 {
        let body: String = (0..25)
            .map(|i| {
                format!(
                    "{}\n",
                    json!({"batch": batch, "i": i, "pad": "x".repeat(200)})
                )
            })
            .collect();
        let req = Client::new().post(&url).body(body);
        posts.spawn(async move { req.send().await.unwrap().status().as_u16() });
    }
    let statuses = posts.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let events = collector.events(1000).await;
    assert_eq!(events.len(), 1000);
    // A body without a length (chunked): refused, so the sink would retry
    // rather than count it delivered.
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", collector.port))
        .await
        .unwrap();
    conn.write_all(
        b"POST /ingest HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.0 411"), "{answer}");
}

async fn status(envoy: &Envoy, method: Method, token: Option<&str>) -> (u16, Value) {
    let mut req = Client::new().request(method, envoy.url("/api/items"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_demo_token_passes_chain_yaml_and_a_foreign_key_does_not() {
    let name = envoy_config_name(&compose());
    let served =
        std::fs::read_to_string(demo_issuer::demo_dir().join(demo_issuer::JWKS_FILE)).unwrap();
    let jwks = JwksServer::start(&served).await.unwrap();
    let upstream = EchoUpstream::start().await.unwrap();
    let collector = ScriptCollector::start();
    let envoy = Envoy::start(
        EnvoyOptions::new(&name)
            .upstream(upstream.port())
            .jwks(jwks.port())
            .collector(collector.port),
    )
    .await
    .unwrap();

    // What `cargo xtask token` prints by default: a reader.
    let reader = demo_issuer::token(&TokenRequest::default()).unwrap();
    let (code, body) = status(&envoy, Method::GET, Some(&reader)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["headers"]["x-jwt-sub"], json!(["alice"]));
    assert_eq!(status(&envoy, Method::POST, Some(&reader)).await.0, 403);
    // --sub bob --scope "read write": a writer.
    let writer = demo_issuer::token(&TokenRequest {
        sub: "bob".into(),
        scope: "read write".into(),
        ..TokenRequest::default()
    })
    .unwrap();
    assert_eq!(status(&envoy, Method::POST, Some(&writer)).await.0, 200);

    // The same claims and kid signed with another key, another audience, no
    // token: refused.
    let foreign = RsaIssuer::new(demo_issuer::ISSUER, &demo_issuer::issuer().unwrap().kid)
        .unwrap()
        .token(
            "alice",
            demo_issuer::AUDIENCE,
            3600,
            json!({"scope": "read"}),
        );
    assert_eq!(status(&envoy, Method::GET, Some(&foreign)).await.0, 401);
    let other_aud = demo_issuer::token(&TokenRequest {
        audience: "another-api".into(),
        ..TokenRequest::default()
    })
    .unwrap();
    assert_eq!(status(&envoy, Method::GET, Some(&other_aud)).await.0, 403);
    assert_eq!(status(&envoy, Method::GET, None).await.0, 401);

    // The collector script printed one event per request, as JSON lines.
    let events = collector.events(6).await;
    let mut decisions: Vec<(u64, &str)> = events
        .iter()
        .map(|e| {
            (
                e["http"]["response"]["status_code"].as_u64().unwrap_or(0),
                e["decision"]["jwt"]["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    decisions.sort_unstable();
    assert_eq!(
        decisions,
        [
            (200, ""),
            (200, ""),
            (401, "bad_signature"),
            (401, "token_missing"),
            (403, "audience_mismatch"),
            (403, "insufficient_scope"),
        ],
        "{events:#?}"
    );
    let users: Vec<&str> = events
        .iter()
        .filter(|e| e["http"]["response"]["status_code"] == 200)
        .filter_map(|e| e["user"]["id"].as_str())
        .collect();
    assert!(
        users.contains(&"alice") && users.contains(&"bob"),
        "{events:#?}"
    );
    assert!(
        !collector
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(&reader)),
        "a token reached the collector"
    );
}
