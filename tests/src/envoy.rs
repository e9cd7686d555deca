//! A real Envoy process started from a config in `envoy/`, with ephemeral
//! ports and the locally built modules swapped in.
//!
//! The files in `envoy/` are the ones `docker-compose.yaml` mounts, with
//! fixed ports (listener 10000, admin 9901, upstream 8080, JWKS 8081,
//! collector 8082) and modules under `/etc/envoy/wasm/`. [`EnvoyOptions`]
//! rewrites those, and can replace the JSON configuration of any wasm
//! plugin by its `root_id`.

use crate::paths;
use crate::stats::Stats;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The well-known ports used in `envoy/*.yaml`.
pub const LISTENER_PORT: u16 = 10000;
pub const ADMIN_PORT: u16 = 9901;
pub const UPSTREAM_PORT: u16 = 8080;
pub const JWKS_PORT: u16 = 8081;
pub const COLLECTOR_PORT: u16 = 8082;

#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// File name under `envoy/`, e.g. `jwt-auth.yaml`.
    pub config: String,
    /// Worker threads; 2 by default so cross-worker behaviour is exercised.
    pub concurrency: u32,
    /// `(port in the file, port to use)`.
    pub ports: Vec<(u16, u16)>,
    /// `(root_id, JSON)`: replaces that plugin's configuration.
    pub plugin_configs: Vec<(String, String)>,
    /// Any further `(from, to)` text replacements.
    pub replacements: Vec<(String, String)>,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Keep the listener on 10000 and admin on 9901 (the demo).
    pub fixed_ports: bool,
    /// `(name, contents)`: files written to Envoy's run directory before
    /// it starts (e.g. a file-based xDS resource); `/etc/envoy/run` in the
    /// config names that directory.
    pub files: Vec<(String, String)>,
}

impl EnvoyOptions {
    pub fn new(config: &str) -> Self {
        EnvoyOptions {
            config: config.to_string(),
            concurrency: 2,
            ports: Vec::new(),
            plugin_configs: Vec::new(),
            replacements: Vec::new(),
            args: Vec::new(),
            fixed_ports: false,
            files: Vec::new(),
        }
    }
    pub fn fixed_ports(mut self) -> Self {
        self.fixed_ports = true;
        self
    }
    pub fn upstream(self, port: u16) -> Self {
        self.port(UPSTREAM_PORT, port)
    }
    pub fn jwks(self, port: u16) -> Self {
        self.port(JWKS_PORT, port)
    }
    pub fn collector(self, port: u16) -> Self {
        self.port(COLLECTOR_PORT, port)
    }
    pub fn port(mut self, from: u16, to: u16) -> Self {
        self.ports.push((from, to));
        self
    }
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }
    pub fn plugin_config(mut self, root_id: &str, json: impl Into<String>) -> Self {
        self.plugin_configs.push((root_id.to_string(), json.into()));
        self
    }
    pub fn replace(mut self, from: &str, to: &str) -> Self {
        self.replacements.push((from.to_string(), to.to_string()));
        self
    }
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }
    /// A file in Envoy's run directory (see [`EnvoyOptions::files`]).
    pub fn file(mut self, name: &str, contents: impl Into<String>) -> Self {
        self.files.push((name.to_string(), contents.into()));
        self
    }

    /// The config text Envoy will run.
    pub fn render(&self) -> Result<String> {
        let path = paths::envoy_config(&self.config);
        let mut text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let wasm_dir = format!("{}/", paths::wasm_dir().display());
        text = text.replace("/etc/envoy/wasm/", &wasm_dir);
        // Listener and admin bind port 0; the real ports are read back.
        let mut ports = if self.fixed_ports {
            vec![]
        } else {
            vec![(LISTENER_PORT, 0), (ADMIN_PORT, 0)]
        };
        ports.extend(self.ports.iter().copied());
        for (from, to) in ports {
            text = text.replace(
                &format!("port_value: {from} "),
                &format!("port_value: {to} "),
            );
            text = text.replace(
                &format!("port_value: {from}}}"),
                &format!("port_value: {to}}}"),
            );
            text = text.replace(
                &format!("port_value: {from}\n"),
                &format!("port_value: {to}\n"),
            );
        }
        for (root_id, json) in &self.plugin_configs {
            text = replace_plugin_config(&text, root_id, json)?;
        }
        for (from, to) in &self.replacements {
            if !text.contains(from.as_str()) {
                bail!("{}: no `{from}` to replace", self.config);
            }
            text = text.replace(from.as_str(), to);
        }
        Ok(text)
    }
}

/// Replaces the `value: |` block of the plugin with `root_id: <root_id>`.
fn replace_plugin_config(text: &str, root_id: &str, json: &str) -> Result<String> {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim() == format!("root_id: {root_id}"))
        .with_context(|| format!("no plugin with root_id {root_id}"))?;
    let value_at = lines
        .iter()
        .skip(start)
        .position(|l| l.trim() == "value: |")
        .map(|i| i + start)
        .with_context(|| format!("plugin {root_id} has no `value: |` block"))?;
    let indent = lines[value_at].len() - lines[value_at].trim_start().len();
    let end = lines
        .iter()
        .skip(value_at + 1)
        .position(|l| !l.trim().is_empty() && l.len() - l.trim_start().len() <= indent)
        .map_or(lines.len(), |i| i + value_at + 1);
    let pad = " ".repeat(indent + 2);
    let mut out: Vec<String> = lines[..=value_at].iter().map(|s| s.to_string()).collect();
    for l in json.lines() {
        out.push(format!("{pad}{l}"));
    }
    out.extend(lines[end..].iter().map(|s| s.to_string()));
    Ok(out.join("\n") + "\n")
}

/// A running Envoy. Stopped on drop; its log is printed if a test panicked.
pub struct Envoy {
    child: Child,
    dir: tempfile::TempDir,
    /// The HTTP listener's port.
    pub port: u16,
    /// The admin endpoint's port.
    pub admin_port: u16,
}

impl Envoy {
    /// Starts Envoy and waits until it is ready to serve.
    pub async fn start(opts: EnvoyOptions) -> Result<Envoy> {
        let (child, dir) = spawn(&opts)?;
        let mut envoy = Envoy {
            child,
            dir,
            port: 0,
            admin_port: 0,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        let admin_file = envoy.dir.path().join("admin");
        loop {
            if let Some(status) = envoy.child.try_wait()? {
                bail!(
                    "envoy ({}) exited with {status} before it was ready:\n{}",
                    opts.config,
                    envoy.log()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "envoy ({}) was not ready after 60 s:\n{}",
                    opts.config,
                    envoy.log()
                );
            }
            if envoy.admin_port == 0 {
                if let Ok(addr) = std::fs::read_to_string(&admin_file) {
                    envoy.admin_port = addr
                        .trim()
                        .rsplit(':')
                        .next()
                        .and_then(|p| p.parse().ok())
                        .unwrap_or(0);
                }
            } else if let Ok(port) = envoy.listener_port().await {
                envoy.port = port;
                return Ok(envoy);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts Envoy with a config it must refuse; returns its log after it
    /// exits. Fails if Envoy comes up instead.
    pub async fn start_expecting_failure(opts: EnvoyOptions) -> Result<String> {
        let (mut child, dir) = spawn(&opts)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.path().join("envoy.log")).unwrap_or_default();
                if status.success() {
                    bail!("envoy exited successfully, expected a refusal:\n{log}");
                }
                return Ok(log);
            }
            if Instant::now() > deadline || dir.path().join("admin").exists() && ready(&dir).await {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(dir.path().join("envoy.log")).unwrap_or_default();
                bail!(
                    "envoy ({}) accepted a config it should refuse:\n{log}",
                    opts.config
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    /// Where the files of [`EnvoyOptions::file`] are (`/etc/envoy/run`).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// Replaces a file in the run directory atomically (a temp file renamed
    /// over it), as Envoy's file-based xDS requires: its watch sees the move.
    pub fn replace_file(&self, name: &str, contents: &str) -> Result<()> {
        let tmp = self.run_dir().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, contents)?;
        std::fs::rename(&tmp, self.run_dir().join(name))?;
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("envoy.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the Envoy process, in bytes (Linux).
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024)
    }

    /// All of Envoy's stats, read from the admin endpoint.
    pub async fn stats(&self) -> Result<Stats> {
        Stats::fetch(&self.admin_url("/stats?format=json")).await
    }

    async fn listener_port(&self) -> Result<u16> {
        let body: serde_json::Value = reqwest::get(self.admin_url("/listeners?format=json"))
            .await?
            .json()
            .await?;
        let port = body["listener_statuses"][0]["local_address"]["socket_address"]["port_value"]
            .as_u64()
            .context("no listener yet")?;
        let ready = reqwest::get(self.admin_url("/ready")).await?;
        if !ready.status().is_success() {
            bail!("not ready");
        }
        Ok(u16::try_from(port)?)
    }
}

async fn ready(dir: &tempfile::TempDir) -> bool {
    let Ok(addr) = std::fs::read_to_string(dir.path().join("admin")) else {
        return false;
    };
    match reqwest::get(format!("http://{}/ready", addr.trim())).await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

fn spawn(opts: &EnvoyOptions) -> Result<(Child, tempfile::TempDir)> {
    let envoy = paths::ensure_envoy()?;
    let dir = tempfile::Builder::new()
        .prefix("portcullis-envoy")
        .tempdir()?;
    let config = dir.path().join("envoy.yaml");
    // Its own directory: Envoy may watch it, and its log is elsewhere.
    let run_dir = dir.path().join("run");
    std::fs::create_dir(&run_dir)?;
    let text = opts
        .render()?
        .replace("/etc/envoy/run", &run_dir.display().to_string());
    std::fs::write(&config, &text)?;
    for (name, contents) in &opts.files {
        std::fs::write(run_dir.join(name), contents)?;
    }
    for module in wasm_modules_in(&text) {
        if !module.is_file() {
            bail!(
                "{} is missing: build the filters first (cargo xtask build)",
                module.display()
            );
        }
    }
    let log = std::fs::File::create(dir.path().join("envoy.log"))?;
    let child = Command::new(envoy)
        .arg("-c")
        .arg(&config)
        .args(["--disable-hot-restart", "--log-level", "info"])
        .arg("--concurrency")
        .arg(opts.concurrency.to_string())
        .arg("--admin-address-path")
        .arg(dir.path().join("admin"))
        .args(&opts.args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting envoy")?;
    Ok((child, dir))
}

fn wasm_modules_in(config: &str) -> Vec<PathBuf> {
    config
        .lines()
        .filter_map(|l| {
            let i = l.find("filename:")?;
            let rest = l.get(i + "filename:".len()..)?.trim();
            let rest = rest.trim_end_matches(['}', ' ']);
            rest.ends_with(".wasm")
                .then(|| Path::new(rest).to_path_buf())
        })
        .collect()
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- envoy log -----\n{}\n----- end of envoy log -----",
                self.log()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_a_plugin_config_block() {
        let text = "a:\n  root_id: x\n  configuration:\n    value: |\n      {\"old\": 1}\n      more\n  next: 1\n";
        let out = replace_plugin_config(text, "x", "{\"new\":\n 2}").unwrap();
        assert_eq!(
            out,
            "a:\n  root_id: x\n  configuration:\n    value: |\n      {\"new\":\n       2}\n  next: 1\n"
        );
        assert!(replace_plugin_config(text, "y", "{}").is_err());
    }
}
