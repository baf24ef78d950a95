//! Manifest, index and config documents as served by registries (Docker
//! schema2 and OCI), parsed leniently, and linux/amd64 platform selection.
//!
//! Our own small serde types rather than `oci_client::manifest`: its platform
//! fields are closed enums, and real indexes carry `unknown/unknown`
//! attestation entries that must be skipped, not fail the whole pull.

use serde::Deserialize;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Every manifest type berth can pull, for the `Accept` header.
pub const ACCEPTED: &[&str] = &[
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST_LIST,
];

/// Errors interpreting registry documents.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not the JSON document expected.
    #[error("{what} {digest} is not valid JSON of the expected shape")]
    Json {
        /// manifest, index or config.
        what: &'static str,
        /// Digest of the document.
        digest: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A media type berth does not pull (schema1, artifacts...).
    #[error("manifest {digest} has unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        /// Digest of the document.
        digest: String,
        /// Its media type.
        media_type: String,
    },
    /// No entry of an index is for linux/amd64.
    #[error("index {digest} has no manifest for linux/amd64")]
    NoMatchingPlatform {
        /// Digest of the index.
        digest: String,
    },
    /// The config's diff_ids do not match the manifest's layers.
    #[error("image config {digest} lists {diff_ids} diff_ids for {layers} layers")]
    LayerCount {
        /// Config digest.
        digest: String,
        /// Number of diff_ids.
        diff_ids: usize,
        /// Number of layers in the manifest.
        layers: usize,
    },
}

/// A content descriptor.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    #[serde(default)]
    pub media_type: String,
    /// Digest of the referenced content.
    pub digest: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: i64,
    /// Target platform (index entries only).
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// CPU architecture (`amd64`, `arm64`, `unknown`...).
    #[serde(default)]
    pub architecture: String,
    /// Operating system.
    #[serde(default)]
    pub os: String,
    /// Architecture variant (`v2`, `v3`...).
    #[serde(default)]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema2: same shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// Declared media type, when present.
    #[serde(default)]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layers, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image index or manifest list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    /// Entries.
    pub manifests: Vec<Descriptor>,
}

/// The parts of an image config berth reads.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct ImageConfig {
    /// The runtime config (`User` lives here).
    #[serde(default, rename = "config")]
    pub config: Option<RuntimeConfig>,
    /// Layer diff ids.
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// `config` section of an image config.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct RuntimeConfig {
    /// `USER` of the image.
    #[serde(default, rename = "User")]
    pub user: Option<String>,
}

/// `rootfs` section of an image config.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct RootFs {
    /// Uncompressed layer digests, base first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// A fetched manifest document.
#[derive(Debug, Clone)]
pub enum Document {
    /// A single-platform image manifest.
    Manifest(ImageManifest),
    /// An index to resolve to a platform.
    Index(ImageIndex),
}

/// Parses a manifest or index by its media type (the Content-Type header,
/// else the document's own `mediaType`, else its shape).
pub fn parse_document(
    bytes: &[u8],
    content_type: &str,
    digest: &str,
) -> Result<Document, ManifestError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<String>,
        #[serde(default)]
        manifests: Option<serde_json::Value>,
        #[serde(default)]
        schema_version: Option<i64>,
    }
    let json_err = |what, source| ManifestError::Json {
        what,
        digest: digest.to_string(),
        source,
    };
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| json_err("manifest", e))?;
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let media_type = if ACCEPTED.contains(&ct) {
        ct.to_string()
    } else if let Some(mt) = probe.media_type {
        mt
    } else if probe.manifests.is_some() {
        OCI_INDEX.to_string()
    } else if probe.schema_version == Some(2) {
        OCI_MANIFEST.to_string()
    } else {
        ct.to_string()
    };
    match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => Ok(Document::Manifest(
            serde_json::from_slice(bytes).map_err(|e| json_err("manifest", e))?,
        )),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Ok(Document::Index(
            serde_json::from_slice(bytes).map_err(|e| json_err("index", e))?,
        )),
        _ => Err(ManifestError::UnsupportedMediaType {
            digest: digest.to_string(),
            media_type,
        }),
    }
}

/// Parses an image config.
pub fn parse_config(bytes: &[u8], digest: &str) -> Result<ImageConfig, ManifestError> {
    serde_json::from_slice(bytes).map_err(|source| ManifestError::Json {
        what: "config",
        digest: digest.to_string(),
        source,
    })
}

/// The x86-64 micro-architecture level this CPU supports (1 to 4), which is
/// what the `v2`/`v3`/`v4` amd64 variants require.
pub fn host_amd64_level() -> u8 {
    #[cfg(target_arch = "x86_64")]
    {
        let v2 = std::arch::is_x86_feature_detected!("sse4.2")
            && std::arch::is_x86_feature_detected!("popcnt")
            && std::arch::is_x86_feature_detected!("ssse3");
        let v3 = v2
            && std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("fma");
        let v4 = v3 && std::arch::is_x86_feature_detected!("avx512f");
        1 + u8::from(v2) + u8::from(v3) + u8::from(v4)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        1
    }
}

/// Picks the linux/amd64 manifest of an index: among linux/amd64 entries the
/// highest variant this CPU runs (no variant counts as `v1`); entries for
/// other platforms, attestations (`unknown/unknown`) and variants the CPU
/// cannot run are skipped. Ties keep index order.
pub fn select_linux_amd64<'a>(
    index: &'a ImageIndex,
    host_level: u8,
    index_digest: &str,
) -> Result<&'a Descriptor, ManifestError> {
    let mut best: Option<(u8, &Descriptor)> = None;
    for entry in &index.manifests {
        let Some(p) = &entry.platform else { continue };
        if p.os != "linux" || p.architecture != "amd64" {
            continue;
        }
        let level = match p.variant.as_deref() {
            None | Some("") | Some("v1") => 1,
            Some("v2") => 2,
            Some("v3") => 3,
            Some("v4") => 4,
            Some(_) => continue,
        };
        if level > host_level {
            continue;
        }
        if best.is_none_or(|(l, _)| level > l) {
            best = Some((level, entry));
        }
    }
    best.map(|(_, d)| d)
        .ok_or_else(|| ManifestError::NoMatchingPlatform {
            digest: index_digest.to_string(),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(arch: &str, os: &str, variant: Option<&str>, d: &str) -> serde_json::Value {
        let mut p = serde_json::json!({"architecture": arch, "os": os});
        if let Some(v) = variant {
            p["variant"] = v.into();
        }
        serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d, "size": 1, "platform": p})
    }

    fn index(entries: Vec<serde_json::Value>) -> ImageIndex {
        let v =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries});
        match parse_document(v.to_string().as_bytes(), "", "sha256:x").unwrap() {
            Document::Index(i) => i,
            Document::Manifest(_) => panic!("parsed as manifest"),
        }
    }

    #[test]
    fn picks_linux_amd64_with_best_runnable_variant() {
        let idx = index(vec![
            entry("arm64", "linux", Some("v8"), "arm"),
            entry("unknown", "unknown", None, "attestation"),
            entry("amd64", "windows", None, "win"),
            entry("amd64", "linux", None, "v1"),
            entry("amd64", "linux", Some("v3"), "v3"),
            entry("amd64", "linux", Some("v9"), "bogus"),
        ]);
        assert_eq!(select_linux_amd64(&idx, 1, "i").unwrap().digest, "v1");
        assert_eq!(select_linux_amd64(&idx, 2, "i").unwrap().digest, "v1");
        assert_eq!(select_linux_amd64(&idx, 3, "i").unwrap().digest, "v3");
        assert_eq!(select_linux_amd64(&idx, 4, "i").unwrap().digest, "v3");
        let only_arm = index(vec![entry("arm64", "linux", None, "arm")]);
        assert!(matches!(
            select_linux_amd64(&only_arm, 4, "i"),
            Err(ManifestError::NoMatchingPlatform { .. })
        ));
        assert!((1..=4).contains(&host_amd64_level()));
    }

    #[test]
    fn docker_and_oci_manifests_parse_and_schema1_is_refused() {
        let m = serde_json::json!({
            "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:c", "size": 3},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": "sha256:l", "size": 9}]
        });
        let doc = parse_document(m.to_string().as_bytes(), "", "d").unwrap();
        let Document::Manifest(m) = doc else { panic!() };
        assert_eq!(m.layers[0].size, 9);
        // The Content-Type header wins over a missing mediaType field.
        let oci =
            serde_json::json!({"schemaVersion": 2, "config": {"digest": "sha256:c"}, "layers": []});
        assert!(matches!(
            parse_document(oci.to_string().as_bytes(), OCI_MANIFEST, "d").unwrap(),
            Document::Manifest(_)
        ));
        let s1 = serde_json::json!({"schemaVersion": 1, "name": "x", "fsLayers": []});
        assert!(matches!(
            parse_document(
                s1.to_string().as_bytes(),
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
                "d"
            ),
            Err(ManifestError::UnsupportedMediaType { .. })
        ));
    }

    #[test]
    fn config_user_and_diff_ids() {
        let c = parse_config(
            br#"{"config":{"User":"1000:1000"},"rootfs":{"type":"layers","diff_ids":["sha256:a"]}}"#,
            "d",
        )
        .unwrap();
        assert_eq!(c.config.unwrap().user.as_deref(), Some("1000:1000"));
        assert_eq!(c.rootfs.unwrap().diff_ids, vec!["sha256:a"]);
    }
}
