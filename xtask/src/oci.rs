//! `cargo xtask oci`: each module as an OCI image Istio's `WasmPlugin` can
//! pull, built without Docker (see `e2e::oci`), optionally pushed.

use anyhow::{bail, Context, Result};
use e2e::oci::{remote, wasmplugin, Image, Variant};
use std::path::PathBuf;

const TAG: &str = env!("CARGO_PKG_VERSION");

struct Args {
    variant: Variant,
    modules: Vec<String>,
    push: Option<String>,
}

fn parse(args: &[&str]) -> Result<Args> {
    let mut out = Args {
        variant: Variant::Compat,
        modules: Vec::new(),
        push: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .map(|v| v.to_string())
                .with_context(|| format!("{a} needs a value"))
        };
        match *a {
            "--variant" => out.variant = value()?.parse()?,
            "--module" => {
                let m = value()?;
                if !crate::build::MODULES.contains(&m.as_str()) {
                    bail!(
                        "unknown module `{m}`: one of {}",
                        crate::build::MODULES.join(", ")
                    );
                }
                out.modules.push(m);
            }
            "--push" => out.push = Some(value()?),
            other => bail!("unknown argument `{other}` for oci"),
        }
    }
    if out.modules.is_empty() {
        if out.push.is_some() {
            bail!("--push sends one image: add --module NAME");
        }
        out.modules = crate::build::MODULES
            .iter()
            .map(|m| m.to_string())
            .collect();
    }
    if out.push.is_some() && out.modules.len() > 1 {
        bail!("--push sends one image: give one --module");
    }
    Ok(out)
}

pub fn oci(args: &[&str]) -> Result<()> {
    let args = parse(args)?;
    crate::build::build()?;
    let dir = e2e::paths::target_dir()
        .join("oci")
        .join(args.variant.as_str());
    std::fs::create_dir_all(&dir)?;
    println!("\nOCI images ({} variant):", args.variant);
    for module in &args.modules {
        let wasm_path = e2e::paths::wasm_module(module);
        let wasm = std::fs::read(&wasm_path)
            .with_context(|| format!("reading {}", wasm_path.display()))?;
        let image = Image::build(args.variant, wasm)?;
        let layout = dir.join(module);
        image.write_layout(&layout, TAG)?;
        let tar: PathBuf = dir.join(format!("{module}.tar"));
        std::fs::write(&tar, image.layout_tar(TAG)?)?;
        let url = match &args.push {
            Some(target) => {
                let reference = remote::reference(target)?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(remote::push(&image, &reference))?;
                println!("  pushed {}", reference.whole());
                format!("oci://{}", reference.whole())
            }
            None => format!("oci://registry.example.com/portcullis/{module}:{TAG}"),
        };
        let plugin = dir.join(format!("{module}.wasmplugin.yaml"));
        std::fs::write(
            &plugin,
            wasmplugin::wasm_plugin(module, &url, &image.manifest_hex())?,
        )?;
        println!("  {module}");
        println!(
            "    manifest  {}  (WasmPlugin sha256 for oci:// URLs)",
            image.manifest_digest()
        );
        println!(
            "    module    sha256:{}  (sha256 for https:// URLs)",
            image.wasm_hex()
        );
        println!("    layout    {}", layout.display());
        println!("    tar       {}", tar.display());
        println!("    plugin    {}", plugin.display());
    }
    Ok(())
}
