//! Pull orchestration: resolve a reference on the configured endpoints,
//! fetch manifest and config, and stream every missing layer straight into
//! the unpacker, several at a time.
//!
//! Layer blobs are never stored: each is decompressed and verified (blob
//! digest and diff_id) while it is written into a fresh snapshot directory,
//! which the [`SnapshotSink`] commits under its chain id. Concurrent pulls
//! that need the same layer share one download: a per-chain-id lock makes
//! the second wait, and it then finds the snapshot committed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::{Mutex, Semaphore};
use tokio_util::io::{StreamReader, SyncIoBridge};
use tracing::{debug, info, warn};

use crate::digest::Digest;
use crate::hosts::{self, Endpoint, HostsError};
use crate::manifest::{self, Document, ManifestError};
use crate::progress::{LayerReporter, LayerStatus, Observer, Phase, ProgressEvent};
use crate::reference::Reference;
use crate::registry::{Credentials, RegistryClient, RegistryError};
use crate::unpack::{unpack_layer, LayerSource, UnpackError, UnpackLimits, UnpackStats};

/// Error type the store behind a [`SnapshotSink`] reports.
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

/// Where pulled content goes: the daemon's content and snapshot stores.
pub trait SnapshotSink: Send + Sync + 'static {
    /// True when a committed snapshot exists for `chain_id`.
    fn has_snapshot(&self, chain_id: &str) -> Result<bool, SinkError>;
    /// Creates an empty temporary snapshot directory; the layer is unpacked
    /// into `<returned>/fs`.
    fn begin_snapshot(&self) -> Result<PathBuf, SinkError>;
    /// Makes the temporary snapshot `tmp` the snapshot of `chain_id`.
    fn commit_snapshot(
        &self,
        tmp: &Path,
        chain_id: &str,
        parent: Option<&str>,
        stats: &UnpackStats,
    ) -> Result<(), SinkError>;
    /// Discards a temporary snapshot after a failure.
    fn abort_snapshot(&self, tmp: &Path);
    /// Stores a manifest, index or config by digest.
    fn put_content(&self, digest: &str, media_type: &str, data: &[u8]) -> Result<(), SinkError>;
}

/// Errors of a pull.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The hosts.toml for the registry is unusable.
    #[error("registry configuration for {host}")]
    Hosts {
        /// The registry host.
        host: String,
        /// The cause.
        #[source]
        source: HostsError,
    },
    /// No configured endpoint may serve this request.
    #[error("no endpoint of {host} has the {capability} capability")]
    NoEndpoint {
        /// The registry host.
        host: String,
        /// The capability needed.
        capability: &'static str,
    },
    /// The manifest is not on any endpoint (all answered 404).
    #[error("image {reference} not found on any endpoint")]
    NotFound {
        /// The reference.
        reference: String,
        /// The last endpoint's answer.
        #[source]
        source: RegistryError,
    },
    /// Every endpoint failed; the last error is kept.
    #[error("pulling {reference}: every endpoint failed ({tried} tried)")]
    Registry {
        /// The reference.
        reference: String,
        /// How many endpoints were tried.
        tried: usize,
        /// The last error.
        #[source]
        source: RegistryError,
    },
    /// Fetching the config or a layer from the resolving endpoint failed.
    #[error("fetching {digest} of {reference}")]
    Fetch {
        /// The reference.
        reference: String,
        /// The blob digest.
        digest: String,
        /// The cause.
        #[source]
        source: RegistryError,
    },
    /// Manifest, index or config could not be interpreted.
    #[error("image {reference}")]
    Manifest {
        /// The reference.
        reference: String,
        /// The cause.
        #[source]
        source: ManifestError,
    },
    /// A digest in a manifest or config is malformed.
    #[error("image {reference}: invalid digest {digest:?}")]
    BadDigest {
        /// The reference.
        reference: String,
        /// The digest text.
        digest: String,
    },
    /// Unpacking a layer failed (digest mismatch, hostile entry, limits...).
    #[error("unpacking layer {digest} of {reference}")]
    Unpack {
        /// The reference.
        reference: String,
        /// The layer digest.
        digest: String,
        /// The cause.
        #[source]
        source: UnpackError,
    },
    /// The store refused an operation.
    #[error("storing {what} of {reference}")]
    Store {
        /// The reference.
        reference: String,
        /// What was being stored.
        what: String,
        /// The cause.
        #[source]
        source: SinkError,
    },
    /// An unpack task panicked or was cancelled.
    #[error("unpack task for layer {digest} did not complete")]
    Task {
        /// The layer digest.
        digest: String,
        /// The join error.
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Settings of the puller.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// containerd-style hosts directory (`<dir>/<host>/hosts.toml`).
    pub hosts_dir: PathBuf,
    /// Layers downloaded at once, across all pulls.
    pub max_concurrent_downloads: usize,
    /// Bounds for every unpacked layer.
    pub unpack_limits: UnpackLimits,
}

/// What a pull produced; the caller records the image from it.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The normalised reference pulled (its name, tag and digest are what
    /// the image is recorded under, whatever endpoint served it).
    pub reference: Reference,
    /// Digest of the platform manifest.
    pub manifest_digest: String,
    /// Digest of the index the manifest was selected from, if any. The repo
    /// digest of the image is this one when present (what `name@digest` resolves).
    pub index_digest: Option<String>,
    /// Digest of the config: the image id.
    pub config_digest: String,
    /// The config JSON.
    pub config: Bytes,
    /// Chain ids of the layers, base first.
    pub chain_ids: Vec<String>,
    /// Manifest layer sizes plus config size (compressed size, as the CRI reports).
    pub size: u64,
    /// `USER` from the config, if set.
    pub user: Option<String>,
    /// The endpoint that served the manifest (for logs).
    pub served_by: String,
    /// Layers downloaded by this pull (others were present or shared).
    pub layers_downloaded: usize,
}

/// Pulls images; one per daemon, shared by all requests.
pub struct Puller {
    opts: PullOptions,
    downloads: Arc<Semaphore>,
    layer_locks: StdMutex<HashMap<String, Arc<Mutex<()>>>>,
    total_downloads: AtomicU64,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// Everything a layer task needs, cloned into it.
struct LayerJob {
    reference: String,
    digest: String,
    diff_id: String,
    media_type: String,
    size: Option<u64>,
    chain_id: String,
    parent: Option<String>,
    progress: Option<Observer>,
}

impl Puller {
    /// Creates a puller.
    pub fn new(opts: PullOptions) -> Self {
        let permits = opts.max_concurrent_downloads.max(1);
        Puller {
            opts,
            downloads: Arc::new(Semaphore::new(permits)),
            layer_locks: StdMutex::new(HashMap::new()),
            total_downloads: AtomicU64::new(0),
        }
    }

    /// Number of layer downloads started since creation (for tests and metrics).
    pub fn layer_downloads(&self) -> u64 {
        self.total_downloads.load(Ordering::Relaxed)
    }

    /// The options the puller was built with (hosts dir, limits).
    pub fn options(&self) -> &PullOptions {
        &self.opts
    }

    /// Pulls `reference`: manifest and config into the sink's content store,
    /// missing layers into snapshots. Returns what the image row needs.
    pub async fn pull(
        &self,
        reference: &Reference,
        credentials: &Credentials,
        sink: Arc<dyn SnapshotSink>,
    ) -> Result<PulledImage, PullError> {
        self.pull_observed(reference, credentials, sink, None).await
    }

    /// [`Puller::pull`], reporting per-layer progress to `progress`: the
    /// layer list once the manifest is resolved, then throttled byte counts
    /// and phase changes. Without an observer nothing extra is done.
    pub async fn pull_observed(
        &self,
        reference: &Reference,
        credentials: &Credentials,
        sink: Arc<dyn SnapshotSink>,
        progress: Option<Observer>,
    ) -> Result<PulledImage, PullError> {
        let rstr = reference.to_string();
        let (sources, doc) = self.resolve(reference, credentials).await?;
        let mdoc = |source| PullError::Manifest {
            reference: rstr.clone(),
            source,
        };
        let fetch_err = |digest: &str, source| PullError::Fetch {
            reference: rstr.clone(),
            digest: digest.to_string(),
            source,
        };
        let store_err = |what: String, source| PullError::Store {
            reference: rstr.clone(),
            what,
            source,
        };

        let parsed =
            manifest::parse_document(&doc.bytes, &doc.content_type, &doc.digest).map_err(mdoc)?;
        let (index_digest, manifest_doc, image_manifest) = match parsed {
            Document::Manifest(m) => (None, doc, m),
            Document::Index(index) => {
                let entry =
                    manifest::select_linux_amd64(&index, manifest::host_amd64_level(), &doc.digest)
                        .map_err(mdoc)?;
                let child = sources
                    .manifest(&entry.digest)
                    .await
                    .map_err(|e| fetch_err(&entry.digest, e))?;
                sink.put_content(&doc.digest, &doc.content_type, &doc.bytes)
                    .map_err(|e| store_err(format!("index {}", doc.digest), e))?;
                match manifest::parse_document(&child.bytes, &child.content_type, &child.digest)
                    .map_err(mdoc)?
                {
                    Document::Manifest(m) => (Some(doc.digest), child, m),
                    Document::Index(_) => {
                        return Err(mdoc(ManifestError::UnsupportedMediaType {
                            digest: child.digest,
                            media_type: "nested index".into(),
                        }))
                    }
                }
            }
        };

        let config_digest = image_manifest.config.digest.clone();
        let config = sources
            .blob_bytes(&config_digest)
            .await
            .map_err(|e| fetch_err(&config_digest, e))?;
        let image_config = manifest::parse_config(&config, &config_digest).map_err(mdoc)?;
        let diff_ids = image_config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
        if diff_ids.len() != image_manifest.layers.len() {
            return Err(mdoc(ManifestError::LayerCount {
                digest: config_digest,
                diff_ids: diff_ids.len(),
                layers: image_manifest.layers.len(),
            }));
        }
        sink.put_content(
            &manifest_doc.digest,
            &manifest_doc.content_type,
            &manifest_doc.bytes,
        )
        .map_err(|e| store_err(format!("manifest {}", manifest_doc.digest), e))?;
        let config_media_type = if image_manifest.config.media_type.is_empty() {
            "application/vnd.oci.image.config.v1+json"
        } else {
            image_manifest.config.media_type.as_str()
        };
        sink.put_content(&config_digest, config_media_type, &config)
            .map_err(|e| store_err(format!("config {config_digest}"), e))?;

        let chain_ids = chain_ids(&diff_ids);
        if let Some(obs) = &progress {
            let mut list = Vec::with_capacity(chain_ids.len());
            for (layer, chain_id) in image_manifest.layers.iter().zip(&chain_ids) {
                let present = sink
                    .has_snapshot(chain_id)
                    .map_err(|e| store_err(format!("snapshot {chain_id}"), e))?;
                list.push(LayerStatus {
                    digest: layer.digest.clone(),
                    total: u64::try_from(layer.size).unwrap_or(0),
                    current: 0,
                    phase: if present {
                        Phase::Exists
                    } else {
                        Phase::Waiting
                    },
                });
            }
            obs(ProgressEvent::Layers(list));
        }
        let sources = Arc::new(sources);
        let mut tasks = Vec::new();
        for (i, layer) in image_manifest.layers.iter().enumerate() {
            let job = LayerJob {
                reference: rstr.clone(),
                digest: layer.digest.clone(),
                diff_id: diff_ids[i].clone(),
                media_type: layer.media_type.clone(),
                size: u64::try_from(layer.size).ok().filter(|s| *s > 0),
                chain_id: chain_ids[i].clone(),
                parent: i.checked_sub(1).map(|p| chain_ids[p].clone()),
                progress: progress.clone(),
            };
            tasks.push(self.layer(job, sources.clone(), sink.clone()));
        }
        let results = futures_util::future::join_all(tasks).await;
        let mut layers_downloaded = 0;
        for r in results {
            if r? {
                layers_downloaded += 1;
            }
        }
        let size = image_manifest
            .layers
            .iter()
            .map(|l| u64::try_from(l.size).unwrap_or(0))
            .sum::<u64>()
            + config.len() as u64;
        let user = image_config
            .config
            .and_then(|c| c.user)
            .filter(|u| !u.is_empty());
        info!(reference = %rstr, image_id = %config_digest, served_by = %sources.first_url(), layers_downloaded, "pulled");
        Ok(PulledImage {
            reference: reference.clone(),
            manifest_digest: manifest_doc.digest,
            index_digest,
            config_digest,
            config,
            chain_ids,
            size,
            user,
            served_by: sources.first_url(),
            layers_downloaded,
        })
    }

    /// Finds the first endpoint that serves the manifest, in hosts.toml order,
    /// and returns every usable endpoint with that one first: content is
    /// fetched from it, falling back to the others if it fails.
    async fn resolve(
        &self,
        reference: &Reference,
        credentials: &Credentials,
    ) -> Result<(Sources, crate::registry::FetchedDocument), PullError> {
        let host = reference.domain().to_string();
        let endpoints = hosts::endpoints_for(&self.opts.hosts_dir, &host).map_err(|source| {
            PullError::Hosts {
                host: host.clone(),
                source,
            }
        })?;
        let by_digest = reference.digest().is_some();
        let usable: Vec<&Endpoint> = endpoints
            .iter()
            .filter(|e| e.capabilities.pull && (by_digest || e.capabilities.resolve))
            .collect();
        if usable.is_empty() {
            return Err(PullError::NoEndpoint {
                host,
                capability: if by_digest { "pull" } else { "resolve" },
            });
        }
        let mut last: Option<RegistryError> = None;
        let mut all_not_found = true;
        let mut clients = Vec::new();
        for ep in &usable {
            match RegistryClient::new(ep, reference.path(), credentials.clone()) {
                Ok(c) => clients.push(c),
                Err(e) => {
                    warn!(reference = %reference, endpoint = %ep.base_url(), error = %e, "endpoint unusable, skipping it");
                    all_not_found = false;
                    last = Some(e);
                }
            }
        }
        for i in 0..clients.len() {
            match clients[i].fetch_manifest(reference.fetch_reference()).await {
                Ok(doc) => {
                    let first = clients.remove(i);
                    clients.insert(0, first);
                    return Ok((Sources { clients }, doc));
                }
                Err(e) => {
                    warn!(reference = %reference, endpoint = %clients[i].endpoint().base_url(), error = %e, "endpoint failed, trying the next one");
                    all_not_found &= e.is_not_found();
                    last = Some(e);
                }
            }
        }
        let tried = usable.len();
        let source = last.unwrap_or(RegistryError::NotFound {
            url: reference.to_string(),
        });
        Err(if all_not_found {
            PullError::NotFound {
                reference: reference.to_string(),
                source,
            }
        } else {
            PullError::Registry {
                reference: reference.to_string(),
                tried,
                source,
            }
        })
    }

    /// Ensures the snapshot of one layer exists; true when this call downloaded it.
    async fn layer(
        &self,
        job: LayerJob,
        sources: Arc<Sources>,
        sink: Arc<dyn SnapshotSink>,
    ) -> Result<bool, PullError> {
        let lock = {
            let mut locks = self
                .layer_locks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            locks.entry(job.chain_id.clone()).or_default().clone()
        };
        let guard = lock.lock().await;
        let result = self.layer_locked(&job, &sources, &sink).await;
        drop(guard);
        // Forget the lock once nobody else waits on it.
        let mut locks = self
            .layer_locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if Arc::strong_count(&lock) == 2 {
            locks.remove(&job.chain_id);
        }
        result
    }

    async fn layer_locked(
        &self,
        job: &LayerJob,
        sources: &Sources,
        sink: &Arc<dyn SnapshotSink>,
    ) -> Result<bool, PullError> {
        let store_err = |what: String, source| PullError::Store {
            reference: job.reference.clone(),
            what,
            source,
        };
        if sink
            .has_snapshot(&job.chain_id)
            .map_err(|e| store_err(format!("snapshot {}", job.chain_id), e))?
        {
            debug!(layer = %job.digest, chain_id = %job.chain_id, "layer present, not fetched");
            if let Some(obs) = &job.progress {
                LayerReporter::new(obs.clone(), &job.digest, job.size.unwrap_or(0))
                    .update(0, Phase::Exists);
            }
            return Ok(false);
        }
        let bad_digest = |d: &str| PullError::BadDigest {
            reference: job.reference.clone(),
            digest: d.to_string(),
        };
        let digest = Digest::from_str(&job.digest).map_err(|_| bad_digest(&job.digest))?;
        let diff_id = Digest::from_str(&job.diff_id).map_err(|_| bad_digest(&job.diff_id))?;
        let _permit =
            self.downloads.acquire().await.map_err(|_| {
                store_err("download slot".into(), "download semaphore closed".into())
            })?;
        self.total_downloads.fetch_add(1, Ordering::Relaxed);
        let stream = sources
            .blob_stream(&job.digest)
            .await
            .map_err(|source| PullError::Fetch {
                reference: job.reference.clone(),
                digest: job.digest.clone(),
                source,
            })?;
        let tmp = sink
            .begin_snapshot()
            .map_err(|e| store_err("temporary snapshot".into(), e))?;
        let stream: BlobStream = match &job.progress {
            None => Box::pin(stream),
            Some(obs) => counted(
                stream,
                LayerReporter::new(obs.clone(), &job.digest, job.size.unwrap_or(0)),
                job.size,
            ),
        };
        let reader = SyncIoBridge::new(StreamReader::new(stream));
        let limits = self.opts.unpack_limits;
        let media_type = job.media_type.clone();
        let size = job.size;
        let fs = tmp.join("fs");
        let unpacked = tokio::task::spawn_blocking(move || {
            let src = LayerSource {
                digest: &digest,
                diff_id: &diff_id,
                media_type: &media_type,
                size,
            };
            unpack_layer(reader, &src, &fs, &limits)
        })
        .await;
        let stats = match unpacked {
            Ok(Ok(stats)) => stats,
            Ok(Err(source)) => {
                sink.abort_snapshot(&tmp);
                return Err(PullError::Unpack {
                    reference: job.reference.clone(),
                    digest: job.digest.clone(),
                    source,
                });
            }
            Err(source) => {
                sink.abort_snapshot(&tmp);
                return Err(PullError::Task {
                    digest: job.digest.clone(),
                    source,
                });
            }
        };
        if let Err(e) = sink.commit_snapshot(&tmp, &job.chain_id, job.parent.as_deref(), &stats) {
            sink.abort_snapshot(&tmp);
            return Err(store_err(format!("snapshot {}", job.chain_id), e));
        }
        debug!(layer = %job.digest, chain_id = %job.chain_id, bytes = stats.unpacked_bytes, "layer unpacked");
        if let Some(obs) = &job.progress {
            LayerReporter::new(obs.clone(), &job.digest, job.size.unwrap_or(0))
                .update(stats.compressed_bytes, Phase::Complete);
        }
        Ok(true)
    }
}

/// A layer's byte stream as the unpacker reads it.
type BlobStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Wraps a download so every chunk is counted: DOWNLOADING while bytes
/// arrive, EXTRACTING once the declared size has arrived (the unpacker
/// writes the last entries while the stream ends).
fn counted(
    stream: impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    mut reporter: LayerReporter,
    size: Option<u64>,
) -> BlobStream {
    use futures_util::StreamExt as _;
    let mut current = 0u64;
    reporter.update(0, Phase::Downloading);
    Box::pin(stream.map(move |chunk| {
        if let Ok(b) = &chunk {
            current += b.len() as u64;
            let phase = match size {
                Some(total) if current >= total => Phase::Extracting,
                _ => Phase::Downloading,
            };
            reporter.update(current, phase);
        }
        chunk
    }))
}

/// The endpoints content is fetched from: the one that resolved the
/// reference first, then the other usable ones, tried in turn on failure.
/// A layer whose stream breaks mid-way is not retried elsewhere (its partial
/// snapshot is discarded and the pull fails; a retry starts it afresh).
struct Sources {
    clients: Vec<RegistryClient>,
}

impl Sources {
    fn first_url(&self) -> String {
        self.clients
            .first()
            .map(|c| c.endpoint().base_url())
            .unwrap_or_default()
    }

    async fn manifest(
        &self,
        digest: &str,
    ) -> Result<crate::registry::FetchedDocument, RegistryError> {
        let mut last = None;
        for c in &self.clients {
            match c.fetch_manifest(digest).await {
                Ok(d) => return Ok(d),
                Err(e) => last = Some(self.failed(c, digest, e)),
            }
        }
        Err(last.unwrap_or(RegistryError::NotFound {
            url: digest.to_string(),
        }))
    }

    async fn blob_bytes(&self, digest: &str) -> Result<Bytes, RegistryError> {
        let mut last = None;
        for c in &self.clients {
            match c.fetch_blob_bytes(digest).await {
                Ok(b) => return Ok(b),
                Err(e) => last = Some(self.failed(c, digest, e)),
            }
        }
        Err(last.unwrap_or(RegistryError::NotFound {
            url: digest.to_string(),
        }))
    }

    async fn blob_stream(
        &self,
        digest: &str,
    ) -> Result<
        impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
        RegistryError,
    > {
        let mut last = None;
        for c in &self.clients {
            match c.blob_stream(digest).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(self.failed(c, digest, e)),
            }
        }
        Err(last.unwrap_or(RegistryError::NotFound {
            url: digest.to_string(),
        }))
    }

    fn failed(&self, c: &RegistryClient, digest: &str, e: RegistryError) -> RegistryError {
        if self.clients.len() > 1 {
            warn!(endpoint = %c.endpoint().base_url(), %digest, error = %e, "fetch failed, trying the next endpoint");
        }
        e
    }
}

/// Chain ids of a layer stack (OCI image spec): the first is its diff_id, each
/// next one is `sha256(parent_chain_id + " " + diff_id)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{parent} {d}").as_bytes()))
            ),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = "sha256:aaaa".to_string();
        let b = "sha256:bbbb".to_string();
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        let want = format!(
            "sha256:{}",
            hex::encode(Sha256::digest(b"sha256:aaaa sha256:bbbb"))
        );
        assert_eq!(ids[1], want);
        assert!(chain_ids(&[]).is_empty());
    }
}
