//! A real OCI registry on 127.0.0.1: Debian's `docker-registry`
//! (distribution 2.8) with its own config and a temporary storage
//! directory, stopped on drop. `cargo xtask test` installs the package.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `docker-registry` package puts the binary.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// What installs it.
pub const INSTALL: &str = "apt-get update && apt-get install -y docker-registry";

pub struct Registry {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Registry {
    /// Starts the registry on a free port and waits until `/v2/` answers.
    /// Fails (never skips) when the binary is missing.
    pub async fn start() -> Result<Registry> {
        if !Path::new(REGISTRY_BIN).is_file() {
            bail!("{REGISTRY_BIN} is missing: install it with `{INSTALL}` (cargo xtask test does)");
        }
        let dir = tempfile::Builder::new()
            .prefix("portcullis-registry")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\n\
                 log:\n  level: info\n  accesslog: {{ disabled: true }}\n\
                 storage:\n  filesystem: {{ rootdirectory: {} }}\n  delete: {{ enabled: true }}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {REGISTRY_BIN}"))?;
        let mut registry = Registry { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = registry.child.try_wait()? {
                bail!("docker-registry exited with {status}:\n{}", registry.log());
            }
            if let Ok(r) = reqwest::get(registry.url("/v2/")).await {
                if r.status().is_success() {
                    return Ok(registry);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "docker-registry did not answer /v2/ within 30 s:\n{}",
                    registry.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `127.0.0.1:<port>`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- registry log -----\n{}\n----- end of registry log -----",
                self.log()
            );
        }
    }
}
