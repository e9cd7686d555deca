//! Builds one module's image in memory, then writes it as an OCI image
//! layout directory and as a tar of that directory. Every byte is fixed by
//! the module: tar entries have mtime 0, uid/gid 0, fixed modes and no user
//! names; gzip has mtime 0; JSON maps have one key at most, so the manifest
//! digest is the same on every build.

use super::{IMAGE_CONFIG, INDEX, LAYER_TAR_GZIP, MANIFEST, PLUGIN_WASM, VARIANT_ANNOTATION};
use super::{WASM_CONFIG, WASM_CONTENT};
use anyhow::{bail, Context, Result};
use oci_spec::image::{
    Arch, Descriptor, Digest, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder,
    MediaType, Os, RootFsBuilder, Sha256Digest,
};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

/// The two layouts Istio accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// An OCI image whose last (only) layer is a tar+gzip holding `plugin.wasm`.
    Compat,
    /// Exactly two layers: the wasm config JSON, then the raw module.
    Oci,
}

impl Variant {
    pub const ALL: [Variant; 2] = [Variant::Compat, Variant::Oci];
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Compat => "compat",
            Variant::Oci => "oci",
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Variant {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "compat" => Ok(Variant::Compat),
            "oci" => Ok(Variant::Oci),
            other => bail!("unknown variant `{other}`: compat or oci"),
        }
    }
}

/// Content-addressed bytes with their media type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub media_type: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            bytes,
        }
    }
    /// `sha256:<hex>`.
    pub fn digest(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.bytes))
    }
    pub fn descriptor(&self) -> Result<Descriptor> {
        descriptor(&self.media_type, &self.bytes)
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(bytes) {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn digest_of(bytes: &[u8]) -> Result<Digest> {
    Ok(Sha256Digest::from_str(&sha256_hex(bytes))?.into())
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Result<Descriptor> {
    Ok(Descriptor::new(
        MediaType::from(media_type),
        bytes.len() as u64,
        digest_of(bytes)?,
    ))
}

/// One module's image: its config, layers and manifest, all as bytes.
#[derive(Debug, Clone)]
pub struct Image {
    pub variant: Variant,
    /// The module itself, as built.
    pub wasm: Vec<u8>,
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// The manifest exactly as written and pushed.
    pub manifest: Vec<u8>,
}

impl Image {
    /// Builds the image of `wasm` in `variant`'s layout.
    pub fn build(variant: Variant, wasm: Vec<u8>) -> Result<Image> {
        if !wasm.starts_with(b"\0asm") {
            bail!("not a wasm module (no \\0asm magic)");
        }
        let tar = plugin_tar(&wasm)?;
        let layers = match variant {
            Variant::Compat => vec![Blob::new(LAYER_TAR_GZIP, gzip(&tar)?)],
            Variant::Oci => vec![
                // solo-io's wasm image spec: what the module is for.
                Blob::new(
                    WASM_CONFIG,
                    br#"{"abiVersions":["proxy_abi_version_0_2_1"],"type":"envoy_proxy"}"#.to_vec(),
                ),
                Blob::new(WASM_CONTENT, wasm.clone()),
            ],
        };
        // The image config names each layer's uncompressed digest.
        let diff_ids = match variant {
            Variant::Compat => vec![format!("sha256:{}", sha256_hex(&tar))],
            Variant::Oci => layers.iter().map(Blob::digest).collect(),
        };
        let config = ImageConfigurationBuilder::default()
            .architecture(Arch::Wasm)
            .os(Os::Other("wasip1".into()))
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(diff_ids)
                    .build()?,
            )
            .build()?;
        let config = Blob::new(IMAGE_CONFIG, serde_json::to_vec(&config)?);
        let mut manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config.descriptor()?)
            .layers(
                layers
                    .iter()
                    .map(Blob::descriptor)
                    .collect::<Result<Vec<_>>>()?,
            );
        if variant == Variant::Compat {
            manifest = manifest.annotations(HashMap::from([(
                VARIANT_ANNOTATION.to_string(),
                "compat".to_string(),
            )]));
        }
        let manifest = serde_json::to_vec(&manifest.build()?)?;
        Ok(Image {
            variant,
            wasm,
            config,
            layers,
            manifest,
        })
    }

    /// `sha256:<hex>` of the manifest: the image's identity.
    pub fn manifest_digest(&self) -> String {
        format!("sha256:{}", sha256_hex(&self.manifest))
    }

    /// The hex alone: what `WasmPlugin.spec.sha256` holds for `oci://` URLs.
    pub fn manifest_hex(&self) -> String {
        sha256_hex(&self.manifest)
    }

    /// The module's own sha256: what `WasmPlugin.spec.sha256` holds for
    /// `https://` URLs (and Envoy's `vm_config.code.remote.sha256`).
    pub fn wasm_hex(&self) -> String {
        sha256_hex(&self.wasm)
    }

    /// Every blob the layout holds: config, layers and the manifest.
    pub fn blobs(&self) -> Vec<Blob> {
        let mut out = vec![self.config.clone()];
        out.extend(self.layers.iter().cloned());
        out.push(Blob::new(MANIFEST, self.manifest.clone()));
        out
    }

    /// The layout's `index.json`: its entry point, naming the one manifest.
    pub fn index_json(&self, tag: &str) -> Result<Vec<u8>> {
        let mut manifest = descriptor(MANIFEST, &self.manifest)?;
        manifest.set_annotations(Some(HashMap::from([(
            "org.opencontainers.image.ref.name".to_string(),
            tag.to_string(),
        )])));
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::from(INDEX))
            .manifests(vec![manifest])
            .build()?;
        Ok(serde_json::to_vec(&index)?)
    }

    /// The files of the OCI image layout, sorted by path (directories end in `/`).
    pub fn layout_files(&self, tag: &str) -> Result<Vec<(String, Option<Vec<u8>>)>> {
        let mut files: Vec<(String, Option<Vec<u8>>)> =
            vec![("blobs/".into(), None), ("blobs/sha256/".into(), None)];
        let mut blobs: Vec<(String, Vec<u8>)> = self
            .blobs()
            .into_iter()
            .map(|b| (format!("blobs/sha256/{}", sha256_hex(&b.bytes)), b.bytes))
            .collect();
        blobs.sort();
        blobs.dedup();
        files.extend(blobs.into_iter().map(|(p, b)| (p, Some(b))));
        files.push(("index.json".into(), Some(self.index_json(tag)?)));
        files.push((
            "oci-layout".into(),
            Some(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec()),
        ));
        Ok(files)
    }

    /// Writes the OCI image layout into `dir` (replacing what was there).
    pub fn write_layout(&self, dir: &Path, tag: &str) -> Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
        }
        for (path, bytes) in self.layout_files(tag)? {
            let p = dir.join(&path);
            match bytes {
                None => std::fs::create_dir_all(&p)?,
                Some(b) => {
                    std::fs::write(&p, b).with_context(|| format!("writing {}", p.display()))?
                }
            }
        }
        Ok(())
    }

    /// The layout as one tar (what `skopeo copy oci-archive:` and `podman load` read).
    pub fn layout_tar(&self, tag: &str) -> Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, bytes) in self.layout_files(tag)? {
            match bytes {
                None => append(&mut tar, &path, tar::EntryType::Directory, 0o755, &[])?,
                Some(b) => append(&mut tar, &path, tar::EntryType::Regular, 0o644, &b)?,
            }
        }
        Ok(tar.into_inner()?)
    }
}

/// A tar entry with nothing from the machine in it.
fn append(
    tar: &mut tar::Builder<Vec<u8>>,
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    bytes: &[u8],
) -> Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_path(path)?;
    h.set_size(bytes.len() as u64);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_username("")?;
    h.set_groupname("")?;
    h.set_cksum();
    tar.append(&h, bytes)?;
    Ok(())
}

/// A tar holding only `plugin.wasm`.
pub fn plugin_tar(wasm: &[u8]) -> Result<Vec<u8>> {
    tar_of(&[(PLUGIN_WASM, wasm)])
}

/// A deterministic tar of regular files.
pub fn tar_of(files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        append(&mut tar, name, tar::EntryType::Regular, 0o644, bytes)?;
    }
    Ok(tar.into_inner()?)
}

/// Gzip with mtime 0 and a fixed level.
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(bytes)?;
    Ok(gz.finish()?)
}
