//! OCI images of the modules (`cargo xtask oci`): the layout is intact and
//! the same on every build, Istio's rules accept both variants and refuse
//! what Istio refuses, and a real registry round trip ends in a real Envoy:
//! the compat image extracted by Istio's rules, and the oci variant's blob
//! loaded straight from the registry through `vm_config.code.remote`.

use anyhow::{Context, Result};
use e2e::envoy::{Envoy, EnvoyOptions};
use e2e::oci::image::{gzip, plugin_tar, tar_of};
use e2e::oci::{self, istio, remote, sha256_hex, wasmplugin, Blob, BlobMap, BlobSource};
use e2e::oci::{Image, Variant};
use e2e::paths;
use e2e::registry::Registry;
use e2e::servers::{Collector, EchoUpstream, JwksServer};
use e2e::tokens::RsaIssuer;
use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

const MODULES: [&str; 4] = ["chain", "jwt-auth", "rate-limit", "audit-log"];
const TAG: &str = "0.1.0";

fn module_bytes(module: &str) -> Vec<u8> {
    let path = paths::wasm_module(module);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: build the filters first (cargo xtask build)",
            path.display()
        )
    })
}

/// Blobs read from an image layout directory, by digest.
struct LayoutDir(PathBuf);

impl BlobSource for LayoutDir {
    fn blob(&self, digest: &str) -> Result<Vec<u8>> {
        let hex = digest
            .strip_prefix("sha256:")
            .context("not a sha256 digest")?;
        let path = self.0.join("blobs/sha256").join(hex);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }
}

/// A blob file of the layout, checked against its descriptor.
fn checked_blob(layout: &Path, digest: &str, size: u64) -> Vec<u8> {
    let bytes = LayoutDir(layout.to_path_buf()).blob(digest).unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(&bytes)), digest);
    assert_eq!(bytes.len() as u64, size, "size of {digest}");
    bytes
}

/// Reads a written layout back from disk with oci-spec's types and checks
/// every digest and size; returns the manifest and its digest.
fn read_layout(layout: &Path) -> (ImageManifest, String) {
    let oci_layout: Value =
        serde_json::from_slice(&std::fs::read(layout.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(oci_layout, json!({"imageLayoutVersion": "1.0.0"}));
    let index = ImageIndex::from_file(layout.join("index.json")).unwrap();
    assert_eq!(index.manifests().len(), 1, "one manifest in the layout");
    let desc = &index.manifests()[0];
    assert_eq!(desc.media_type().to_string(), oci::MANIFEST);
    assert_eq!(
        desc.annotations().as_ref().unwrap()["org.opencontainers.image.ref.name"],
        TAG
    );
    let manifest_bytes = checked_blob(layout, desc.digest().as_ref(), desc.size());
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest.schema_version(), 2);
    assert_eq!(
        manifest.media_type().as_ref().unwrap().to_string(),
        oci::MANIFEST
    );
    let config = manifest.config();
    assert_eq!(config.media_type().to_string(), oci::IMAGE_CONFIG);
    let config_bytes = checked_blob(layout, config.digest().as_ref(), config.size());
    let config: ImageConfiguration = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(config.architecture().to_string(), "wasm");
    assert_eq!(config.rootfs().diff_ids().len(), manifest.layers().len());
    for layer in manifest.layers() {
        checked_blob(layout, layer.digest().as_ref(), layer.size());
    }
    // Nothing else in the layout: the blobs are the manifest, config and layers.
    let mut files: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    let mut named: Vec<String> = std::iter::once(desc.digest())
        .chain(std::iter::once(manifest.config().digest()))
        .chain(manifest.layers().iter().map(|l| l.digest()))
        .map(|d| d.as_ref().trim_start_matches("sha256:").to_string())
        .collect();
    named.sort();
    named.dedup();
    assert_eq!(files, named);
    (manifest, desc.digest().to_string())
}

#[test]
fn layouts_are_intact_and_the_same_on_every_build() {
    for module in MODULES {
        let wasm = module_bytes(module);
        for variant in Variant::ALL {
            let what = format!("{module} ({variant})");
            let image = Image::build(variant, wasm.clone()).unwrap();
            let again = Image::build(variant, wasm.clone()).unwrap();
            assert_eq!(image.manifest, again.manifest, "{what}: manifest differs");
            let tar = image.layout_tar(TAG).unwrap();
            assert_eq!(tar, again.layout_tar(TAG).unwrap(), "{what}: tar differs");

            let dir = tempfile::tempdir().unwrap();
            let layout = dir.path().join(module);
            image.write_layout(&layout, TAG).unwrap();
            let (manifest, digest) = read_layout(&layout);
            assert_eq!(digest, image.manifest_digest(), "{what}");
            let layers = manifest.layers();
            match variant {
                Variant::Compat => {
                    assert_eq!(layers.len(), 1, "{what}");
                    assert_eq!(layers[0].media_type().to_string(), oci::LAYER_TAR_GZIP);
                    assert_eq!(
                        manifest.annotations().as_ref().unwrap()[oci::VARIANT_ANNOTATION],
                        "compat"
                    );
                    // gzip header: mtime (bytes 4..8) is zero.
                    let gz = checked_blob(&layout, layers[0].digest().as_ref(), layers[0].size());
                    assert_eq!(&gz[4..8], &[0, 0, 0, 0], "{what}: gzip mtime");
                    let mut tar_bytes = Vec::new();
                    flate2::read::GzDecoder::new(gz.as_slice())
                        .read_to_end(&mut tar_bytes)
                        .unwrap();
                    let mut archive = tar::Archive::new(tar_bytes.as_slice());
                    let entries: Vec<_> = archive
                        .entries()
                        .unwrap()
                        .map(|e| {
                            let mut e = e.unwrap();
                            let h = e.header().clone();
                            let mut body = Vec::new();
                            e.read_to_end(&mut body).unwrap();
                            (h, body)
                        })
                        .collect();
                    assert_eq!(entries.len(), 1, "{what}: one file in the layer");
                    let (h, body) = &entries[0];
                    assert_eq!(h.path().unwrap().to_str(), Some("plugin.wasm"));
                    assert_eq!(
                        (h.mtime().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
                        (0, 0, 0)
                    );
                    assert_eq!(h.mode().unwrap(), 0o644);
                    assert!(body == &wasm, "{what}: plugin.wasm differs from the build");
                }
                Variant::Oci => {
                    let types: Vec<String> =
                        layers.iter().map(|l| l.media_type().to_string()).collect();
                    assert_eq!(types, [oci::WASM_CONFIG, oci::WASM_CONTENT], "{what}");
                    assert!(
                        manifest.annotations().is_none(),
                        "{what}: no variant annotation"
                    );
                    let raw = checked_blob(&layout, layers[1].digest().as_ref(), layers[1].size());
                    assert!(raw == wasm, "{what}: the wasm layer differs from the build");
                    assert_eq!(
                        layers[1].digest().as_ref(),
                        format!("sha256:{}", image.wasm_hex())
                    );
                }
            }
            // Istio's rules, reading the layout from disk.
            let extracted = istio::extract(
                &std::fs::read(layout.join("blobs/sha256").join(image.manifest_hex())).unwrap(),
                Some(&image.manifest_hex()),
                &LayoutDir(layout.clone()),
            )
            .unwrap();
            assert!(extracted == wasm, "{what}: Istio would extract other bytes");

            // The tar holds the same files, with nothing from the machine.
            let mut archive = tar::Archive::new(tar.as_slice());
            let mut paths_in_tar = Vec::new();
            for e in archive.entries().unwrap() {
                let mut e = e.unwrap();
                let h = e.header().clone();
                assert_eq!(
                    (h.mtime().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
                    (0, 0, 0)
                );
                assert_eq!(h.username().unwrap(), Some(""));
                let path = h.path().unwrap().to_string_lossy().into_owned();
                if h.entry_type().is_file() {
                    assert_eq!(h.mode().unwrap(), 0o644);
                    let mut body = Vec::new();
                    e.read_to_end(&mut body).unwrap();
                    assert_eq!(
                        body,
                        std::fs::read(layout.join(&path)).unwrap(),
                        "{what}: {path}"
                    );
                } else {
                    assert_eq!(h.mode().unwrap(), 0o755);
                }
                paths_in_tar.push(path);
            }
            assert!(paths_in_tar.contains(&"index.json".to_string()));
            assert!(paths_in_tar.contains(&"oci-layout".to_string()));
            assert_eq!(
                paths_in_tar
                    .iter()
                    .filter(|p| p.starts_with("blobs/sha256/") && p.len() > 13)
                    .count(),
                std::fs::read_dir(layout.join("blobs/sha256"))
                    .unwrap()
                    .count()
            );
        }
    }
}

/// A hand-made manifest over `layers` (an OCI image config first).
fn manifest_of(blobs: &mut BlobMap, layers: &[Blob]) -> Vec<u8> {
    let config = blobs.insert(b"{}".to_vec());
    let layers: Vec<Value> = layers
        .iter()
        .map(|b| {
            json!({"mediaType": b.media_type, "digest": blobs.insert(b.bytes.clone()), "size": b.bytes.len()})
        })
        .collect();
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": oci::MANIFEST,
        "config": {"mediaType": oci::IMAGE_CONFIG, "digest": config, "size": 2},
        "layers": layers,
    }))
    .unwrap()
}

fn refused(manifest: &[u8], blobs: &BlobMap, expected_hex: Option<&str>) -> String {
    match istio::extract(manifest, expected_hex, blobs) {
        Ok(_) => panic!(
            "Istio's rules accepted {}",
            String::from_utf8_lossy(manifest)
        ),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn istio_rules_accept_both_variants_and_refuse_the_rest() {
    let wasm = module_bytes("chain");
    // Both variants pass, from memory too.
    for variant in Variant::ALL {
        let image = Image::build(variant, wasm.clone()).unwrap();
        let mut blobs = BlobMap::default();
        for b in image.blobs() {
            blobs.insert(b.bytes);
        }
        let out = istio::extract(&image.manifest, Some(&image.manifest_hex()), &blobs).unwrap();
        assert!(out == wasm, "{variant}");

        // Wrong digest: WasmPlugin.spec.sha256 is not the manifest's.
        let e = refused(&image.manifest, &blobs, Some(&image.wasm_hex()));
        assert!(e.contains("does not match"), "{e}");

        // Wrong digest: a blob whose bytes are not those its descriptor names.
        let last = image.layers.last().unwrap().digest();
        let mut tampered = blobs.clone();
        let mut bytes = tampered.0[&last].clone();
        let n = bytes.len() - 1;
        bytes[n] ^= 1;
        tampered.0.insert(last.clone(), bytes);
        let e = refused(&image.manifest, &tampered, Some(&image.manifest_hex()));
        assert!(e.contains("content does not match"), "{e}");
    }

    let wasm_config = Blob::new(oci::WASM_CONFIG, br#"{"type":"envoy_proxy"}"#.to_vec());
    let content = Blob::new(oci::WASM_CONTENT, wasm.clone());
    let cases: Vec<(&str, Vec<Blob>, &str)> = vec![
        (
            "one raw wasm layer",
            vec![content.clone()],
            "number of layers must be 2 but got 1",
        ),
        (
            "the CNCF application/wasm artifact",
            vec![Blob::new(oci::CNCF_WASM, wasm.clone())],
            "number of layers must be 2 but got 1",
        ),
        (
            "three layers",
            vec![wasm_config.clone(), content.clone(), wasm_config.clone()],
            "number of layers must be 2 but got 3",
        ),
        (
            "two layers, no wasm content layer",
            vec![wasm_config.clone(), Blob::new(oci::CNCF_WASM, wasm.clone())],
            "could not find the layer of type",
        ),
        (
            "an uncompressed tar layer",
            vec![Blob::new(oci::LAYER_TAR, plugin_tar(&wasm).unwrap())],
            "invalid media type application/vnd.oci.image.layer.v1.tar",
        ),
        (
            "a tar+gzip layer without plugin.wasm",
            vec![Blob::new(
                oci::LAYER_TAR_GZIP,
                gzip(&tar_of(&[("module.wasm", &wasm)]).unwrap()).unwrap(),
            )],
            "plugin.wasm not found in the archive",
        ),
        (
            "a tar+gzip layer that is not gzipped",
            vec![Blob::new(oci::LAYER_TAR_GZIP, plugin_tar(&wasm).unwrap())],
            "failed to parse layer as tar.gz",
        ),
        (
            "plugin.wasm with bad magic bytes",
            vec![Blob::new(
                oci::LAYER_TAR_GZIP,
                gzip(&plugin_tar(b"\0wasm not a module").unwrap()).unwrap(),
            )],
            "no \\0asm header",
        ),
        (
            "oci variant with bad magic bytes",
            vec![
                wasm_config.clone(),
                Blob::new(oci::WASM_CONTENT, b"MZ\x90\0not wasm".to_vec()),
            ],
            "no \\0asm header",
        ),
        (
            "no layers",
            vec![],
            "number of layers must be greater than zero",
        ),
    ];
    for (what, layers, expected) in cases {
        let mut blobs = BlobMap::default();
        let manifest = manifest_of(&mut blobs, &layers);
        let e = refused(&manifest, &blobs, Some(&sha256_hex(&manifest)));
        assert!(e.contains(expected), "{what}: {e}");
    }

    // The compat file may sit in a directory; the first plugin.wasm wins.
    let mut blobs = BlobMap::default();
    let nested = gzip(&tar_of(&[("README", b"x"), ("dist/plugin.wasm", &wasm)]).unwrap()).unwrap();
    let manifest = manifest_of(
        &mut blobs,
        &[wasm_config, Blob::new(oci::LAYER_TAR_GZIP, nested)],
    );
    assert!(istio::extract(&manifest, None, &blobs).unwrap() == wasm);
}

#[test]
fn wasm_plugin_names_the_manifest_digest_and_the_example_config() {
    for module in MODULES {
        let image = Image::build(Variant::Compat, module_bytes(module)).unwrap();
        let url = format!("oci://127.0.0.1:5000/portcullis/{module}:{TAG}");
        let yaml = wasmplugin::wasm_plugin(module, &url, &image.manifest_hex()).unwrap();
        let doc: Value = serde_yaml_ng::from_str(&yaml).unwrap();
        assert_eq!(doc["apiVersion"], "extensions.istio.io/v1alpha1");
        assert_eq!(doc["kind"], "WasmPlugin");
        let spec = &doc["spec"];
        assert_eq!(spec["url"], url.as_str());
        assert_eq!(spec["sha256"], image.manifest_hex().as_str());
        assert_eq!(spec["pluginName"], wasmplugin::root_id(module).as_str());
        assert_eq!(spec["failStrategy"], "FAIL_CLOSE");
        let envoy_yaml =
            std::fs::read_to_string(paths::envoy_config(&format!("{module}.yaml"))).unwrap();
        let example =
            wasmplugin::example_config(&envoy_yaml, &wasmplugin::root_id(module)).unwrap();
        assert!(example.is_object() && example.as_object().is_some_and(|m| !m.is_empty()));
        assert_eq!(spec["pluginConfig"], example, "{module}");
    }
}

/// Pushes every module in both variants, pulls each back by digest, and
/// checks that Istio's rules extract the very module that was built.
async fn push_all(registry: &Registry) -> BTreeMap<(String, &'static str), remote::Pulled> {
    let mut out = BTreeMap::new();
    for module in MODULES {
        let wasm = module_bytes(module);
        for variant in Variant::ALL {
            let image = Image::build(variant, wasm.clone()).unwrap();
            let tagged = remote::reference(&format!(
                "{}/portcullis/{module}:{TAG}-{variant}",
                registry.host()
            ))
            .unwrap();
            let digest = remote::push(&image, &tagged).await.unwrap();
            assert_eq!(digest, image.manifest_digest());
            let by_digest =
                remote::reference(&format!("{}/portcullis/{module}@{digest}", registry.host()))
                    .unwrap();
            let pulled = remote::pull(&by_digest).await.unwrap();
            assert_eq!(pulled.manifest, image.manifest, "{module} {variant}");
            assert_eq!(pulled.digest, digest);
            // The tag resolves to the same single manifest.
            let by_tag = remote::pull(&tagged).await.unwrap();
            assert_eq!(by_tag.digest, digest);
            let extracted =
                istio::extract(&pulled.manifest, Some(&image.manifest_hex()), &pulled.blobs)
                    .unwrap();
            assert!(
                extracted == wasm,
                "{module} {variant}: pulled module differs"
            );
            out.insert((module.to_string(), variant.as_str()), pulled);
        }
    }
    out
}

/// What the chain needs around it: an upstream, a JWKS server, a collector.
struct Around {
    issuer: RsaIssuer,
    upstream: EchoUpstream,
    jwks: JwksServer,
    collector: Collector,
}

async fn around() -> Around {
    let issuer = RsaIssuer::new("https://issuer.demo.local", "k1").unwrap();
    let jwks = JwksServer::start(&issuer.jwks()).await.unwrap();
    Around {
        issuer,
        upstream: EchoUpstream::start().await.unwrap(),
        jwks,
        collector: Collector::start().await.unwrap(),
    }
}

/// `envoy/chain.yaml` with our helpers' ports and the module line replaced.
fn chain_options(a: &Around, code: &str) -> EnvoyOptions {
    let local = format!(
        "code: {{ local: {{ filename: {}/chain.wasm }} }}",
        paths::wasm_dir().display()
    );
    EnvoyOptions::new("chain.yaml")
        .upstream(a.upstream.port())
        .jwks(a.jwks.port())
        .collector(a.collector.port())
        .replace(&local, code)
}

async fn status(envoy: &Envoy, path: &str, token: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().get(envoy.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status().as_u16()
}

/// The module answers: no token is refused, a valid token passes.
async fn assert_chain_works(envoy: &Envoy, a: &Around) {
    assert_eq!(
        status(envoy, "/hello", None).await,
        401,
        "no token must be refused"
    );
    let token = a
        .issuer
        .token("alice", "demo-api", 300, json!({"scope": "read"}));
    assert_eq!(status(envoy, "/hello", Some(&token)).await, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn registry_round_trip_then_envoy_runs_the_extracted_compat_module() {
    let registry = Registry::start().await.unwrap();
    let pulled = push_all(&registry).await;
    let chain = &pulled[&("chain".to_string(), "compat")];
    let wasm = istio::extract(&chain.manifest, None, &chain.blobs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plugin.wasm");
    std::fs::write(&file, &wasm).unwrap();

    let a = around().await;
    let code = format!("code: {{ local: {{ filename: {} }} }}", file.display());
    let envoy = Envoy::start(chain_options(&a, &code)).await.unwrap();
    assert_chain_works(&envoy, &a).await;
}

/// `vm_config.code.remote` fetching the oci variant's wasm layer from the
/// registry's blob endpoint, checked against `sha256`.
fn remote_code(registry: &Registry, repo: &str, blob_hex: &str, sha256: &str) -> String {
    format!(
        "code: {{ remote: {{ http_uri: {{ uri: \"{}\", cluster: registry, timeout: 10s }}, \
         sha256: {sha256}, retry_policy: {{ num_retries: 0 }} }} }}",
        registry.url(&format!("/v2/{repo}/blobs/sha256:{blob_hex}"))
    )
}

fn registry_cluster(port: u16) -> String {
    format!(
        "  clusters:\n  - name: registry\n    connect_timeout: 1s\n    type: STATIC\n    \
         load_assignment:\n      cluster_name: registry\n      endpoints:\n      - lb_endpoints:\n        \
         - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn envoy_loads_the_oci_variant_from_the_registry_by_sha256() {
    let registry = Registry::start().await.unwrap();
    let image = Image::build(Variant::Oci, module_bytes("chain")).unwrap();
    let repo = "portcullis/chain";
    let reference = remote::reference(&format!("{}/{repo}:{TAG}-oci", registry.host())).unwrap();
    remote::push(&image, &reference).await.unwrap();
    let hex = image.wasm_hex();
    let a = around().await;

    let right = chain_options(&a, &remote_code(&registry, repo, &hex, &hex))
        .replace("  clusters:\n", &registry_cluster(registry.port));
    let envoy = Envoy::start(right).await.unwrap();
    assert_chain_works(&envoy, &a).await;
    let stats = envoy.stats().await.unwrap();
    assert_eq!(stats.get("wasm.remote_load_fetch_failures"), 0);
    assert!(
        stats.get("wasm.remote_load_fetch_successes") >= 1,
        "{:?}",
        stats.matching("remote_load")
    );
    drop(envoy);

    let wrong_sha = sha256_hex(b"not the module");
    let wrong = chain_options(&a, &remote_code(&registry, repo, &hex, &wrong_sha))
        .replace("  clusters:\n", &registry_cluster(registry.port));
    let envoy = Envoy::start(wrong).await.unwrap();
    let stats = envoy.stats().await.unwrap();
    assert_eq!(
        stats.get("wasm.remote_load_fetch_failures"),
        1,
        "{:?}",
        stats.matching("remote_load")
    );
    assert_eq!(stats.get("wasm.remote_load_fetch_successes"), 0);
    assert!(
        envoy.log().contains("Plugin chain failed to load"),
        "{}",
        envoy.log()
    );
    // The plugin is missing, not skipped: requests fail closed and never
    // reach the upstream, with or without a token.
    a.upstream.0.clear();
    assert_eq!(status(&envoy, "/hello", None).await, 503);
    let token = a
        .issuer
        .token("alice", "demo-api", 300, json!({"scope": "read"}));
    assert_eq!(status(&envoy, "/hello", Some(&token)).await, 503);
    assert!(
        a.upstream.received().is_empty(),
        "a request reached the upstream"
    );
}
