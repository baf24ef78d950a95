//! Image archives: writing an OCI image layout as a tar (`save`), and
//! reading OCI archives and docker-archives (`docker save`'s
//! `manifest.json`) back (`load`).
//!
//! An archive is first extracted into a private work directory: regular
//! files and directories only, every path checked to stay inside it.
//! Symlinks and hard links (docker-archives link identical `layer.tar`s)
//! are not created; a link whose target is a file of the archive becomes a
//! hard link to that file, anything else is refused.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use serde_json::Value;

use crate::digest::Digest;
use crate::layout::{
    canonical_json, Descriptor, Index, Manifest, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, REF_NAME,
};
use crate::unpack::Compression;

/// The annotation containerd and Docker put the full image name in.
pub const IMAGE_NAME: &str = "io.containerd.image.name";

/// How many link hops are followed inside an archive.
const MAX_LINK_HOPS: usize = 8;

/// Errors reading or writing an archive.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path (inside the work dir or the archive).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The tar stream is broken.
    #[error("reading the archive")]
    Tar(#[source] io::Error),
    /// An entry that may not be in an image archive.
    #[error("archive entry {name:?}: {reason}")]
    Entry {
        /// The entry name.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Neither `manifest.json` nor an OCI `index.json` is present.
    #[error("not an image archive: no manifest.json (docker-archive) or oci-layout/index.json (OCI archive)")]
    Format,
    /// A JSON document of the archive is invalid.
    #[error("invalid {what}")]
    Json {
        /// The document.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A document refers to something the archive lacks or that is malformed.
    #[error("{0}")]
    Invalid(String),
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io { op, path, source }
}

/// One layer of an image read from an archive.
#[derive(Debug, Clone)]
pub struct ArchiveLayer {
    /// The blob file in the work dir.
    pub path: PathBuf,
    /// Digest of the blob as stored.
    pub digest: Digest,
    /// Blob size.
    pub size: u64,
    /// Media type (from the manifest, or from the blob's magic bytes).
    pub media_type: String,
    /// Digest of the uncompressed tar (from the config).
    pub diff_id: Digest,
}

/// An image read from an archive.
#[derive(Debug, Clone)]
pub struct ArchiveImage {
    /// References it was saved under (as written in the archive).
    pub names: Vec<String>,
    /// The image manifest (the archive's own, or made for a docker-archive).
    pub manifest: Vec<u8>,
    /// Its media type.
    pub manifest_media_type: String,
    /// The config JSON.
    pub config: Vec<u8>,
    /// The config digest (the image id).
    pub config_digest: Digest,
    /// Layers, base first.
    pub layers: Vec<ArchiveLayer>,
}

/// Normalises an archive entry name into a relative path; `None` for the root.
fn clean(name: &[u8]) -> Result<Option<PathBuf>, ArchiveError> {
    let text = String::from_utf8_lossy(name).into_owned();
    let bad = |reason| ArchiveError::Entry {
        name: text.clone(),
        reason,
    };
    if name.contains(&0) {
        return Err(bad("NUL byte in the name"));
    }
    let mut out = PathBuf::new();
    for c in Path::new(std::ffi::OsStr::new(&*text)).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err(bad("absolute path")),
            Component::ParentDir => return Err(bad("'..' component")),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Resolves a link `target` written in entry `from` (symlinks relative to
/// its directory, hard links relative to the archive root) lexically.
fn resolve_link(from: &Path, target: &[u8], symbolic: bool) -> Option<PathBuf> {
    let text = String::from_utf8_lossy(target).into_owned();
    let mut out = if symbolic && !text.starts_with('/') {
        from.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        PathBuf::new()
    };
    for c in Path::new(&text).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// Extracts the archive `r` into the empty directory `dir`.
pub fn extract_archive<R: Read>(r: R, dir: &Path) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(r);
    let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
    for entry in archive.entries().map_err(ArchiveError::Tar)? {
        let mut entry = entry.map_err(ArchiveError::Tar)?;
        let raw = entry.path_bytes().into_owned();
        let Some(rel) = clean(&raw)? else { continue };
        let dest = dir.join(&rel);
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Directory => {
                fs::create_dir_all(&dest).map_err(io_err("creating", &dest))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
                }
                let mut f = File::options()
                    .write(true)
                    .create_new(true)
                    .open(&dest)
                    .map_err(io_err("creating", &dest))?;
                io::copy(&mut entry, &mut f).map_err(io_err("writing", &dest))?;
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let resolved = resolve_link(&rel, &target, kind == tar::EntryType::Symlink)
                    .ok_or_else(|| ArchiveError::Entry {
                        name: rel.display().to_string(),
                        reason: "link points outside the archive",
                    })?;
                links.push((rel, resolved));
            }
            // PAX/GNU metadata entries are consumed by the tar reader;
            // devices and FIFOs have no business in an image archive.
            _ => {
                return Err(ArchiveError::Entry {
                    name: rel.display().to_string(),
                    reason: "not a file, directory or link",
                })
            }
        }
    }
    let map: HashMap<PathBuf, PathBuf> = links.iter().cloned().collect();
    for (from, target) in &links {
        let mut t = target.clone();
        for _ in 0..MAX_LINK_HOPS {
            match map.get(&t) {
                Some(next) => t = next.clone(),
                None => break,
            }
        }
        let src = dir.join(&t);
        let meta = fs::symlink_metadata(&src).ok();
        if !meta.is_some_and(|m| m.is_file()) {
            return Err(ArchiveError::Entry {
                name: from.display().to_string(),
                reason: "link target is not a file of the archive",
            });
        }
        let dest = dir.join(from);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        fs::hard_link(&src, &dest).map_err(io_err("linking", &dest))?;
    }
    Ok(())
}

/// `manifest.json` entry of a docker-archive.
#[derive(Debug, Deserialize)]
struct DockerEntry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ArchiveError> {
    let data = fs::read(path).map_err(io_err("reading", path))?;
    serde_json::from_slice(&data).map_err(|source| ArchiveError::Json {
        what: path.display().to_string(),
        source,
    })
}

/// sha256 of a file, streamed.
pub fn file_digest(path: &Path) -> Result<(Digest, u64), ArchiveError> {
    let f = File::open(path).map_err(io_err("opening", path))?;
    let mut w = crate::diff::HashWriter::new(io::sink());
    io::copy(&mut io::BufReader::new(f), &mut w).map_err(io_err("reading", path))?;
    let (_, d, n) = w.finish();
    Ok((d, n))
}

fn diff_ids(config: &[u8], what: &str) -> Result<Vec<Digest>, ArchiveError> {
    let v: Value = serde_json::from_slice(config).map_err(|source| ArchiveError::Json {
        what: what.to_string(),
        source,
    })?;
    let ids = v
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    ids.iter()
        .map(|d| {
            d.as_str()
                .and_then(|s| Digest::from_str(s).ok())
                .ok_or_else(|| ArchiveError::Invalid(format!("{what}: invalid diff_id {d}")))
        })
        .collect()
}

fn sniff_media_type(path: &Path) -> Result<&'static str, ArchiveError> {
    let mut head = [0u8; 8];
    let mut f = File::open(path).map_err(io_err("opening", path))?;
    let n = f.read(&mut head).map_err(io_err("reading", path))?;
    Ok(match Compression::sniff(&head[..n]) {
        Some(Compression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
        Some(Compression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
        _ => "application/vnd.oci.image.layer.v1.tar",
    })
}

/// A file of the work dir named by the archive (checked to stay inside).
fn member(dir: &Path, name: &str) -> Result<PathBuf, ArchiveError> {
    let rel = clean(name.as_bytes())?
        .ok_or_else(|| ArchiveError::Invalid(format!("empty file name {name:?}")))?;
    let p = dir.join(rel);
    if !fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()) {
        return Err(ArchiveError::Invalid(format!(
            "{name} is not in the archive"
        )));
    }
    Ok(p)
}

/// The images of an extracted archive: docker-archive when `manifest.json`
/// exists (Docker 25+ writes both; its `RepoTags` are the names), else OCI.
pub fn read_extracted(dir: &Path) -> Result<Vec<ArchiveImage>, ArchiveError> {
    if dir.join("manifest.json").is_file() {
        read_docker(dir)
    } else if dir.join("index.json").is_file() {
        read_oci(dir)
    } else {
        Err(ArchiveError::Format)
    }
}

fn read_docker(dir: &Path) -> Result<Vec<ArchiveImage>, ArchiveError> {
    let entries: Vec<DockerEntry> = read_json(&dir.join("manifest.json"))?;
    let mut out = Vec::new();
    for e in entries {
        let config_path = member(dir, &e.config)?;
        let config = fs::read(&config_path).map_err(io_err("reading", &config_path))?;
        let config_digest = Digest::of_bytes(&config);
        let ids = diff_ids(&config, &e.config)?;
        if ids.len() != e.layers.len() {
            return Err(ArchiveError::Invalid(format!(
                "{}: {} diff_ids for {} layers",
                e.config,
                ids.len(),
                e.layers.len()
            )));
        }
        let mut layers = Vec::new();
        for (name, diff_id) in e.layers.iter().zip(ids) {
            let path = member(dir, name)?;
            let (digest, size) = file_digest(&path)?;
            let media_type = sniff_media_type(&path)?.to_string();
            layers.push(ArchiveLayer {
                path,
                digest,
                size,
                media_type,
                diff_id,
            });
        }
        let manifest = Manifest::new(
            OCI_MANIFEST,
            Descriptor::new(OCI_CONFIG, config_digest.clone(), config.len() as u64),
            layers
                .iter()
                .map(|l| Descriptor::new(&l.media_type, l.digest.clone(), l.size))
                .collect(),
        );
        let manifest = canonical_json(&manifest).map_err(|source| ArchiveError::Json {
            what: "generated manifest".into(),
            source,
        })?;
        out.push(ArchiveImage {
            names: e.repo_tags.unwrap_or_default(),
            manifest,
            manifest_media_type: OCI_MANIFEST.to_string(),
            config,
            config_digest,
            layers,
        });
    }
    Ok(out)
}

fn blob(dir: &Path, d: &Digest) -> PathBuf {
    dir.join("blobs").join(d.algorithm()).join(d.hex())
}

/// Reads blob `d` and checks its digest.
fn read_blob(dir: &Path, d: &Digest) -> Result<Vec<u8>, ArchiveError> {
    let p = blob(dir, d);
    let data = fs::read(&p).map_err(io_err("reading", &p))?;
    if Digest::of_bytes(&data) != *d {
        return Err(ArchiveError::Invalid(format!(
            "blob {d} does not match its digest"
        )));
    }
    Ok(data)
}

fn read_oci(dir: &Path) -> Result<Vec<ArchiveImage>, ArchiveError> {
    let index: Index = read_json(&dir.join("index.json"))?;
    let mut out = Vec::new();
    for top in &index.manifests {
        let mut names = Vec::new();
        if let Some(n) = top.annotations.get(IMAGE_NAME) {
            names.push(n.clone());
        } else if let Some(n) = top.annotations.get(REF_NAME) {
            // A bare tag names no repository; only a full reference is a name.
            if n.contains('/') || n.contains(':') || n.contains('@') {
                names.push(n.clone());
            }
        }
        let mut desc = top.clone();
        if desc.media_type == OCI_INDEX || desc.media_type.ends_with("manifest.list.v2+json") {
            let child: Index =
                serde_json::from_slice(&read_blob(dir, &desc.digest)?).map_err(|source| {
                    ArchiveError::Json {
                        what: desc.digest.to_string(),
                        source,
                    }
                })?;
            desc = child
                .manifests
                .iter()
                .find(|m| {
                    m.platform
                        .as_ref()
                        .is_some_and(|p| p.os == "linux" && p.architecture == "amd64")
                })
                .or_else(|| child.manifests.first())
                .cloned()
                .ok_or_else(|| ArchiveError::Invalid(format!("index {} is empty", top.digest)))?;
        }
        let manifest_bytes = read_blob(dir, &desc.digest)?;
        let manifest: Manifest =
            serde_json::from_slice(&manifest_bytes).map_err(|source| ArchiveError::Json {
                what: desc.digest.to_string(),
                source,
            })?;
        let config = read_blob(dir, &manifest.config.digest)?;
        let ids = diff_ids(&config, &manifest.config.digest.to_string())?;
        if ids.len() != manifest.layers.len() {
            return Err(ArchiveError::Invalid(format!(
                "{}: {} diff_ids for {} layers",
                manifest.config.digest,
                ids.len(),
                manifest.layers.len()
            )));
        }
        let mut layers = Vec::new();
        for (l, diff_id) in manifest.layers.iter().zip(ids) {
            let path = blob(dir, &l.digest);
            if !path.is_file() {
                return Err(ArchiveError::Invalid(format!(
                    "layer {} is not in the archive",
                    l.digest
                )));
            }
            layers.push(ArchiveLayer {
                path,
                digest: l.digest.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
                diff_id,
            });
        }
        out.push(ArchiveImage {
            names,
            manifest: manifest_bytes,
            manifest_media_type: manifest
                .media_type
                .clone()
                .unwrap_or_else(|| desc.media_type.clone()),
            config_digest: manifest.config.digest.clone(),
            config,
            layers,
        });
    }
    Ok(out)
}

/// Writes `index.json` of the layout at `dir` listing `entries` (each a
/// manifest descriptor with its annotations).
pub fn write_index(dir: &Path, entries: Vec<Descriptor>) -> Result<(), ArchiveError> {
    let index = Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_string()),
        manifests: entries,
    };
    let bytes = canonical_json(&index).map_err(|source| ArchiveError::Json {
        what: "index.json".into(),
        source,
    })?;
    let p = dir.join("index.json");
    fs::write(&p, bytes).map_err(io_err("writing", &p))
}

/// The annotations of a saved image: the tag as `ref.name`, the full
/// reference as `io.containerd.image.name`.
pub fn name_annotations(full: &str, tag: Option<&str>) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    a.insert(IMAGE_NAME.to_string(), full.to_string());
    if let Some(t) = tag {
        a.insert(REF_NAME.to_string(), t.to_string());
    }
    a
}

/// Writes the OCI layout at `dir` (`oci-layout`, `index.json`, blobs) as a
/// tar to `out`, entries sorted, with fixed owner, mode and mtime.
pub fn write_oci_archive<W: Write>(dir: &Path, out: W) -> Result<W, ArchiveError> {
    let mut tar = tar::Builder::new(out);
    let add_dir = |tar: &mut tar::Builder<W>, name: &str| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(0);
        tar.append_data(&mut h, name, io::empty())
            .map_err(io_err("archiving", Path::new(name)))
    };
    let add_file = |tar: &mut tar::Builder<W>, rel: &str| -> Result<(), ArchiveError> {
        let p = dir.join(rel);
        let f = File::open(&p).map_err(io_err("opening", &p))?;
        let len = f.metadata().map_err(io_err("inspecting", &p))?.len();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(len);
        h.set_mtime(0);
        tar.append_data(&mut h, rel, f)
            .map_err(io_err("archiving", &p))
    };
    add_file(&mut tar, "oci-layout")?;
    add_file(&mut tar, "index.json")?;
    add_dir(&mut tar, "blobs/")?;
    let algs = dir.join("blobs");
    let mut alg_names: Vec<String> = fs::read_dir(&algs)
        .map_err(io_err("listing", &algs))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    alg_names.sort();
    for alg in alg_names {
        add_dir(&mut tar, &format!("blobs/{alg}/"))?;
        let d = algs.join(&alg);
        let mut names: Vec<String> = fs::read_dir(&d)
            .map_err(io_err("listing", &d))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| !n.ends_with(".tmp"))
            .collect();
        names.sort();
        for n in names {
            add_file(&mut tar, &format!("blobs/{alg}/{n}"))?;
        }
    }
    tar.into_inner()
        .map_err(io_err("finishing the archive of", dir))
}

#[cfg(test)]
#[path = "archive_tests.rs"]
mod tests;
