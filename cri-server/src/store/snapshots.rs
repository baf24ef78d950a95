//! Snapshot directories: `snapshots/<n>/fs`, one per chain id.
//!
//! A layer is unpacked into `snapshots/tmp-<random>/fs`; on success the dir
//! is renamed to `snapshots/<n>` inside the transaction that inserts row `n`,
//! so a committed row always has a complete dir. A crash between the rename
//! and the commit leaves a dir without a row, removed at the next start.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use berth_image::pull::{SinkError, SnapshotSink};
use berth_image::unpack::UnpackStats;
use rusqlite::{params, OptionalExtension};
use tracing::{debug, warn};

use super::{db_err, io_err, now_secs, Store, StoreError};

const TMP_PREFIX: &str = "tmp-";

impl Store {
    /// The `fs` dir of the snapshot of `chain_id`, if committed.
    pub fn snapshot_path(&self, chain_id: &str) -> Result<Option<PathBuf>, StoreError> {
        let id: Option<i64> = self
            .conn()
            .query_row(
                "SELECT id FROM snapshots WHERE chain_id = ?1",
                params![chain_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err("look up snapshot"))?;
        Ok(id.map(|id| self.snapshots_dir().join(id.to_string()).join("fs")))
    }

    /// The unpacked size of the layer of `chain_id`, if committed.
    pub fn snapshot_size(&self, chain_id: &str) -> Result<Option<u64>, StoreError> {
        let size: Option<i64> = self
            .conn()
            .query_row(
                "SELECT size FROM snapshots WHERE chain_id = ?1",
                params![chain_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err("look up snapshot"))?;
        Ok(size.map(|s| u64::try_from(s).unwrap_or(0)))
    }

    /// Number of committed snapshots.
    pub fn snapshot_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn()
            .query_row("SELECT COUNT(*) FROM snapshots", params![], |r| r.get(0))
            .map_err(db_err("count snapshots"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Adds `delta` to the container reference count of a snapshot (the pods
    /// work uses it; GC keeps snapshots whose count is above zero).
    pub fn add_snapshot_ref(&self, chain_id: &str, delta: i64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE snapshots SET refcount = MAX(0, refcount + ?2) WHERE chain_id = ?1",
                params![chain_id, delta],
            )
            .map_err(db_err("update snapshot refcount"))?;
        Ok(())
    }

    fn begin(&self) -> Result<PathBuf, StoreError> {
        let dir = self.snapshots_dir();
        let tmp = tempfile::Builder::new()
            .prefix(TMP_PREFIX)
            .tempdir_in(&dir)
            .map_err(io_err("creating temporary snapshot in", &dir))?
            .keep();
        let fs = tmp.join("fs");
        std::fs::create_dir(&fs).map_err(io_err("creating", &fs))?;
        Ok(tmp)
    }

    fn commit(
        &self,
        tmp: &Path,
        chain_id: &str,
        parent: Option<&str>,
        size: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(db_err("begin snapshot commit"))?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT id FROM snapshots WHERE chain_id = ?1",
                params![chain_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err("look up snapshot"))?;
        if exists.is_some() {
            // Another pull committed it first; ours is redundant.
            drop(tx);
            drop(conn);
            self.remove_dir(tmp);
            return Ok(());
        }
        tx.execute(
            "INSERT INTO snapshots (chain_id, parent, size, refcount, created) VALUES (?1, ?2, ?3, 0, ?4)",
            params![chain_id, parent, i64::try_from(size).unwrap_or(i64::MAX), now_secs()],
        )
        .map_err(db_err("insert snapshot"))?;
        let id = tx.last_insert_rowid();
        let dest = self.snapshots_dir().join(id.to_string());
        std::fs::rename(tmp, &dest).map_err(io_err("renaming snapshot into", &dest))?;
        if let Err(e) = tx.commit() {
            // Put the dir back under a tmp name so it is not taken for row `id`.
            if let Err(err) = std::fs::rename(&dest, tmp) {
                warn!(?err, dest = %dest.display(), "cannot move back an uncommitted snapshot");
            }
            return Err(db_err("commit snapshot")(e));
        }
        sync_dir(&self.snapshots_dir());
        Ok(())
    }

    fn remove_dir(&self, dir: &Path) {
        if let Err(err) = std::fs::remove_dir_all(dir) {
            if err.kind() != std::io::ErrorKind::NotFound {
                warn!(?err, dir = %dir.display(), "cannot remove snapshot dir");
            }
        }
    }

    /// Startup: removes `tmp-*` dirs and dirs whose number has no row.
    pub(super) fn remove_snapshot_leftovers(&self) -> Result<(usize, usize), StoreError> {
        let ids: HashSet<i64> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare("SELECT id FROM snapshots")
                .map_err(db_err("list snapshots"))?;
            let rows = stmt
                .query_map(params![], |r| r.get::<_, i64>(0))
                .map_err(db_err("list snapshots"))?;
            rows.collect::<Result<_, _>>()
                .map_err(db_err("list snapshots"))?
        };
        let dir = self.snapshots_dir();
        let (mut tmp, mut orphans) = (0, 0);
        for entry in std::fs::read_dir(&dir).map_err(io_err("listing", &dir))? {
            let entry = entry.map_err(io_err("listing", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with(TMP_PREFIX) {
                std::fs::remove_dir_all(&path).map_err(io_err("removing", &path))?;
                tmp += 1;
            } else if name.parse::<i64>().map_or(true, |id| !ids.contains(&id)) {
                std::fs::remove_dir_all(&path).map_err(io_err("removing", &path))?;
                orphans += 1;
            }
        }
        // Rows whose dir vanished are useless: drop them so a pull refetches.
        let missing: Vec<i64> = ids
            .into_iter()
            .filter(|id| !dir.join(id.to_string()).join("fs").is_dir())
            .collect();
        for id in missing {
            warn!(id, "snapshot row without its directory, forgetting it");
            self.conn()
                .execute("DELETE FROM snapshots WHERE id = ?1", params![id])
                .map_err(db_err("delete snapshot"))?;
        }
        Ok((tmp, orphans))
    }

    /// Deletes snapshots no image uses and no container holds. Rows go
    /// first (committed), then dirs: a crash in between leaves only an
    /// orphan dir, which the next start removes.
    pub(super) fn remove_unreferenced_snapshots(&self) -> Result<usize, StoreError> {
        let victims: Vec<i64> = {
            let mut conn = self.conn();
            let tx = conn.transaction().map_err(db_err("begin snapshot gc"))?;
            let ids: Vec<i64> = {
                let mut stmt = tx
                    .prepare(
                        "SELECT id FROM snapshots WHERE refcount = 0 AND chain_id NOT IN \
                         (SELECT chain_id FROM image_layers)",
                    )
                    .map_err(db_err("find unreferenced snapshots"))?;
                let rows = stmt
                    .query_map(params![], |r| r.get::<_, i64>(0))
                    .map_err(db_err("find unreferenced snapshots"))?;
                rows.collect::<Result<_, _>>()
                    .map_err(db_err("find unreferenced snapshots"))?
            };
            for id in &ids {
                tx.execute("DELETE FROM snapshots WHERE id = ?1", params![id])
                    .map_err(db_err("delete snapshot"))?;
            }
            tx.commit().map_err(db_err("commit snapshot gc"))?;
            ids
        };
        for id in &victims {
            let path = self.snapshots_dir().join(id.to_string());
            self.remove_dir(&path);
            debug!(id, "removed unreferenced snapshot");
        }
        Ok(victims.len())
    }
}

fn sync_dir(dir: &Path) {
    if let Err(err) = std::fs::File::open(dir).and_then(|f| f.sync_all()) {
        warn!(?err, dir = %dir.display(), "cannot sync directory");
    }
}

impl SnapshotSink for Store {
    fn has_snapshot(&self, chain_id: &str) -> Result<bool, SinkError> {
        Ok(self.snapshot_path(chain_id)?.is_some())
    }

    fn begin_snapshot(&self) -> Result<PathBuf, SinkError> {
        Ok(self.begin()?)
    }

    fn commit_snapshot(
        &self,
        tmp: &Path,
        chain_id: &str,
        parent: Option<&str>,
        stats: &UnpackStats,
    ) -> Result<(), SinkError> {
        Ok(self.commit(tmp, chain_id, parent, stats.unpacked_bytes)?)
    }

    fn abort_snapshot(&self, tmp: &Path) {
        self.remove_dir(tmp);
    }

    fn put_content(&self, digest: &str, _media_type: &str, data: &[u8]) -> Result<(), SinkError> {
        Ok(self.write_content(digest, data)?)
    }
}
