//! Docker-level records (berth.v1): what the CRI has no place for.
//!
//! `docker_containers` maps a unique name to the CRI container and pod it
//! was made as, with the `ContainerSpec` it was created from (protobuf, as
//! the client sent it, host ports filled in) and a small JSON state berthd
//! updates (restart count, whether the user stopped it). The UNIQUE name
//! makes reservation atomic under concurrent creates and renames.
//! `docker_volumes` lists the named and anonymous volumes berthd made.

use rusqlite::{params, ErrorCode, OptionalExtension};

use super::{db_err, Store, StoreError};

pub(super) const DOCKER_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS docker_containers (
    id      TEXT PRIMARY KEY,
    name    TEXT NOT NULL UNIQUE,
    pod_id  TEXT NOT NULL,
    spec    BLOB NOT NULL,
    state   TEXT NOT NULL,
    created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS docker_volumes (
    name      TEXT PRIMARY KEY,
    created   INTEGER NOT NULL,
    labels    TEXT NOT NULL,
    anonymous INTEGER NOT NULL
);
"#;

/// One Docker-style container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerRow {
    /// The CRI container id (a `pending-` placeholder while being created).
    pub id: String,
    /// The unique name (without a leading `/`).
    pub name: String,
    /// The CRI pod sandbox id ("" while being created).
    pub pod_id: String,
    /// The `berth.v1.ContainerSpec`, protobuf encoded.
    pub spec: Vec<u8>,
    /// berthd's JSON state of the container.
    pub state: String,
    /// Creation time, seconds since the epoch.
    pub created: i64,
}

/// One volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    /// The name.
    pub name: String,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Labels, a JSON object.
    pub labels: String,
    /// Made for a container's VOLUME or `-v /path`.
    pub anonymous: bool,
}

fn is_constraint(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

fn docker_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DockerRow> {
    Ok(DockerRow {
        id: r.get(0)?,
        name: r.get(1)?,
        pod_id: r.get(2)?,
        spec: r.get(3)?,
        state: r.get(4)?,
        created: r.get(5)?,
    })
}

fn volume_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRow> {
    Ok(VolumeRow {
        name: r.get(0)?,
        created: r.get(1)?,
        labels: r.get(2)?,
        anonymous: r.get::<_, i64>(3)? != 0,
    })
}

const DOCKER_COLUMNS: &str = "id, name, pod_id, spec, state, created";

impl Store {
    /// Inserts a container row; `Ok(false)` when the name (or id) is taken.
    pub fn insert_docker(&self, row: &DockerRow) -> Result<bool, StoreError> {
        let res = self.conn().execute(
            "INSERT INTO docker_containers (id, name, pod_id, spec, state, created) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                row.id,
                row.name,
                row.pod_id,
                row.spec,
                row.state,
                row.created
            ],
        );
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_constraint(&e) => Ok(false),
            Err(e) => Err(db_err("insert docker container")(e)),
        }
    }

    /// Replaces the row whose id is `old_id` (the id itself may change,
    /// from the placeholder to the CRI id); `Ok(false)` if it is gone.
    pub fn update_docker(&self, old_id: &str, row: &DockerRow) -> Result<bool, StoreError> {
        let n = self
            .conn()
            .execute(
                "UPDATE docker_containers SET id = ?2, name = ?3, pod_id = ?4, spec = ?5, \
                 state = ?6 WHERE id = ?1",
                params![old_id, row.id, row.name, row.pod_id, row.spec, row.state],
            )
            .map_err(db_err("update docker container"))?;
        Ok(n == 1)
    }

    /// Renames a container; `Ok(false)` when `new_name` is taken.
    pub fn rename_docker(&self, id: &str, new_name: &str) -> Result<bool, StoreError> {
        let res = self.conn().execute(
            "UPDATE docker_containers SET name = ?2 WHERE id = ?1",
            params![id, new_name],
        );
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_constraint(&e) => Ok(false),
            Err(e) => Err(db_err("rename docker container")(e)),
        }
    }

    /// Deletes a container row (absent: no error).
    pub fn delete_docker(&self, id: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM docker_containers WHERE id = ?1", params![id])
            .map_err(db_err("delete docker container"))?;
        Ok(())
    }

    /// The container with this id, if any.
    pub fn get_docker(&self, id: &str) -> Result<Option<DockerRow>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {DOCKER_COLUMNS} FROM docker_containers WHERE id = ?1"),
                params![id],
                docker_row,
            )
            .optional()
            .map_err(db_err("get docker container"))
    }

    /// Every container, oldest first.
    pub fn list_docker(&self) -> Result<Vec<DockerRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {DOCKER_COLUMNS} FROM docker_containers ORDER BY created, id"
            ))
            .map_err(db_err("list docker containers"))?;
        let rows = stmt
            .query_map([], docker_row)
            .map_err(db_err("list docker containers"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(db_err("read docker container"))
    }

    /// Records a volume; `Ok(false)` when the name exists already.
    pub fn insert_volume(&self, v: &VolumeRow) -> Result<bool, StoreError> {
        let res = self.conn().execute(
            "INSERT INTO docker_volumes (name, created, labels, anonymous) VALUES (?1, ?2, ?3, ?4)",
            params![v.name, v.created, v.labels, i64::from(v.anonymous)],
        );
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_constraint(&e) => Ok(false),
            Err(e) => Err(db_err("insert volume")(e)),
        }
    }

    /// The volume `name`, if recorded.
    pub fn get_volume(&self, name: &str) -> Result<Option<VolumeRow>, StoreError> {
        self.conn()
            .query_row(
                "SELECT name, created, labels, anonymous FROM docker_volumes WHERE name = ?1",
                params![name],
                volume_row,
            )
            .optional()
            .map_err(db_err("get volume"))
    }

    /// Every volume, by name.
    pub fn list_volumes(&self) -> Result<Vec<VolumeRow>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name, created, labels, anonymous FROM docker_volumes ORDER BY name")
            .map_err(db_err("list volumes"))?;
        let rows = stmt
            .query_map([], volume_row)
            .map_err(db_err("list volumes"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(db_err("read volume"))
    }

    /// Forgets a volume (absent: no error).
    pub fn delete_volume(&self, name: &str) -> Result<(), StoreError> {
        self.conn()
            .execute("DELETE FROM docker_volumes WHERE name = ?1", params![name])
            .map_err(db_err("delete volume"))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(id: &str, name: &str) -> DockerRow {
        DockerRow {
            id: id.into(),
            name: name.into(),
            pod_id: "p".into(),
            spec: vec![1, 2],
            state: "{}".into(),
            created: 1,
        }
    }

    #[test]
    fn names_are_unique_and_renames_respect_them() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(dir.path()).unwrap();
        assert!(s.insert_docker(&row("pending-1", "web")).unwrap());
        assert!(!s.insert_docker(&row("pending-2", "web")).unwrap());
        assert!(s.insert_docker(&row("b", "db")).unwrap());
        let mut r = row("a", "web");
        r.state = r#"{"x":1}"#.into();
        assert!(s.update_docker("pending-1", &r).unwrap());
        assert_eq!(s.get_docker("a").unwrap().unwrap().state, r#"{"x":1}"#);
        assert!(s.get_docker("pending-1").unwrap().is_none());
        assert!(!s.rename_docker("a", "db").unwrap());
        assert!(s.rename_docker("a", "web2").unwrap());
        assert_eq!(s.list_docker().unwrap().len(), 2);
        s.delete_docker("a").unwrap();
        assert!(s.get_docker("a").unwrap().is_none());
        assert!(!s.update_docker("a", &r).unwrap());
    }

    #[test]
    fn volumes_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = Store::open(dir.path()).unwrap();
        let v = VolumeRow {
            name: "data".into(),
            created: 3,
            labels: r#"{"a":"b"}"#.into(),
            anonymous: true,
        };
        assert!(s.insert_volume(&v).unwrap());
        assert!(!s.insert_volume(&v).unwrap());
        assert_eq!(s.get_volume("data").unwrap().unwrap(), v);
        assert_eq!(s.list_volumes().unwrap(), vec![v]);
        s.delete_volume("data").unwrap();
        assert!(s.get_volume("data").unwrap().is_none());
    }
}
