//! OCI image layout directories (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`): reading them, and building images into them.
//!
//! Everything written is deterministic — tar entries sorted with mtime 0
//! unless given, gzip headers without timestamps, JSON with sorted keys —
//! so the same inputs always give the same digests (test fixtures rely on
//! that, and so will reproducible `berth build`s).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Arch, ConfigBuilder, ImageConfigurationBuilder, Os, RootFsBuilder};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, DigestError, VerifyingReader};

mod tree;

pub use tree::{Content, TreeBuilder};

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// The annotation naming a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Errors reading or writing a layout.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// File system error on `path`.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A JSON document is malformed or could not be produced.
    #[error("JSON in {what}")]
    Json {
        /// Which document.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The directory is not an OCI layout (missing or wrong `oci-layout`).
    #[error("{0} is not an OCI image layout")]
    NotALayout(PathBuf),
    /// No `index.json` entry carries this ref name.
    #[error("no image tagged {0:?} in the layout")]
    NoSuchTag(String),
    /// A blob does not match its digest.
    #[error("blob {digest} in the layout is corrupt")]
    Corrupt {
        /// The blob.
        digest: Digest,
        /// Expected/actual.
        #[source]
        source: DigestError,
    },
    /// Building an image config failed.
    #[error("building the image config")]
    Config(#[source] oci_spec::OciSpecError),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayoutError {
    let path = path.to_path_buf();
    move |source| LayoutError::Io { op, path, source }
}

/// A content descriptor (the OCI JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the referenced content.
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Platform, for manifests inside an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations (sorted, for stable JSON).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An index entry's platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// GOARCH value: `amd64`, `arm64`, `arm`...
    pub architecture: String,
    /// GOOS value: `linux`.
    pub os: String,
    /// CPU variant: `v7`, `v8`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `linux/<arch>[/<variant>]`.
    pub fn linux(architecture: &str, variant: Option<&str>) -> Self {
        Platform {
            architecture: architecture.to_string(),
            os: "linux".to_string(),
            variant: variant.map(str::to_string),
        }
    }
}

/// An image index (also the shape of `index.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// Index media type (absent in some `index.json` files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The entries.
    pub manifests: Vec<Descriptor>,
}

/// An image manifest (OCI or Docker schema 2; same shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// Manifest media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layer blobs, base first.
    pub layers: Vec<Descriptor>,
}

impl Descriptor {
    /// A descriptor of `size` bytes of `media_type` content, without
    /// platform or annotations.
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            platform: None,
            annotations: BTreeMap::new(),
        }
    }
}

impl Manifest {
    /// A schema 2 manifest of `media_type` (OCI or Docker).
    pub fn new(media_type: &str, config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(media_type.to_string()),
            config,
            layers,
        }
    }
}

/// Which manifest flavour to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OCI media types.
    Oci,
    /// Docker schema 2 media types (what most registries still serve).
    Docker,
}

/// Layer compression for [`LayerWriter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// Plain tar.
    None,
    /// gzip (level 6, no timestamp in the header).
    Gzip,
    /// zstd (level 3).
    Zstd,
}

/// The runtime-relevant part of an image config.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec {
    /// GOARCH (default `amd64`).
    pub architecture: Option<String>,
    /// CPU variant.
    pub variant: Option<String>,
    /// `Env`.
    pub env: Vec<String>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// `Entrypoint`.
    pub entrypoint: Option<Vec<String>>,
    /// `User`.
    pub user: Option<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `ExposedPorts` (`"80/tcp"`).
    pub exposed_ports: Vec<String>,
    /// `Volumes`.
    pub volumes: Vec<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `StopSignal`.
    pub stop_signal: Option<String>,
}

/// An OCI layout directory.
#[derive(Debug, Clone)]
pub struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// Creates (or reuses) a layout at `dir`.
    pub fn create(dir: &Path) -> Result<Self, LayoutError> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err("creating", &blobs))?;
        let marker = dir.join("oci-layout");
        fs::write(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(io_err("writing", &marker))?;
        let layout = Layout {
            dir: dir.to_path_buf(),
        };
        if !dir.join("index.json").exists() {
            layout.write_index(&Index {
                schema_version: 2,
                media_type: Some(OCI_INDEX.to_string()),
                manifests: Vec::new(),
            })?;
        }
        Ok(layout)
    }

    /// Opens an existing layout, checking its `oci-layout` marker.
    pub fn open(dir: &Path) -> Result<Self, LayoutError> {
        let marker = dir.join("oci-layout");
        let text = fs::read(&marker).map_err(|_| LayoutError::NotALayout(dir.to_path_buf()))?;
        let v: Value = serde_json::from_slice(&text).map_err(|source| LayoutError::Json {
            what: marker.display().to_string(),
            source,
        })?;
        if v.get("imageLayoutVersion").and_then(Value::as_str) != Some("1.0.0") {
            return Err(LayoutError::NotALayout(dir.to_path_buf()));
        }
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    /// The layout directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where blob `d` lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs").join(d.algorithm()).join(d.hex())
    }

    /// Opens blob `d` for reading (unverified; wrap it in a
    /// [`VerifyingReader`] when the content matters).
    pub fn open_blob(&self, d: &Digest) -> Result<File, LayoutError> {
        let p = self.blob_path(d);
        File::open(&p).map_err(io_err("opening blob", &p))
    }

    /// Reads and verifies a (small) blob.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>, LayoutError> {
        let mut r = VerifyingReader::new(self.open_blob(d)?, d.clone());
        let mut out = Vec::new();
        r.read_to_end(&mut out)
            .map_err(io_err("reading blob", &self.blob_path(d)))?;
        r.finish().map_err(|source| LayoutError::Corrupt {
            digest: d.clone(),
            source,
        })?;
        Ok(out)
    }

    /// Stores `data` as a blob and returns its descriptor.
    pub fn write_blob(&self, media_type: &str, data: &[u8]) -> Result<Descriptor, LayoutError> {
        let digest = Digest::of_bytes(data);
        let p = self.blob_path(&digest);
        let tmp = p.with_extension("tmp");
        fs::write(&tmp, data).map_err(io_err("writing blob", &tmp))?;
        fs::rename(&tmp, &p).map_err(io_err("renaming blob", &p))?;
        Ok(Descriptor::new(media_type, digest, data.len() as u64))
    }

    /// Stores a JSON document with sorted keys (stable digests).
    pub fn write_json<T: Serialize>(
        &self,
        media_type: &str,
        doc: &T,
    ) -> Result<Descriptor, LayoutError> {
        let bytes = canonical_json(doc).map_err(|source| LayoutError::Json {
            what: media_type.to_string(),
            source,
        })?;
        self.write_blob(media_type, &bytes)
    }

    /// Parses the JSON blob `d`.
    pub fn read_json<T: for<'de> Deserialize<'de>>(&self, d: &Digest) -> Result<T, LayoutError> {
        let data = self.read_blob(d)?;
        serde_json::from_slice(&data).map_err(|source| LayoutError::Json {
            what: d.to_string(),
            source,
        })
    }

    /// The layout's `index.json`.
    pub fn index(&self) -> Result<Index, LayoutError> {
        let p = self.dir.join("index.json");
        let data = fs::read(&p).map_err(io_err("reading", &p))?;
        serde_json::from_slice(&data).map_err(|source| LayoutError::Json {
            what: p.display().to_string(),
            source,
        })
    }

    fn write_index(&self, index: &Index) -> Result<(), LayoutError> {
        let p = self.dir.join("index.json");
        let bytes = canonical_json(index).map_err(|source| LayoutError::Json {
            what: p.display().to_string(),
            source,
        })?;
        fs::write(&p, bytes).map_err(io_err("writing", &p))
    }

    /// Records `desc` in `index.json` under ref name `tag` (replacing an
    /// older entry with the same name).
    pub fn tag(&self, tag: &str, desc: &Descriptor) -> Result<(), LayoutError> {
        let mut index = self.index()?;
        index
            .manifests
            .retain(|d| d.annotations.get(REF_NAME).map(String::as_str) != Some(tag));
        let mut d = desc.clone();
        d.annotations.insert(REF_NAME.to_string(), tag.to_string());
        index.manifests.push(d);
        index.manifests.sort_by(|a, b| {
            a.annotations
                .get(REF_NAME)
                .cmp(&b.annotations.get(REF_NAME))
        });
        self.write_index(&index)
    }

    /// The descriptor tagged `tag` in `index.json`.
    pub fn resolve(&self, tag: &str) -> Result<Descriptor, LayoutError> {
        self.index()?
            .manifests
            .into_iter()
            .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
            .map(|mut d| {
                d.annotations.remove(REF_NAME);
                d
            })
            .ok_or_else(|| LayoutError::NoSuchTag(tag.to_string()))
    }

    /// Starts a layer streamed into the blob store.
    pub fn layer(&self, compression: LayerCompression) -> Result<LayerWriter, LayoutError> {
        LayerWriter::new(self, compression)
    }

    /// Writes the config blob for `spec` with these layer diff_ids.
    pub fn write_config(
        &self,
        spec: &ImageSpec,
        diff_ids: &[Digest],
        format: Format,
    ) -> Result<Descriptor, LayoutError> {
        let mut c = ConfigBuilder::default();
        if !spec.env.is_empty() {
            c = c.env(spec.env.clone());
        }
        if let Some(v) = &spec.cmd {
            c = c.cmd(v.clone());
        }
        if let Some(v) = &spec.entrypoint {
            c = c.entrypoint(v.clone());
        }
        if let Some(v) = &spec.user {
            c = c.user(v.clone());
        }
        if let Some(v) = &spec.working_dir {
            c = c.working_dir(v.clone());
        }
        if !spec.exposed_ports.is_empty() {
            c = c.exposed_ports(spec.exposed_ports.clone());
        }
        if !spec.volumes.is_empty() {
            c = c.volumes(spec.volumes.clone());
        }
        if !spec.labels.is_empty() {
            c = c.labels(
                spec.labels
                    .clone()
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            );
        }
        if let Some(v) = &spec.stop_signal {
            c = c.stop_signal(v.clone());
        }
        let rootfs = RootFsBuilder::default()
            .typ("layers")
            .diff_ids(diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>())
            .build()
            .map_err(LayoutError::Config)?;
        let arch = spec.architecture.as_deref().unwrap_or("amd64");
        let mut b = ImageConfigurationBuilder::default()
            .architecture(Arch::from(arch))
            .os(Os::Linux)
            .created("1970-01-01T00:00:00Z")
            .config(c.build().map_err(LayoutError::Config)?)
            .rootfs(rootfs);
        if let Some(v) = &spec.variant {
            b = b.variant(v.clone());
        }
        let cfg = b.build().map_err(LayoutError::Config)?;
        let media = match format {
            Format::Oci => OCI_CONFIG,
            Format::Docker => DOCKER_CONFIG,
        };
        self.write_json(media, &cfg)
    }

    /// Writes an image manifest for `config` and `layers`.
    pub fn write_manifest(
        &self,
        config: &Descriptor,
        layers: &[Descriptor],
        format: Format,
    ) -> Result<Descriptor, LayoutError> {
        let media = match format {
            Format::Oci => OCI_MANIFEST,
            Format::Docker => DOCKER_MANIFEST,
        };
        let m = Manifest::new(media, config.clone(), layers.to_vec());
        self.write_json(media, &m)
    }

    /// Writes an image index (manifest list) over `manifests` (each with
    /// its platform set).
    pub fn write_index_blob(
        &self,
        manifests: &[Descriptor],
        format: Format,
    ) -> Result<Descriptor, LayoutError> {
        let media = match format {
            Format::Oci => OCI_INDEX,
            Format::Docker => DOCKER_LIST,
        };
        let idx = Index {
            schema_version: 2,
            media_type: Some(media.to_string()),
            manifests: manifests.to_vec(),
        };
        self.write_json(media, &idx)
    }

    /// Convenience: config + manifest for finished layers; returns the
    /// manifest descriptor.
    pub fn write_image(
        &self,
        layers: &[BuiltLayer],
        spec: &ImageSpec,
        format: Format,
    ) -> Result<Descriptor, LayoutError> {
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let config = self.write_config(spec, &diff_ids, format)?;
        let descs: Vec<Descriptor> = layers
            .iter()
            .map(|l| {
                let mut d = l.descriptor.clone();
                if format == Format::Docker && l.compression == LayerCompression::Gzip {
                    d.media_type = "application/vnd.docker.image.rootfs.diff.tar.gzip".into();
                }
                d
            })
            .collect();
        self.write_manifest(&config, &descs, format)
    }
}

/// Serialises `doc` as compact JSON with object keys sorted.
pub fn canonical_json<T: Serialize>(doc: &T) -> Result<Vec<u8>, serde_json::Error> {
    fn sort(v: Value) -> Value {
        match v {
            Value::Object(m) => {
                let sorted: BTreeMap<String, Value> =
                    m.into_iter().map(|(k, v)| (k, sort(v))).collect();
                Value::Object(sorted.into_iter().collect())
            }
            Value::Array(a) => Value::Array(a.into_iter().map(sort).collect()),
            v => v,
        }
    }
    let v = sort(serde_json::to_value(doc)?);
    serde_json::to_vec(&v)
}

/// A finished layer blob.
#[derive(Debug, Clone)]
pub struct BuiltLayer {
    /// Descriptor of the (compressed) blob.
    pub descriptor: Descriptor,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// How it was compressed.
    pub compression: LayerCompression,
}

/// A writer that hashes what passes through.
struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

enum Compressor {
    None(HashWriter<BufWriter<File>>),
    Gzip(flate2::write::GzEncoder<HashWriter<BufWriter<File>>>),
    Zstd(zstd::stream::write::Encoder<'static, HashWriter<BufWriter<File>>>),
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::None(w) => w.write(buf),
            Compressor::Gzip(w) => w.write(buf),
            Compressor::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::None(w) => w.flush(),
            Compressor::Gzip(w) => w.flush(),
            Compressor::Zstd(w) => w.flush(),
        }
    }
}

impl Compressor {
    fn finish(self) -> io::Result<HashWriter<BufWriter<File>>> {
        match self {
            Compressor::None(w) => Ok(w),
            Compressor::Gzip(w) => w.finish(),
            Compressor::Zstd(w) => w.finish(),
        }
    }
}

/// Streams a tar layer straight into the layout's blob store, hashing the
/// tar (diff_id) and the compressed blob (digest) on the way. Entries are
/// written in call order — [`TreeBuilder`] sorts them
/// for determinism; hostile fixtures use the raw order on purpose.
pub struct LayerWriter {
    tar: tar::Builder<HashWriter<Compressor>>,
    tmp: PathBuf,
    guard: TmpGuard,
    layout: Layout,
    compression: LayerCompression,
}

impl LayerWriter {
    fn new(layout: &Layout, compression: LayerCompression) -> Result<Self, LayoutError> {
        let tmp = layout.dir.join("blobs").join(format!(
            "layer-{}-{}.tmp",
            std::process::id(),
            next_id()
        ));
        let f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        let hw = HashWriter {
            inner: BufWriter::with_capacity(1 << 20, f),
            hasher: Sha256::new(),
            bytes: 0,
        };
        let comp = match compression {
            LayerCompression::None => Compressor::None(hw),
            LayerCompression::Gzip => Compressor::Gzip(flate2::write::GzEncoder::new(
                hw,
                flate2::Compression::default(),
            )),
            LayerCompression::Zstd => Compressor::Zstd(
                zstd::stream::write::Encoder::new(hw, 3).map_err(io_err("starting zstd", &tmp))?,
            ),
        };
        let mut tar = tar::Builder::new(HashWriter {
            inner: comp,
            hasher: Sha256::new(),
            bytes: 0,
        });
        tar.mode(tar::HeaderMode::Complete);
        Ok(LayerWriter {
            tar,
            guard: TmpGuard(Some(tmp.clone())),
            tmp,
            layout: layout.clone(),
            compression,
        })
    }

    /// Appends an entry with `header` exactly as given (path bytes
    /// included: nothing is validated — hostile fixtures need that).
    pub fn append_raw(
        &mut self,
        header: &tar::Header,
        data: &mut dyn Read,
    ) -> Result<(), LayoutError> {
        let tmp = self.tmp.clone();
        self.tar
            .append(header, data)
            .map_err(io_err("writing layer", &tmp))
    }

    /// Appends PAX extended records for the next entry.
    pub fn append_pax(&mut self, records: &[(&str, &[u8])]) -> Result<(), LayoutError> {
        let tmp = self.tmp.clone();
        self.tar
            .append_pax_extensions(records.iter().copied())
            .map_err(io_err("writing layer", &tmp))
    }

    /// Appends raw bytes to the tar stream (e.g. garbage after the end marker).
    pub fn append_bytes(&mut self, bytes: &[u8]) -> Result<(), LayoutError> {
        let tmp = self.tmp.clone();
        self.tar
            .get_mut()
            .write_all(bytes)
            .map_err(io_err("writing layer", &tmp))
    }

    /// Finishes the tar, moves the blob into place, returns its descriptor.
    pub fn finish(self) -> Result<BuiltLayer, LayoutError> {
        let tmp = self.tmp;
        let mut guard = self.guard;
        let inner = self
            .tar
            .into_inner()
            .map_err(io_err("finishing tar", &tmp))?;
        let diff_id = Digest::from_sha256(inner.hasher);
        let mut blob = inner
            .inner
            .finish()
            .map_err(io_err("finishing compression", &tmp))?;
        blob.flush().map_err(io_err("flushing", &tmp))?;
        let digest = Digest::from_sha256(blob.hasher);
        let size = blob.bytes;
        let dest = self.layout.blob_path(&digest);
        fs::rename(&tmp, &dest).map_err(io_err("renaming layer", &dest))?;
        guard.0 = None;
        let media_type = match self.compression {
            LayerCompression::None => "application/vnd.oci.image.layer.v1.tar",
            LayerCompression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            LayerCompression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        };
        Ok(BuiltLayer {
            descriptor: Descriptor::new(media_type, digest, size),
            diff_id,
            compression: self.compression,
        })
    }
}

/// Removes an unfinished layer's temporary file (abandoned or failed builds).
struct TmpGuard(Option<PathBuf>);

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            // Best effort: the file may never have been created.
            let _ = fs::remove_file(p);
        }
    }
}

fn next_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests;
