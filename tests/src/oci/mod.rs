//! OCI images of our modules, built without Docker, in the two layouts
//! Istio's image fetcher accepts (see [`istio`]), byte for byte the same on
//! every build: what `cargo xtask oci` writes and the tests check.

pub mod image;
pub mod istio;
pub mod remote;
pub mod wasmplugin;

pub use image::{sha256_hex, Blob, Image, Variant};
pub use istio::{BlobMap, BlobSource};

/// The OCI image manifest (what we push: a single manifest, never an index).
pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI image index (only as the image layout's `index.json`).
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The OCI image configuration.
pub const IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// A gzipped tar layer: the compat variant's last layer holds `plugin.wasm`.
pub const LAYER_TAR_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// An uncompressed tar layer: Istio refuses it (tests only).
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker's gzipped layer, accepted by Istio inside a Docker manifest only.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker's image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// The oci variant's first layer: the module's metadata (solo-io wasm image spec).
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
/// The oci variant's second layer: the raw module.
pub const WASM_CONTENT: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
/// The CNCF wasm artifact layer: Istio refuses it (tests only).
pub const CNCF_WASM: &str = "application/wasm";
/// The manifest annotation that marks a compat image.
pub const VARIANT_ANNOTATION: &str = "module.wasm.image/variant";
/// The file the compat layer must hold.
pub const PLUGIN_WASM: &str = "plugin.wasm";
