//! Content files (manifests, indexes, configs) under `content/sha256/<hex>`.
//!
//! Written to a temporary file in the same directory, fsynced and renamed,
//! so a file under its digest name is always complete.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use berth_image::reference::is_valid_digest;
use rusqlite::params;
use tracing::debug;

use super::{db_err, io_err, Store, StoreError};

impl Store {
    fn content_dir(&self) -> PathBuf {
        self.root.join("content/sha256")
    }

    fn content_path(&self, digest: &str) -> Result<PathBuf, StoreError> {
        match digest.strip_prefix("sha256:") {
            Some(hex) if is_valid_digest(digest) => Ok(self.content_dir().join(hex)),
            _ => Err(StoreError::Digest {
                digest: digest.to_string(),
            }),
        }
    }

    /// Stores `data` under `digest` (the caller verified the digest).
    pub fn write_content(&self, digest: &str, data: &[u8]) -> Result<(), StoreError> {
        let path = self.content_path(digest)?;
        if path.exists() {
            return Ok(());
        }
        self.write_new(&path, |tmp| {
            tmp.write_all(data).map_err(io_err("writing", tmp.path()))
        })
    }

    /// Writes `path` in the content dir whole or not at all: `fill` writes
    /// a temporary file there, which is synced and renamed into place.
    fn write_new(
        &self,
        path: &std::path::Path,
        fill: impl FnOnce(&mut tempfile::NamedTempFile) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let dir = self.content_dir();
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(io_err("creating temporary file in", &dir))?;
        fill(&mut tmp)?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err("syncing", tmp.path()))?;
        tmp.persist(path).map_err(|e| StoreError::Io {
            op: "renaming into",
            path: path.to_path_buf(),
            source: e.error,
        })?;
        Ok(())
    }

    /// Stores the file `src` (digest verified by the caller) under
    /// `digest` as a hard link, or a copy across file systems; a no-op when
    /// already stored. `src` stays for the caller to remove.
    pub fn import_content_file(
        &self,
        digest: &str,
        src: &std::path::Path,
    ) -> Result<(), StoreError> {
        let path = self.content_path(digest)?;
        if path.exists() {
            return Ok(());
        }
        let f = std::fs::File::open(src).map_err(io_err("opening", src))?;
        f.sync_all().map_err(io_err("syncing", src))?;
        if std::fs::hard_link(src, &path).is_err() {
            self.write_new(&path, |tmp| {
                std::fs::copy(src, tmp.path())
                    .map(drop)
                    .map_err(io_err("copying", src))
            })?;
        }
        Ok(())
    }

    /// The file of stored content `digest`, if present (large blobs are
    /// streamed from it rather than read into memory).
    pub fn content_file(&self, digest: &str) -> Option<PathBuf> {
        self.content_path(digest).ok().filter(|p| p.exists())
    }

    /// A directory for temporary files on the store's file system (so they
    /// can be renamed into the content store).
    pub fn tmp_dir(&self) -> Result<PathBuf, StoreError> {
        let dir = self.root.join("tmp");
        std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        Ok(dir)
    }

    /// Reads a stored content file.
    pub fn read_content(&self, digest: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.content_path(digest)?;
        std::fs::read(&path).map_err(io_err("reading", &path))
    }

    /// True when `digest` is stored.
    pub fn has_content(&self, digest: &str) -> bool {
        self.content_path(digest).is_ok_and(|p| p.exists())
    }

    /// Removes `.tmp-*` files an interrupted write left.
    pub(super) fn remove_content_leftovers(&self) -> Result<usize, StoreError> {
        let dir = self.content_dir();
        let mut removed = 0;
        for entry in std::fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let entry = entry.map_err(io_err("listing", &dir))?;
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let p = entry.path();
                std::fs::remove_file(&p).map_err(io_err("removing", &p))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Removes content files no image lists in `image_content`.
    pub(super) fn remove_unreferenced_content(&self) -> Result<usize, StoreError> {
        let referenced: HashSet<String> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare("SELECT DISTINCT digest FROM image_content")
                .map_err(db_err("list referenced content"))?;
            let rows = stmt
                .query_map(params![], |r| r.get::<_, String>(0))
                .map_err(db_err("list referenced content"))?;
            rows.collect::<Result<_, _>>()
                .map_err(db_err("list referenced content"))?
        };
        let dir = self.content_dir();
        let mut removed = 0;
        for entry in std::fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let entry = entry.map_err(io_err("listing", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(".tmp-") {
                // A write in progress (GC runs exclusively of pulls, so this
                // only happens at startup, where leftovers were already removed).
                continue;
            }
            if !referenced.contains(&format!("sha256:{name}")) {
                let p = entry.path();
                std::fs::remove_file(&p).map_err(io_err("removing", &p))?;
                debug!(digest = %name, "removed unreferenced content");
                removed += 1;
            }
        }
        Ok(removed)
    }
}
