//! `cargo xtask bench --before <git rev>[,<rev>...]`: our configurations
//! measured in the same run with the modules of the work tree and with the
//! modules built at each `<rev>`, interleaved like every other
//! configuration. An optimisation's before-and-after figures then come from
//! one run on one machine, not from two runs an hour apart on a shared one.

use super::setups::{Setup, Side};
use crate::tools::{cargo, root, run};
use anyhow::{Context, Result};
use e2e::paths::wasm_file_name;
use std::path::PathBuf;
use std::process::Command;

/// The modules of another revision, built in a git worktree.
pub struct Before {
    pub rev: String,
    /// Where its `.wasm` files are.
    pub wasm_dir: PathBuf,
}

impl Before {
    /// Checks `rev` out into `target/bench/before/<rev>` and builds every
    /// module there (its own target dir, so the work tree's stays warm).
    pub fn build(rev: &str, modules: &[&str]) -> Result<Before> {
        let base = root().join("target").join("bench").join("before");
        let tree = base.join(rev.replace('/', "-"));
        let target = base.join("target");
        if !tree.exists() {
            std::fs::create_dir_all(&base)?;
            run(
                &format!("git worktree add {rev}"),
                Command::new("git")
                    .args(["worktree", "add", "--detach"])
                    .arg(&tree)
                    .arg(rev),
            )?;
        }
        // The target dir is shared by every revision (dependencies build
        // once), but cargo keys workspace crates by their path relative to
        // the workspace, so each revision's must be rebuilt, and its
        // modules copied out before the next revision overwrites them.
        let mut clean = cargo();
        clean.current_dir(&tree).env("CARGO_TARGET_DIR", &target);
        clean.args(["clean", "--release", "--target", "wasm32-wasip1"]);
        for m in modules {
            clean.args([
                "-p",
                m.strip_prefix("examples/").map_or(*m, |_| "filter-common"),
            ]);
        }
        run(&format!("clean the workspace crates for {rev}"), &mut clean)?;
        for m in modules {
            let mut cmd = cargo();
            cmd.current_dir(&tree).env("CARGO_TARGET_DIR", &target);
            cmd.args(["build", "--quiet", "--release", "--target", "wasm32-wasip1"]);
            match m.strip_prefix("examples/") {
                Some(example) => cmd.args(["-p", "filter-common", "--example", example]),
                None => cmd.args(["-p", m]),
            };
            run(&format!("build {m} at {rev}"), &mut cmd)
                .with_context(|| format!("building {m} at {rev}"))?;
        }
        let built = target.join("wasm32-wasip1").join("release");
        let wasm_dir = base.join(format!("{}-wasm", rev.replace('/', "-")));
        for m in modules {
            let to = wasm_dir.join(wasm_file_name(m));
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::copy(built.join(wasm_file_name(m)), &to)
                .with_context(|| format!("copying {m} built at {rev}"))?;
            // `BENCH_BEFORE_NO_WASM_OPT=1` with `--before HEAD` measures
            // what wasm-opt itself does to the work tree's modules.
            if std::env::var_os("BENCH_BEFORE_NO_WASM_OPT").is_none() {
                crate::build::optimise_quietly(&to);
            }
        }
        Ok(Before {
            rev: rev.to_string(),
            wasm_dir,
        })
    }

    /// A twin of each of our configurations that loads the old modules.
    pub fn twins(&self, setups: &[Setup]) -> Vec<Setup> {
        let now = e2e::paths::wasm_dir();
        setups
            .iter()
            .filter(|s| s.side == Side::Ours && !s.id.contains('@'))
            .map(|s| {
                let mut twin = s.clone();
                twin.id = self.id(s.id);
                twin.label = leak(format!("{} — before ({})", s.label, self.rev));
                for m in &s.modules {
                    twin.options = twin.options.replace(
                        &now.join(wasm_file_name(m)).display().to_string(),
                        &self.wasm_dir.join(wasm_file_name(m)).display().to_string(),
                    );
                }
                twin
            })
            .collect()
    }

    /// `ours-chain` → `ours-chain@<rev>`.
    pub fn id(&self, id: &str) -> &'static str {
        leak(format!("{id}@{}", self.rev))
    }

    /// Each workload's list with a twin right after each of ours.
    pub fn matrix(
        &self,
        matrix: Vec<(&'static str, Vec<&'static str>)>,
    ) -> Vec<(&'static str, Vec<&'static str>)> {
        matrix
            .into_iter()
            .map(|(w, ids)| {
                let mut out = Vec::new();
                for id in ids {
                    out.push(id);
                    // Twins of the work tree's configurations only.
                    if id.starts_with("ours-") && !id.contains('@') {
                        out.push(self.id(id));
                    }
                }
                (w, out)
            })
            .collect()
    }
}

/// Ids and labels are `&'static str` throughout the bench; a handful of
/// twins per run is not worth changing that.
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}
