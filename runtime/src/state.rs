//! The per-container state directory `<root>/<id>/` and its `state.json`.
//!
//! Only facts are stored (init pid and start time, bundle, cgroup path, the
//! spec); the status is derived at read time from the init process and the
//! exec FIFO, so a crashed runtime never leaves a stale "running" behind.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use crate::cgroups::CgroupManager;
use crate::stored_spec::StoredSpec;
use serde::{Deserialize, Serialize};

/// Name of the state file inside the container's directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the FIFO the init blocks on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";

/// Errors from the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The container id is not acceptable as a directory name.
    #[error("invalid container id {0:?}: use 1-1024 characters from [A-Za-z0-9_.+-], not \".\" or \"..\"")]
    InvalidId(String),
    /// No container with that id exists under the root.
    #[error("container {id} does not exist")]
    NotFound {
        /// Container id.
        id: String,
    },
    /// A container with that id already exists.
    #[error("container {id} already exists")]
    Exists {
        /// Container id.
        id: String,
    },
    /// Reading or writing a state file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The state file is corrupt.
    #[error("parsing {path}: {source}")]
    Parse {
        /// The state file.
        path: PathBuf,
        /// JSON error.
        #[source]
        source: serde_json::Error,
    },
}

/// Runtime status as reported by `state` (runc's strings, incl. "paused").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being set up (not yet reported by the binary; state is written after set-up).
    Creating,
    /// Init waits on the exec FIFO.
    Created,
    /// The user process runs.
    Running,
    /// The cgroup is frozen.
    Paused,
    /// The init process is gone.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.pad(s)
    }
}

/// What later commands need to find and manage a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PersistedState {
    /// Container id.
    pub id: String,
    /// Host pid of the init (later the user process).
    pub pid: i32,
    /// Start time of `pid` (field 22 of /proc/pid/stat) to detect pid reuse.
    pub pid_start_time: u64,
    /// Absolute bundle path.
    pub bundle: PathBuf,
    /// Absolute host path of the rootfs.
    pub rootfs: PathBuf,
    /// Cgroup path as given to `CgroupManager::new`.
    pub cgroup_path: PathBuf,
    /// The resolved cgroup manager: a relative cgroupsPath depends on the
    /// creating process's own cgroup, so later commands must not re-resolve it.
    #[serde(default)]
    pub cgroup: Option<CgroupManager>,
    /// When `create` finished.
    pub created: DateTime<Utc>,
    /// Spec annotations.
    pub annotations: HashMap<String, String>,
    /// Namespace type ("mnt", "pid", ...) → path of the init's namespace.
    pub namespace_paths: BTreeMap<String, PathBuf>,
    /// Set by `pause`, cleared by `resume`.
    pub paused: bool,
    /// Uid of the user who created the container.
    pub owner: u32,
    /// The spec as used at create time (hooks, exec security set-up, update).
    pub spec: StoredSpec,
}

/// `<root>/<id>`, after checking the id cannot escape the root.
pub fn container_dir(root: &Path, id: &str) -> Result<PathBuf, StateError> {
    validate_id(id)?;
    Ok(root.join(id))
}

/// Rejects ids that are not a single safe path component.
pub fn validate_id(id: &str) -> Result<(), StateError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(StateError::InvalidId(id.to_string()))
    }
}

/// Creates `<root>/<id>` (mode 0711); fails if it exists.
pub fn create_dir(root: &Path, id: &str) -> Result<PathBuf, StateError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = container_dir(root, id)?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(root)
        .map_err(|source| StateError::Io {
            op: "creating",
            path: root.to_path_buf(),
            source,
        })?;
    match std::fs::DirBuilder::new().mode(0o711).create(&dir) {
        Ok(()) => Ok(dir),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(StateError::Exists { id: id.to_string() })
        }
        Err(source) => Err(StateError::Io {
            op: "creating",
            path: dir,
            source,
        }),
    }
}

impl PersistedState {
    /// Writes `state.json` atomically (temp file + rename) in `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), StateError> {
        let path = dir.join(STATE_FILE);
        let tmp = dir.join(".state.json.tmp");
        let io = |op, p: &Path| {
            let p = p.to_path_buf();
            move |source| StateError::Io {
                op,
                path: p,
                source,
            }
        };
        let data = serde_json::to_vec(self).map_err(|source| StateError::Parse {
            path: path.clone(),
            source,
        })?;
        let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
        f.write_all(&data).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("syncing", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("renaming", &tmp))?;
        Ok(())
    }

    /// Reads `<root>/<id>/state.json`.
    pub fn load(root: &Path, id: &str) -> Result<Self, StateError> {
        let dir = container_dir(root, id)?;
        let path = dir.join(STATE_FILE);
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotFound { id: id.to_string() })
            }
            Err(source) => {
                return Err(StateError::Io {
                    op: "reading",
                    path,
                    source,
                })
            }
        };
        serde_json::from_slice(&data).map_err(|source| StateError::Parse { path, source })
    }

    /// Whether the recorded init process still exists (and is not a zombie).
    pub fn init_alive(&self) -> bool {
        match proc_stat(self.pid) {
            Some(st) => st.start_time == self.pid_start_time && !matches!(st.state, 'Z' | 'X'),
            None => false,
        }
    }

    /// Status derived from the init process, the exec FIFO and the pause flag.
    pub fn status(&self, dir: &Path) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if self.paused {
            return Status::Paused;
        }
        if dir.join(EXEC_FIFO).exists() {
            Status::Created
        } else {
            Status::Running
        }
    }
}

/// The two fields of `/proc/<pid>/stat` the runtime needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Single-letter process state (R, S, D, Z, T, ...).
    pub state: char,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
}

/// Reads state and start time of `pid`; `None` when the process is gone.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let data = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&data)
}

/// Parses `/proc/<pid>/stat`; the comm field may contain spaces and ')'.
fn parse_stat(data: &str) -> Option<ProcStat> {
    let rest = &data[data.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // Fields after comm start at field 3 (state); starttime is field 22.
    let state = fields.next()?.chars().next()?;
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_3+x").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_stat_with_odd_comm() {
        let line =
            "1234 (a) b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
        let st = parse_stat(line).unwrap();
        assert_eq!(st.state, 'S');
        assert_eq!(st.start_time, 98765);
    }

    #[test]
    fn own_process_is_alive_and_save_load_roundtrip() {
        let tmp = tempfile::tempdir().unwrap();
        let me = std::process::id() as i32;
        let st = proc_stat(me).unwrap();
        let dir = create_dir(tmp.path(), "c1").unwrap();
        assert!(matches!(
            create_dir(tmp.path(), "c1"),
            Err(StateError::Exists { .. })
        ));
        let s = PersistedState {
            id: "c1".into(),
            pid: me,
            pid_start_time: st.start_time,
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            cgroup_path: "/berth/c1".into(),
            cgroup: None,
            created: Utc::now(),
            annotations: HashMap::new(),
            namespace_paths: BTreeMap::new(),
            paused: false,
            owner: 0,
            spec: crate::stored_spec::StoredSpec::new(&oci_spec::runtime::Spec::default()).unwrap(),
        };
        s.save(&dir).unwrap();
        let l = PersistedState::load(tmp.path(), "c1").unwrap();
        assert_eq!(l.pid, me);
        assert_eq!(l.status(&dir), Status::Running);
        std::fs::write(dir.join(EXEC_FIFO), "").unwrap();
        assert_eq!(l.status(&dir), Status::Created);
        let stale = PersistedState {
            pid_start_time: st.start_time + 1,
            ..l
        };
        assert_eq!(stale.status(&dir), Status::Stopped);
        assert!(matches!(
            PersistedState::load(tmp.path(), "nope"),
            Err(StateError::NotFound { .. })
        ));
    }
}
