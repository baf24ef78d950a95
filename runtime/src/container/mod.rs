//! The container lifecycle: create, start, state, kill, delete (this file
//! and `create.rs`), exec (`exec.rs`), and ps/events/update/pause/resume
//! (`ops.rs`).

mod create;
mod exec;
mod ops;

pub use create::CreateOptions;
pub use exec::{ExecOptions, ExecProcess};
pub use ops::Event;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::ContainerState;
use serde::Serialize;

use crate::cgroups::{CgroupError, CgroupManager};
use crate::hooks::HookStage;
use crate::process::channel::ChannelError;
use crate::process::console::ConsoleError;
use crate::process::init::hook_state_of;
use crate::state::{self, PersistedState, StateError, Status};

/// Errors of lifecycle operations.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// State directory problem (not found, exists, corrupt).
    #[error(transparent)]
    State(#[from] StateError),
    /// The bundle's config is unusable.
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// Namespace set-up in the runtime process.
    #[error(transparent)]
    Namespace(#[from] crate::namespaces::NamespaceError),
    /// Cgroup operation.
    #[error("container {id}: cgroup: {source}")]
    Cgroup {
        /// Container id.
        id: String,
        /// Cgroup error.
        #[source]
        source: Box<CgroupError>,
    },
    /// The parent <-> child channel.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The container init or exec child reported an error.
    #[error("{0}")]
    Child(String),
    /// The child exited before finishing its set-up.
    #[error("container process exited during set-up ({0})")]
    ChildDied(String),
    /// A hook run by the runtime process failed.
    #[error("{stage:?} hook: {source}")]
    Hook {
        /// Hook stage.
        stage: HookStage,
        /// Hook error.
        #[source]
        source: Box<crate::hooks::HookError>,
    },
    /// Console socket forwarding.
    #[error(transparent)]
    Console(#[from] ConsoleError),
    /// Mount destinations for a user-namespaced container could not be made.
    #[error(transparent)]
    MountTargets(#[from] crate::rootfs::MountTargetError),
    /// Id-mapped mount sources could not be prepared before the clone.
    #[error("preparing id-mapped mounts: {0}")]
    Idmap(#[from] crate::rootfs::RootfsError),
    /// A syscall in the runtime process failed.
    #[error("{op}: {source}")]
    Sys {
        /// What was attempted.
        op: &'static str,
        /// Errno.
        #[source]
        source: nix::Error,
    },
    /// A file operation in the runtime process failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The operation is not allowed in the container's current status.
    #[error("container {id} is {status}: cannot {op}")]
    BadStatus {
        /// Container id.
        id: String,
        /// Current status.
        status: Status,
        /// Refused operation.
        op: &'static str,
    },
    /// The init is gone. The wording matches runc's: containerd looks for
    /// "container not running" to treat a kill as already done.
    #[error("container {id}: container not running")]
    NotRunning {
        /// Container id.
        id: String,
    },
    /// Invalid request.
    #[error("{0}")]
    Invalid(String),
    /// Waiting for the container took too long.
    #[error("container {id}: timed out waiting for {what}")]
    Timeout {
        /// Container id.
        id: String,
        /// What we waited for.
        what: &'static str,
    },
}

/// The `state` command's JSON (runtime-spec state plus runc's extra fields).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StateReport {
    /// Spec version of the container's config.
    pub oci_version: String,
    /// Container id.
    pub id: String,
    /// Init pid (0 once stopped).
    pub pid: i32,
    /// created, running, paused or stopped.
    pub status: Status,
    /// Bundle path.
    pub bundle: PathBuf,
    /// Rootfs path.
    pub rootfs: PathBuf,
    /// Creation time.
    pub created: DateTime<Utc>,
    /// Owner user name (empty like runc when root owns it).
    pub owner: String,
    /// Annotations from the spec.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

/// A container found under the runtime root.
#[derive(Debug, Clone)]
pub struct Container {
    /// The runtime root (state directory parent).
    pub root: PathBuf,
    /// `<root>/<id>`.
    pub dir: PathBuf,
    /// Persisted facts.
    pub state: PersistedState,
}

impl Container {
    /// Loads `<root>/<id>`.
    pub fn load(root: &Path, id: &str) -> Result<Self, ContainerError> {
        let state = PersistedState::load(root, id)?;
        Ok(Container {
            root: root.to_path_buf(),
            dir: state::container_dir(root, id)?,
            state,
        })
    }

    /// Ids of every container under `root` (sorted).
    pub fn list(root: &Path) -> Result<Vec<String>, ContainerError> {
        let entries = match std::fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(ContainerError::Io {
                    op: "listing",
                    path: root.to_path_buf(),
                    source,
                })
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().join(state::STATE_FILE).exists())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Removes `<root>/<id>` when it holds no state file: what a `create`
    /// killed before it finished leaves behind (`delete --force` calls it).
    /// Returns whether something was removed.
    pub fn remove_leftovers(root: &Path, id: &str) -> Result<bool, ContainerError> {
        let dir = state::container_dir(root, id)?;
        if !dir.is_dir() || dir.join(state::STATE_FILE).exists() {
            return Ok(false);
        }
        std::fs::remove_dir_all(&dir).map_err(|source| ContainerError::Io {
            op: "removing",
            path: dir,
            source,
        })?;
        Ok(true)
    }

    /// Container id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Init pid (host).
    pub fn pid(&self) -> i32 {
        self.state.pid
    }

    /// Current status, derived now.
    pub fn status(&self) -> Status {
        self.state.status(&self.dir)
    }

    /// The `state` command's report.
    pub fn report(&self) -> StateReport {
        let status = self.status();
        let owner = if self.state.owner == 0 {
            String::new()
        } else {
            nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(self.state.owner))
                .ok()
                .flatten()
                .map(|u| u.name)
                .unwrap_or_else(|| self.state.owner.to_string())
        };
        StateReport {
            oci_version: self
                .state
                .spec
                .hook_parts()
                .map(|p| p.version)
                .unwrap_or_default(),
            id: self.state.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                self.state.pid
            },
            status,
            bundle: self.state.bundle.clone(),
            rootfs: self.state.rootfs.clone(),
            created: self.state.created,
            owner,
            annotations: self.state.annotations.clone(),
        }
    }

    /// The cgroup manager as resolved at create time (rebuilt from the stored
    /// path for state files written before it was kept).
    pub fn cgroup(&self) -> Result<CgroupManager, ContainerError> {
        if let Some(cg) = &self.state.cgroup {
            return Ok(cg.clone());
        }
        CgroupManager::new(Some(&self.state.cgroup_path), &self.state.id)
            .map_err(|e| self.cg_err(e))
    }

    fn cg_err(&self, source: CgroupError) -> ContainerError {
        ContainerError::Cgroup {
            id: self.state.id.clone(),
            source: Box::new(source),
        }
    }

    /// A stored spec that does not parse (a corrupt state file).
    fn spec_err(&self, source: serde_json::Error) -> ContainerError {
        ContainerError::State(StateError::Parse {
            path: self.dir.join(crate::state::STATE_FILE),
            source,
        })
    }

    /// The whole spec the container was created with.
    pub fn spec(&self) -> Result<oci_spec::runtime::Spec, ContainerError> {
        self.state.spec.parse().map_err(|e| self.spec_err(e))
    }

    /// Runs the stored spec's poststart or poststop hooks; runtime-spec has
    /// their failures logged, not returned.
    fn run_logged_hooks(&self, stage: HookStage, pid: Option<i32>, status: ContainerState) {
        let parts = match self.state.spec.hook_parts() {
            Ok(parts) => parts,
            Err(err) => {
                tracing::warn!(container_id = %self.id(), %err, %stage, "reading the hooks");
                return;
            }
        };
        let list = match (&parts.hooks, stage) {
            (Some(h), HookStage::Poststart) => h.poststart().as_deref(),
            (Some(h), HookStage::Poststop) => h.poststop().as_deref(),
            _ => None,
        };
        let Some(list) = list.filter(|l| !l.is_empty()) else {
            return;
        };
        let annotations = Some(self.state.annotations.clone()).filter(|a| !a.is_empty());
        let st = hook_state_of(
            self.id(),
            &parts.version,
            annotations,
            &self.state.bundle,
            pid,
            status,
        );
        if let Err(err) = crate::hooks::run_hooks(stage, list, &st) {
            tracing::warn!(container_id = %self.id(), %err, "{stage} hook failed");
        }
    }

    fn bad_status(&self, status: Status, op: &'static str) -> ContainerError {
        ContainerError::BadStatus {
            id: self.state.id.clone(),
            status,
            op,
        }
    }

    /// Sends `signal` to the init, or to every process of the cgroup with `all`.
    pub fn kill(&self, signal: Signal, all: bool) -> Result<(), ContainerError> {
        let status = self.status();
        if status == Status::Stopped && !all {
            return Err(ContainerError::NotRunning {
                id: self.state.id.clone(),
            });
        }
        if all {
            let cg = self.cgroup()?;
            // A frozen task only sees the signal once thawed.
            if status == Status::Paused && matches!(signal, Signal::SIGKILL) {
                cg.kill_all(signal).map_err(|e| self.cg_err(e))?;
                return cg.thaw().map_err(|e| self.cg_err(e));
            }
            return cg.kill_all(signal).map_err(|e| self.cg_err(e));
        }
        match nix::sys::signal::kill(Pid::from_raw(self.state.pid), signal) {
            Ok(()) => Ok(()),
            Err(nix::Error::ESRCH) => Err(ContainerError::NotRunning {
                id: self.state.id.clone(),
            }),
            Err(source) => Err(ContainerError::Sys { op: "kill", source }),
        }
    }

    /// Removes the container: with `force` a running one is killed first; a
    /// created one is always killed (its init never ran user code). Destroys
    /// the cgroup, runs poststop hooks and removes the state directory.
    pub fn delete(self, force: bool) -> Result<(), ContainerError> {
        let status = self.status();
        match status {
            Status::Stopped => {}
            Status::Created => self.kill_and_wait()?,
            Status::Running | Status::Paused | Status::Creating if force => self.kill_and_wait()?,
            _ => return Err(self.bad_status(status, "delete it without --force")),
        }
        let cg = self.cgroup()?;
        cg.destroy().map_err(|e| self.cg_err(e))?;
        // runtime-spec: poststop failures are logged, deletion goes on.
        self.run_logged_hooks(HookStage::Poststop, None, ContainerState::Stopped);
        std::fs::remove_dir_all(&self.dir).map_err(|source| ContainerError::Io {
            op: "removing",
            path: self.dir.clone(),
            source,
        })
    }

    fn kill_and_wait(&self) -> Result<(), ContainerError> {
        let cg = self.cgroup()?;
        if let Err(err) = cg.kill_all(Signal::SIGKILL) {
            tracing::debug!(%err, "kill_all before delete");
        }
        if self.state.paused {
            if let Err(err) = cg.thaw() {
                tracing::debug!(%err, "thaw before delete");
            }
        }
        if self.state.init_alive() {
            match nix::sys::signal::kill(Pid::from_raw(self.state.pid), Signal::SIGKILL) {
                Ok(()) | Err(nix::Error::ESRCH) => {}
                Err(source) => return Err(ContainerError::Sys { op: "kill", source }),
            }
        }
        self.wait_gone(Duration::from_secs(10))
    }

    /// Waits until the init is gone (or a zombie) and the cgroup is empty.
    fn wait_gone(&self, timeout: Duration) -> Result<(), ContainerError> {
        let cg = self.cgroup()?;
        let deadline = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            // Reap it if it is our child (`run`); otherwise its reaper will.
            let _ = nix::sys::wait::waitpid(
                Pid::from_raw(self.state.pid),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            let empty = cg.pids().map(|p| p.is_empty()).unwrap_or(true);
            if !self.state.init_alive() && empty {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(ContainerError::Timeout {
                    id: self.id().to_string(),
                    what: "its processes to exit",
                });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn leftovers_without_state_are_removed_and_real_ones_kept() {
        let root = tempfile::tempdir().unwrap();
        let stale = state::create_dir(root.path(), "stale").unwrap();
        std::fs::write(stale.join(state::EXEC_FIFO), "").unwrap();
        assert!(Container::remove_leftovers(root.path(), "stale").unwrap());
        assert!(!stale.exists());
        let real = state::create_dir(root.path(), "real").unwrap();
        std::fs::write(real.join(state::STATE_FILE), "{}").unwrap();
        assert!(!Container::remove_leftovers(root.path(), "real").unwrap());
        assert!(real.exists());
        assert!(Container::remove_leftovers(root.path(), "../x").is_err());
        assert_eq!(
            Container::list(root.path()).unwrap(),
            vec!["real".to_string()]
        );
    }
}
