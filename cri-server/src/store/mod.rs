//! The image store under the root dir:
//!
//! ```text
//! <root>/metadata.db        SQLite (WAL): images, refs, snapshots, content,
//!                           pods and containers
//! <root>/content/sha256/    manifests, indexes and configs by digest
//! <root>/snapshots/<n>/fs   unpacked layers, keyed by chain id in the DB
//! <root>/snapshots/tmp-*    snapshots being written (removed at startup)
//! ```
//!
//! Layer blobs are not kept: they are unpacked straight into snapshots while
//! downloading. Crash safety comes from ordering: a snapshot is renamed into
//! place and its row committed only once complete, and an image's rows are
//! committed last, in one transaction. Whatever a kill leaves (tmp dirs,
//! dirs without rows, rows no image uses, content no image uses) is removed
//! by [`Store::open`].

mod content;
mod docker;
mod images;
mod objects;
mod snapshots;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::Connection;
use tracing::info;

pub use docker::{DockerRow, VolumeRow};
pub use images::{ImageRecord, NewImage, RemoveOutcome};
pub use objects::{ObjectKind, ObjectRow};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A database operation failed.
    #[error("metadata database: {op}")]
    Db {
        /// What was being done.
        op: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A digest that cannot name a file.
    #[error("invalid digest {digest:?}")]
    Digest {
        /// The digest text.
        digest: String,
    },
}

pub(crate) fn db_err(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Db { op, source }
}

pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { op, path, source }
}

/// What the startup recovery removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Temporary snapshot dirs removed.
    pub tmp_dirs: usize,
    /// Snapshot dirs without a committed row removed.
    pub orphan_dirs: usize,
    /// Snapshot rows (and dirs) no image references removed.
    pub unreferenced_snapshots: usize,
    /// Content files no image references removed.
    pub unreferenced_content: usize,
}

/// The image store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    db: Mutex<Connection>,
    /// Pulls hold it shared, garbage collection exclusively, so GC never
    /// deletes a snapshot a pull has committed but not yet tied to an image.
    gc_lock: tokio::sync::RwLock<()>,
}

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS snapshots (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    chain_id  TEXT NOT NULL UNIQUE,
    parent    TEXT,
    size      INTEGER NOT NULL,
    refcount  INTEGER NOT NULL DEFAULT 0,
    created   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id              TEXT PRIMARY KEY,
    manifest_digest TEXT NOT NULL,
    size            INTEGER NOT NULL,
    user            TEXT,
    config          TEXT NOT NULL,
    created         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx      INTEGER NOT NULL,
    chain_id TEXT NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
CREATE TABLE IF NOT EXISTS image_content (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    digest   TEXT NOT NULL,
    PRIMARY KEY (image_id, digest)
);
CREATE TABLE IF NOT EXISTS image_refs (
    name     TEXT PRIMARY KEY,
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    kind     TEXT NOT NULL CHECK (kind IN ('tag', 'digest'))
);
CREATE INDEX IF NOT EXISTS image_refs_image ON image_refs(image_id);
"#;

impl Store {
    /// Opens (creating) the store under `root`, then removes whatever an
    /// interrupted pull or removal left behind.
    pub fn open(root: &Path) -> Result<(Store, RecoveryReport), StoreError> {
        for dir in [
            root.to_path_buf(),
            root.join("content/sha256"),
            root.join("snapshots"),
        ] {
            std::fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
        }
        let db_path = root.join("metadata.db");
        let conn = Connection::open(&db_path).map_err(db_err("open"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db_err("enable WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db_err("set synchronous"))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(db_err("enable foreign keys"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db_err("set busy timeout"))?;
        conn.execute_batch(SCHEMA)
            .map_err(db_err("create schema"))?;
        conn.execute_batch(objects::OBJECT_SCHEMA)
            .map_err(db_err("create pod and container schema"))?;
        conn.execute_batch(docker::DOCKER_SCHEMA)
            .map_err(db_err("create docker container and volume schema"))?;
        let store = Store {
            root: root.to_path_buf(),
            db: Mutex::new(conn),
            gc_lock: tokio::sync::RwLock::new(()),
        };
        let report = store.recover()?;
        if report != RecoveryReport::default() {
            info!(?report, root = %root.display(), "removed leftovers of an interrupted run");
        }
        Ok((store, report))
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The snapshots directory (what ImageFsInfo reports).
    pub fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back on drop), so a poisoned lock is still usable.
        self.db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Shared guard held by a pull from its first download to its image commit.
    pub async fn pull_guard(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gc_lock.read().await
    }

    /// Removes snapshots and content no image references (nor, for
    /// snapshots, any container: `refcount`). Waits for running pulls.
    pub async fn gc(&self) -> Result<RecoveryReport, StoreError> {
        let _exclusive = self.gc_lock.write().await;
        let mut report = RecoveryReport::default();
        self.gc_locked(&mut report)?;
        Ok(report)
    }

    /// Like [`Store::gc`], but returns `None` at once when pulls are running.
    pub fn try_gc(&self) -> Result<Option<RecoveryReport>, StoreError> {
        let Ok(_exclusive) = self.gc_lock.try_write() else {
            return Ok(None);
        };
        let mut report = RecoveryReport::default();
        self.gc_locked(&mut report)?;
        Ok(Some(report))
    }

    fn gc_locked(&self, report: &mut RecoveryReport) -> Result<(), StoreError> {
        report.unreferenced_snapshots += self.remove_unreferenced_snapshots()?;
        report.unreferenced_content += self.remove_unreferenced_content()?;
        Ok(())
    }

    /// Startup recovery: tmp dirs, dirs without rows, then a normal GC.
    fn recover(&self) -> Result<RecoveryReport, StoreError> {
        let mut report = RecoveryReport::default();
        let (tmp, orphans) = self.remove_snapshot_leftovers()?;
        report.tmp_dirs = tmp;
        report.orphan_dirs = orphans;
        self.remove_content_leftovers()?;
        self.gc_locked(&mut report)?;
        Ok(report)
    }
}

/// Seconds since the epoch (0 if the clock is before it).
pub(crate) fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
