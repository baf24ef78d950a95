//! Image management, independent of gRPC: pull into the store, look up,
//! remove (then collect garbage), filesystem usage.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_image::pull::{PullOptions, Puller};
use berth_image::reference::Reference;
use berth_image::registry::Credentials;
use berth_image::unpack::UnpackLimits;
use tracing::{info, warn, Instrument};

use crate::config::Config;
use crate::error::Error;
use crate::store::{ImageRecord, RemoveOutcome, Store};

/// Bytes and inodes used under a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsUsage {
    /// Bytes allocated on disk (st_blocks * 512), hard links counted once.
    pub used_bytes: u64,
    /// Distinct inodes.
    pub inodes_used: u64,
}

/// The image side of berthd.
#[derive(Debug)]
pub struct ImageManager {
    store: Arc<Store>,
    puller: Arc<Puller>,
}

impl ImageManager {
    /// Builds the manager from the daemon config over an opened store.
    pub fn new(config: &Config, store: Arc<Store>) -> Self {
        let puller = Puller::new(PullOptions {
            hosts_dir: config.registry.config_path.clone(),
            max_concurrent_downloads: config.registry.max_concurrent_downloads,
            unpack_limits: UnpackLimits {
                max_unpacked_bytes: config.unpack.max_unpacked_bytes,
                max_entries: config.unpack.max_entries,
            },
        });
        ImageManager {
            store,
            puller: Arc::new(puller),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The puller (exposes download counters).
    pub fn puller(&self) -> &Arc<Puller> {
        &self.puller
    }

    /// Pulls `image` and returns the image id (`sha256:` config digest).
    pub async fn pull(&self, image: &str, credentials: &Credentials) -> Result<String, Error> {
        if image.is_empty() {
            return Err(Error::MissingField {
                field: "image.image",
            });
        }
        let reference = Reference::parse_normalized(image)?;
        let (store, puller, credentials) =
            (self.store.clone(), self.puller.clone(), credentials.clone());
        // The pull runs in its own task: a client that gives up (kubelet
        // timeout) does not abort it half-way, and a retry finds the layers
        // it already committed.
        let task = tokio::spawn(
            async move {
                // Held until the image row is committed: GC waits for us.
                let _guard = store.pull_guard().await;
                let pulled = puller.pull(&reference, &credentials, store.clone()).await?;
                let id = pulled.config_digest.clone();
                let s = store.clone();
                tokio::task::spawn_blocking(move || s.commit_image(&pulled)).await??;
                info!(image = %reference, image_id = %id, "image committed");
                Ok::<_, Error>(id)
            }
            .instrument(tracing::Span::current()),
        );
        let id = task.await??;
        Ok(id)
    }

    /// All images, or only the one `filter` names (empty filter: all).
    pub fn list(&self, filter: Option<&str>) -> Result<Vec<ImageRecord>, Error> {
        match filter {
            Some(f) if !f.is_empty() => Ok(self.store.find_image(f)?.into_iter().collect()),
            _ => Ok(self.store.list_images()?),
        }
    }

    /// The image `image` names, if present.
    pub fn status(&self, image: &str) -> Result<Option<ImageRecord>, Error> {
        if image.is_empty() {
            return Err(Error::MissingField {
                field: "image.image",
            });
        }
        Ok(self.store.find_image(image)?)
    }

    /// Removes what `image` names (a missing image is not an error), then
    /// collects snapshots and content no image references any more.
    pub async fn remove(&self, image: &str) -> Result<RemoveOutcome, Error> {
        if image.is_empty() {
            return Err(Error::MissingField {
                field: "image.image",
            });
        }
        let outcome = self.store.remove_image(image)?;
        if let RemoveOutcome::Removed { id } = &outcome {
            info!(image = %image, image_id = %id, "image removed");
            match self.store.try_gc()? {
                Some(report) => info!(?report, "garbage collected"),
                None => {
                    // Pulls are running: collect once they are done rather
                    // than make this call wait for them.
                    let store = self.store.clone();
                    tokio::spawn(async move {
                        match store.gc().await {
                            Ok(report) => info!(?report, "garbage collected"),
                            Err(err) => {
                                warn!(error = %crate::error::chain(&err), "garbage collection failed")
                            }
                        }
                    });
                }
            }
        }
        Ok(outcome)
    }

    /// Usage of the snapshot directory and its path.
    pub async fn fs_usage(&self) -> Result<(FsUsage, PathBuf), Error> {
        let dir = self.store.snapshots_dir();
        let d = dir.clone();
        let usage = tokio::task::spawn_blocking(move || dir_usage(&d)).await?;
        Ok((usage, dir))
    }
}

/// Walks `root` without following symlinks, counting each inode once.
/// Entries that vanish during the walk (a concurrent removal) are skipped.
pub fn dir_usage(root: &Path) -> FsUsage {
    let mut seen = HashSet::new();
    let mut usage = FsUsage::default();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if seen.insert((meta.dev(), meta.ino())) {
            usage.inodes_used += 1;
            usage.used_bytes += meta.blocks() * 512;
        }
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    usage
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_hardlinks_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), vec![1u8; 10_000]).unwrap();
        std::fs::hard_link(dir.path().join("a"), dir.path().join("b")).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("d/l")).unwrap();
        let u = dir_usage(dir.path());
        // root, a(=b), d, l
        assert_eq!(u.inodes_used, 4);
        assert!(u.used_bytes >= 10_000);
    }
}
