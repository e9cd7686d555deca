//! Istio's acceptance rules for a wasm image, as a checker: what istio-agent
//! does with an `oci://` `WasmPlugin` before Envoy ever sees the module.
//!
//! Written from istio/istio `pkg/wasm/imagefetcher.go` (`PrepareFetch`,
//! `extractDockerImage`, `extractOCIStandardImage`, `extractWasmPluginBinary`,
//! `extractOCIArtifactImage`) and `pkg/wasm/cache.go` (the manifest digest
//! compared with `WasmPlugin.spec.sha256`, `isValidWasmBinary`). Blob
//! digests and sizes are checked on read, as go-containerregistry does.

use super::image::sha256_hex;
use super::{DOCKER_LAYER, DOCKER_MANIFEST, LAYER_TAR_GZIP, PLUGIN_WASM, WASM_CONTENT};
use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Read;

/// Where the checker reads blobs from (a layout, a registry pull, a test).
pub trait BlobSource {
    /// The bytes stored under `digest` (`sha256:<hex>`), unchecked.
    fn blob(&self, digest: &str) -> Result<Vec<u8>>;
}

/// Blobs in memory, by digest.
#[derive(Debug, Default, Clone)]
pub struct BlobMap(pub BTreeMap<String, Vec<u8>>);

impl BlobMap {
    /// Stores `bytes` under their own digest.
    pub fn insert(&mut self, bytes: Vec<u8>) -> String {
        let digest = format!("sha256:{}", sha256_hex(&bytes));
        self.0.insert(digest.clone(), bytes);
        digest
    }
}

impl BlobSource for BlobMap {
    fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        self.0
            .get(digest)
            .cloned()
            .ok_or_else(|| anyhow!("blob {digest} not found"))
    }
}

/// The parts of a manifest Istio reads.
#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Debug, Deserialize)]
struct Layer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

/// `WasmPlugin.spec.sha256` against the manifest (cache.go: "does not match").
pub fn check_manifest_digest(manifest: &[u8], expected_hex: &str) -> Result<()> {
    let actual = sha256_hex(manifest);
    if actual != expected_hex {
        bail!("module has checksum {actual}, which does not match {expected_hex}");
    }
    Ok(())
}

/// What istio-agent would hand Envoy for this image, or why it refuses it:
/// the manifest digest must be `expected_hex` (when given), the image must be
/// a Docker compat image, an OCI compat image or an oci-variant image, and
/// the module must start with the wasm header.
pub fn extract(
    manifest: &[u8],
    expected_hex: Option<&str>,
    blobs: &dyn BlobSource,
) -> Result<Vec<u8>> {
    if let Some(hex) = expected_hex {
        check_manifest_digest(manifest, hex)?;
    }
    let m: Manifest = serde_json::from_slice(manifest).context("could not parse manifest")?;
    let wasm = if m.media_type == DOCKER_MANIFEST {
        compat(&m, DOCKER_LAYER, blobs)
            .context("could not extract Wasm file from the image as Docker container")?
    } else {
        match compat(&m, LAYER_TAR_GZIP, blobs) {
            Ok(w) => w,
            Err(compat_err) => oci(&m, blobs).map_err(|oci_err| {
                anyhow!(
                    "the given image is in invalid format as an OCI image: \
                     could not parse as compat variant: {compat_err:#}; \
                     could not parse as oci variant: {oci_err:#}"
                )
            })?,
        }
    };
    // cache.go: a module is at least the 8-byte header, magic first.
    if wasm.len() < 8 || !wasm.starts_with(b"\0asm") {
        bail!("fetched Wasm binary is invalid (no \\0asm header)");
    }
    Ok(wasm)
}

/// A layer's bytes, refused if they do not match its digest or size.
fn read_layer(layer: &Layer, blobs: &dyn BlobSource) -> Result<Vec<u8>> {
    let bytes = blobs.blob(&layer.digest)?;
    let actual = format!("sha256:{}", sha256_hex(&bytes));
    if actual != layer.digest {
        bail!(
            "layer {} has digest {actual}: content does not match",
            layer.digest
        );
    }
    if bytes.len() as u64 != layer.size {
        bail!(
            "layer {} is {} bytes, its descriptor says {}",
            layer.digest,
            bytes.len(),
            layer.size
        );
    }
    Ok(bytes)
}

/// The compat variant: the last layer has `media_type` and is a tar.gz with a
/// file whose base name is `plugin.wasm` (the first such entry wins).
fn compat(m: &Manifest, media_type: &str, blobs: &dyn BlobSource) -> Result<Vec<u8>> {
    let last = m
        .layers
        .last()
        .context("number of layers must be greater than zero")?;
    if last.media_type != media_type {
        bail!(
            "invalid media type {} (expect {media_type})",
            last.media_type
        );
    }
    let gz = read_layer(last, blobs)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(gz.as_slice()));
    for entry in tar.entries().context("failed to parse layer as tar.gz")? {
        let mut entry = entry.context("failed to parse layer as tar.gz")?;
        let path = entry.path()?.into_owned();
        if path.file_name().is_some_and(|n| n == PLUGIN_WASM) {
            let mut wasm = Vec::new();
            entry
                .read_to_end(&mut wasm)
                .with_context(|| format!("failed to read {PLUGIN_WASM}"))?;
            return Ok(wasm);
        }
    }
    bail!("{PLUGIN_WASM} not found in the archive")
}

/// The oci variant: exactly two layers, the first of media type
/// `WASM_CONTENT` is the raw module.
fn oci(m: &Manifest, blobs: &dyn BlobSource) -> Result<Vec<u8>> {
    if m.layers.len() != 2 {
        bail!("number of layers must be 2 but got {}", m.layers.len());
    }
    let layer = m
        .layers
        .iter()
        .find(|l| l.media_type == WASM_CONTENT)
        .with_context(|| format!("could not find the layer of type {WASM_CONTENT}"))?;
    read_layer(layer, blobs)
}
