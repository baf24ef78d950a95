//! Pod sandbox and container rows.
//!
//! Each row keeps the CRI config as protobuf bytes (exactly what the client
//! sent) and the runtime record as JSON (state, timestamps, paths, exit
//! status): enough to answer status and list calls after a restart. The
//! `name_key` column is UNIQUE, which makes name reservation atomic under
//! concurrent creates.

use std::collections::HashMap;
use std::path::PathBuf;

use rusqlite::{params, ErrorCode, OptionalExtension};

use super::{db_err, Store, StoreError};

/// A chain id with its snapshot `fs` dir (None: not committed).
pub type SnapshotDir = (String, Option<PathBuf>);

/// Which table a row lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// `pods`
    Pod,
    /// `containers`
    Container,
}

impl ObjectKind {
    fn table(self) -> &'static str {
        match self {
            ObjectKind::Pod => "pods",
            ObjectKind::Container => "containers",
        }
    }
}

/// One stored pod or container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRow {
    /// The 64-hex id.
    pub id: String,
    /// The owning pod (the pod's own id for pods).
    pub pod_id: String,
    /// The unique name key.
    pub name_key: String,
    /// The CRI config, protobuf encoded.
    pub config: Vec<u8>,
    /// The runtime record, JSON.
    pub record: String,
}

pub(super) const OBJECT_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS pods (
    id       TEXT PRIMARY KEY,
    pod_id   TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    config   BLOB NOT NULL,
    record   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS containers (
    id       TEXT PRIMARY KEY,
    pod_id   TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    config   BLOB NOT NULL,
    record   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS containers_pod ON containers(pod_id);
"#;

impl Store {
    /// Inserts a new row; `Ok(false)` when its id or name key is taken.
    pub fn insert_object(&self, kind: ObjectKind, row: &ObjectRow) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO {} (id, pod_id, name_key, config, record) VALUES (?1, ?2, ?3, ?4, ?5)",
            kind.table()
        );
        let res = self.conn().execute(
            &sql,
            params![row.id, row.pod_id, row.name_key, row.config, row.record],
        );
        match res {
            Ok(_) => Ok(true),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                Ok(false)
            }
            Err(e) => Err(db_err("insert object")(e)),
        }
    }

    /// Inserts a new container row and takes one reference on each snapshot
    /// of `chain_ids`, in one transaction (one WAL fsync instead of one per
    /// statement); `Ok(None)` when the id or name key is taken. Returns each
    /// chain id with its `fs` dir (None: not committed), in `chain_ids` order.
    pub fn insert_object_holding_snapshots(
        &self,
        kind: ObjectKind,
        row: &ObjectRow,
        chain_ids: &[String],
    ) -> Result<Option<Vec<SnapshotDir>>, StoreError> {
        let sql = format!(
            "INSERT INTO {} (id, pod_id, name_key, config, record) VALUES (?1, ?2, ?3, ?4, ?5)",
            kind.table()
        );
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err("begin insert object"))?;
        match tx.execute(
            &sql,
            params![row.id, row.pod_id, row.name_key, row.config, row.record],
        ) {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::ConstraintViolation =>
            {
                return Ok(None);
            }
            Err(e) => return Err(db_err("insert object")(e)),
        }
        let mut out = Vec::with_capacity(chain_ids.len());
        for chain in chain_ids {
            tx.execute(
                "UPDATE snapshots SET refcount = refcount + 1 WHERE chain_id = ?1",
                params![chain],
            )
            .map_err(db_err("update snapshot refcount"))?;
            let id: Option<i64> = tx
                .query_row(
                    "SELECT id FROM snapshots WHERE chain_id = ?1",
                    params![chain],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err("look up snapshot"))?;
            let path = id.map(|id| self.snapshots_dir().join(id.to_string()).join("fs"));
            out.push((chain.clone(), path));
        }
        tx.commit().map_err(db_err("commit insert object"))?;
        Ok(Some(out))
    }

    /// Deletes a row (absent is fine) and drops one reference on each
    /// snapshot of `chain_ids`, in one transaction: a crash cannot release
    /// the references of a row that stays.
    pub fn delete_object_releasing_snapshots(
        &self,
        kind: ObjectKind,
        id: &str,
        chain_ids: &[String],
    ) -> Result<(), StoreError> {
        let sql = format!("DELETE FROM {} WHERE id = ?1", kind.table());
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err("begin delete object"))?;
        let n = tx
            .execute(&sql, params![id])
            .map_err(db_err("delete object"))?;
        // An absent row released its references when it was deleted.
        if n > 0 {
            for chain in chain_ids {
                tx.execute(
                    "UPDATE snapshots SET refcount = MAX(0, refcount - 1) WHERE chain_id = ?1",
                    params![chain],
                )
                .map_err(db_err("update snapshot refcount"))?;
            }
        }
        tx.commit().map_err(db_err("commit delete object"))
    }

    /// Replaces the config and record of an existing row; `Ok(false)` when
    /// the row is gone.
    pub fn update_object(
        &self,
        kind: ObjectKind,
        id: &str,
        config: &[u8],
        record: &str,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE {} SET config = ?2, record = ?3 WHERE id = ?1",
            kind.table()
        );
        let n = self
            .conn()
            .execute(&sql, params![id, config, record])
            .map_err(db_err("update object"))?;
        Ok(n > 0)
    }

    /// Deletes a row (absent is fine).
    pub fn delete_object(&self, kind: ObjectKind, id: &str) -> Result<(), StoreError> {
        let sql = format!("DELETE FROM {} WHERE id = ?1", kind.table());
        self.conn()
            .execute(&sql, params![id])
            .map_err(db_err("delete object"))?;
        Ok(())
    }

    /// One row by id.
    pub fn get_object(&self, kind: ObjectKind, id: &str) -> Result<Option<ObjectRow>, StoreError> {
        let sql = format!(
            "SELECT id, pod_id, name_key, config, record FROM {} WHERE id = ?1",
            kind.table()
        );
        self.conn()
            .query_row(&sql, params![id], row_of)
            .optional()
            .map_err(db_err("get object"))
    }

    /// All rows of a table, oldest first.
    pub fn list_objects(&self, kind: ObjectKind) -> Result<Vec<ObjectRow>, StoreError> {
        let sql = format!(
            "SELECT id, pod_id, name_key, config, record FROM {} ORDER BY rowid",
            kind.table()
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql).map_err(db_err("list objects"))?;
        let rows = stmt
            .query_map(params![], row_of)
            .map_err(db_err("list objects"))?;
        rows.collect::<Result<_, _>>()
            .map_err(db_err("list objects"))
    }

    /// Sets every snapshot's container reference count to what `counts`
    /// says (absent: 0). Start-up reconciliation uses it to drop references
    /// of containers that no longer exist.
    pub fn set_snapshot_refs(&self, counts: &HashMap<String, i64>) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db_err("begin snapshot refs"))?;
        tx.execute("UPDATE snapshots SET refcount = 0", params![])
            .map_err(db_err("reset snapshot refs"))?;
        for (chain_id, n) in counts {
            tx.execute(
                "UPDATE snapshots SET refcount = ?2 WHERE chain_id = ?1",
                params![chain_id, n],
            )
            .map_err(db_err("set snapshot ref"))?;
        }
        tx.commit().map_err(db_err("commit snapshot refs"))
    }

    /// The container reference count of a snapshot (None: no such snapshot).
    pub fn snapshot_refcount(&self, chain_id: &str) -> Result<Option<i64>, StoreError> {
        self.conn()
            .query_row(
                "SELECT refcount FROM snapshots WHERE chain_id = ?1",
                params![chain_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err("read snapshot refcount"))
    }
}

fn row_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<ObjectRow> {
    Ok(ObjectRow {
        id: r.get(0)?,
        pod_id: r.get(1)?,
        name_key: r.get(2)?,
        config: r.get(3)?,
        record: r.get(4)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(id: &str, key: &str) -> ObjectRow {
        ObjectRow {
            id: id.into(),
            pod_id: "p".into(),
            name_key: key.into(),
            config: vec![1, 2, 3],
            record: "{}".into(),
        }
    }

    #[test]
    fn rows_round_trip_and_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        assert!(store
            .insert_object(ObjectKind::Pod, &row("a", "k1"))
            .unwrap());
        assert!(!store
            .insert_object(ObjectKind::Pod, &row("b", "k1"))
            .unwrap());
        assert!(!store
            .insert_object(ObjectKind::Pod, &row("a", "k2"))
            .unwrap());
        // The same key in the other table is independent.
        assert!(store
            .insert_object(ObjectKind::Container, &row("a", "k1"))
            .unwrap());
        assert!(store
            .update_object(ObjectKind::Pod, "a", &[9], "{\"x\":1}")
            .unwrap());
        assert!(!store
            .update_object(ObjectKind::Pod, "zz", &[9], "{}")
            .unwrap());
        let got = store.get_object(ObjectKind::Pod, "a").unwrap().unwrap();
        assert_eq!(got.config, vec![9]);
        assert_eq!(got.record, "{\"x\":1}");
        assert_eq!(store.list_objects(ObjectKind::Pod).unwrap().len(), 1);
        store.delete_object(ObjectKind::Pod, "a").unwrap();
        store.delete_object(ObjectKind::Pod, "a").unwrap();
        assert!(store.get_object(ObjectKind::Pod, "a").unwrap().is_none());
        // The key is free again.
        assert!(store
            .insert_object(ObjectKind::Pod, &row("c", "k1"))
            .unwrap());
    }

    #[test]
    fn container_rows_hold_and_release_snapshots_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path()).unwrap();
        store
            .conn()
            .execute(
                "INSERT INTO snapshots (chain_id, parent, size, refcount, created) VALUES ('sha256:l', NULL, 1, 0, 0)",
                params![],
            )
            .unwrap();
        let chains = vec!["sha256:l".to_string(), "sha256:missing".to_string()];
        let got = store
            .insert_object_holding_snapshots(ObjectKind::Container, &row("c1", "n"), &chains)
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].1.as_ref().unwrap().ends_with("fs"));
        assert_eq!(got[1], ("sha256:missing".to_string(), None));
        assert_eq!(store.snapshot_refcount("sha256:l").unwrap(), Some(1));
        // A taken name holds nothing.
        assert!(store
            .insert_object_holding_snapshots(ObjectKind::Container, &row("c2", "n"), &chains)
            .unwrap()
            .is_none());
        assert_eq!(store.snapshot_refcount("sha256:l").unwrap(), Some(1));
        store
            .delete_object_releasing_snapshots(ObjectKind::Container, "c1", &chains)
            .unwrap();
        assert_eq!(store.snapshot_refcount("sha256:l").unwrap(), Some(0));
        assert!(store
            .get_object(ObjectKind::Container, "c1")
            .unwrap()
            .is_none());
        // Deleting an absent row releases nothing twice.
        store
            .insert_object_holding_snapshots(ObjectKind::Container, &row("c3", "m"), &chains)
            .unwrap()
            .unwrap();
        store
            .delete_object_releasing_snapshots(ObjectKind::Container, "c1", &chains)
            .unwrap();
        assert_eq!(store.snapshot_refcount("sha256:l").unwrap(), Some(1));
    }

    #[test]
    fn rows_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (store, _) = Store::open(dir.path()).unwrap();
            store
                .insert_object(ObjectKind::Container, &row("c1", "n"))
                .unwrap();
        }
        let (store, _) = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.list_objects(ObjectKind::Container).unwrap()[0].id,
            "c1"
        );
    }
}
