//! The targets and components `rust-toolchain.toml` lists, added when missing.
//!
//! rustup installs them only when it installs the toolchain itself: on a
//! machine whose pinned toolchain already exists (and with
//! `RUSTUP_AUTO_INSTALL=0`), a listed target such as `wasm32-wasip1` is never
//! added, and the first wasm build fails with "can't find crate for `core`".
//! So every command that builds runs [`ensure`] first.

use crate::tools::root;
use anyhow::{bail, Context, Result};
use std::process::Command;

/// What `rust-toolchain.toml` asks for beyond the toolchain itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub targets: Vec<String>,
    pub components: Vec<String>,
}

/// Adds every listed target and component that `rustup` does not report as
/// installed, one line for each. Fails with the command to run by hand when
/// rustup is missing or cannot add one.
pub fn ensure() -> Result<()> {
    let text = std::fs::read_to_string(root().join("rust-toolchain.toml"))
        .context("reading rust-toolchain.toml")?;
    let wanted = wanted(&text)?;
    let targets = installed(&["target", "list", "--installed"])?;
    let components = installed(&["component", "list", "--installed"])?;
    let host = host_triple()?;
    for t in wanted.targets.iter().filter(|t| !targets.contains(t)) {
        add("target", t)?;
    }
    for c in wanted.components.iter().filter(|c| {
        !components
            .iter()
            .any(|have| component_matches(have, c, &host))
    }) {
        add("component", c)?;
    }
    Ok(())
}

/// Reads the `[toolchain]` table's `targets` and `components`.
pub fn wanted(text: &str) -> Result<Wanted> {
    #[derive(serde::Deserialize)]
    struct File {
        toolchain: Toolchain,
    }
    #[derive(serde::Deserialize)]
    struct Toolchain {
        #[serde(default)]
        targets: Vec<String>,
        #[serde(default)]
        components: Vec<String>,
    }
    let file: File = toml::from_str(text).context("parsing rust-toolchain.toml")?;
    Ok(Wanted {
        targets: file.toolchain.targets,
        components: file.toolchain.components,
    })
}

/// rustup lists components with their host triple (`clippy-x86_64-unknown-linux-gnu`).
fn component_matches(installed: &str, wanted: &str, host: &str) -> bool {
    installed == wanted || installed == format!("{wanted}-{host}")
}

/// The host triple of the pinned toolchain (`rustc -vV`'s `host:` line).
fn host_triple() -> Result<String> {
    let out = Command::new("rustc")
        .arg("-vV")
        .current_dir(root())
        .output()
        .context("running rustc -vV")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .context("rustc -vV printed no host line")
}

/// One rustup listing, run in the workspace so the pinned toolchain answers.
fn installed(args: &[&str]) -> Result<Vec<String>> {
    let out = Command::new("rustup")
        .args(args)
        .current_dir(root())
        .output()
        .context("rustup is needed to add the wasm targets (install it from rustup.rs)")?;
    if !out.status.success() {
        bail!(
            "`rustup {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

fn add(kind: &str, name: &str) -> Result<()> {
    eprintln!(
        "rust-toolchain.toml lists {kind} {name}, which is not installed: rustup {kind} add {name}"
    );
    let status = Command::new("rustup")
        .args([kind, "add", name])
        .current_dir(root())
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("`rustup {kind} add {name}` failed ({status}); run it by hand, then try again");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_projects_toolchain_file() {
        let text = std::fs::read_to_string(root().join("rust-toolchain.toml")).unwrap();
        let w = wanted(&text).unwrap();
        assert!(w.targets.contains(&"wasm32-wasip1".to_string()));
        assert!(w.targets.contains(&"wasm32-unknown-unknown".to_string()));
        assert!(w.components.contains(&"clippy".to_string()));
    }

    #[test]
    fn a_file_without_lists_wants_nothing() {
        let w = wanted("[toolchain]\nchannel = \"1.95.0\"\n").unwrap();
        assert_eq!(w, Wanted::default());
        assert!(wanted("channel = 1").is_err());
    }

    #[test]
    fn components_match_with_or_without_the_host_triple() {
        let host = "x86_64-unknown-linux-gnu";
        assert!(component_matches(
            "clippy-x86_64-unknown-linux-gnu",
            "clippy",
            host
        ));
        assert!(component_matches("clippy", "clippy", host));
        assert!(!component_matches(
            "clippy-preview-x86_64-unknown-linux-gnu",
            "clippy",
            host
        ));
        assert!(!component_matches(
            "rustfmt-x86_64-unknown-linux-gnu",
            "clippy",
            host
        ));
    }
}
