//! Push an image to a registry and pull it back, with oci-client. Plain
//! HTTP is used for loopback registries only; any other host gets HTTPS
//! (rustls), with anonymous access.

use super::image::{sha256_hex, Image};
use super::istio::BlobMap;
use super::MANIFEST;
use anyhow::{bail, Context, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde::Deserialize;

/// An image pulled back by digest: the manifest bytes and every blob it names.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub manifest: Vec<u8>,
    /// `sha256:<hex>` of `manifest`.
    pub digest: String,
    pub blobs: BlobMap,
}

fn is_loopback(registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            registry
        }
    });
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

fn client(reference: &Reference) -> Client {
    let registry = reference.registry().to_string();
    let protocol = if is_loopback(&registry) {
        ClientProtocol::HttpsExcept(vec![registry])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        ..Default::default()
    })
}

/// Parses `HOST[:PORT]/REPO[:TAG|@DIGEST]`.
pub fn reference(text: &str) -> Result<Reference> {
    text.parse::<Reference>()
        .with_context(|| format!("`{text}` is not an image reference (HOST:PORT/REPO:TAG)"))
}

/// Pushes the config, the layers and then the manifest itself (never an
/// index) under `reference`'s tag. Returns the manifest digest.
pub async fn push(image: &Image, reference: &Reference) -> Result<String> {
    let client = client(reference);
    client
        .store_auth_if_needed(reference.resolve_registry(), &RegistryAuth::Anonymous)
        .await;
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        client
            .push_blob(reference, blob.bytes.clone(), &blob.digest())
            .await
            .with_context(|| format!("pushing blob {} to {}", blob.digest(), reference.whole()))?;
    }
    client
        .push_manifest_raw(
            reference,
            image.manifest.clone(),
            http::HeaderValue::from_static(MANIFEST),
        )
        .await
        .with_context(|| format!("pushing the manifest to {}", reference.whole()))?;
    Ok(image.manifest_digest())
}

#[derive(Deserialize)]
struct Descriptors {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
}

/// Pulls the manifest at `reference` (a tag or `@sha256:` digest) and every
/// blob it names; oci-client checks each blob against its digest.
pub async fn pull(reference: &Reference) -> Result<Pulled> {
    let client = client(reference);
    let auth = RegistryAuth::Anonymous;
    let (manifest, digest) = client
        .pull_manifest_raw(reference, &auth, &[MANIFEST])
        .await
        .with_context(|| format!("pulling the manifest of {}", reference.whole()))?;
    let manifest = manifest.to_vec();
    let actual = format!("sha256:{}", sha256_hex(&manifest));
    if digest != actual {
        bail!("the registry says the manifest is {digest}, its bytes are {actual}");
    }
    let d: Descriptors = serde_json::from_slice(&manifest).context("parsing the manifest")?;
    let mut blobs = BlobMap::default();
    for desc in std::iter::once(&d.config).chain(&d.layers) {
        let mut bytes = Vec::new();
        client
            .pull_blob(reference, desc.digest.as_str(), &mut bytes)
            .await
            .with_context(|| format!("pulling blob {}", desc.digest))?;
        blobs.0.insert(desc.digest.clone(), bytes);
    }
    Ok(Pulled {
        manifest,
        digest,
        blobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example.com:5000"));
        assert!(!is_loopback("127.0.0.1.example.com"));
    }
}
