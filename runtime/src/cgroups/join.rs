//! Putting a new container process into its cgroups without the kernel's
//! global threadgroup lock.
//!
//! Writing a pid to `cgroup.procs` takes `cgroup_threadgroup_rwsem` for
//! writing, and that percpu rwsem waits for an RCU grace period whenever it
//! was idle (5-20 ms on a small host, once per container). Two paths skip
//! the lock:
//! - cgroup2: `clone3(CLONE_INTO_CGROUP)` creates the process directly in
//!   the cgroup (the fork path only takes the lock for reading);
//! - v1: a thread moving *itself* by writing `0` to a hierarchy's `tasks`
//!   file takes no global lock. A freshly cloned init is single-threaded,
//!   so moving its one thread moves the process.
//!
//! The `tasks` files are opened by the runtime before the clone: v1 checks
//! the opener's credentials, so the write works even after the child has
//! entered a user namespace.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

use super::{write_file, CgroupError, CgroupManager};

/// Open handles that let a new process join a container's cgroups.
#[derive(Debug)]
pub struct CgroupJoin {
    /// Each v1 hierarchy's `tasks` file, opened for writing.
    v1_tasks: Vec<(PathBuf, OwnedFd)>,
    /// The cgroup2 directory (for `CLONE_INTO_CGROUP`) and its path.
    v2: Option<(PathBuf, OwnedFd)>,
}

impl CgroupManager {
    /// Opens what [`CgroupJoin`] needs; call after [`CgroupManager::create`]
    /// and before cloning the process.
    pub fn prepare_join(&self) -> Result<CgroupJoin, CgroupError> {
        let mut v1_tasks: Vec<(PathBuf, OwnedFd)> = Vec::new();
        for d in self.v1.values() {
            let path = d.dir.join("tasks");
            if v1_tasks.iter().any(|(p, _)| *p == path) {
                continue; // co-mounted controllers share one directory
            }
            let fd = open_cg(&path, OFlag::O_WRONLY)?;
            v1_tasks.push((path, fd));
        }
        let v2 = match &self.unified {
            Some(dir) => Some((dir.clone(), open_cg(dir, OFlag::O_DIRECTORY)?)),
            None => None,
        };
        Ok(CgroupJoin { v1_tasks, v2 })
    }
}

fn open_cg(path: &std::path::Path, flags: OFlag) -> Result<OwnedFd, CgroupError> {
    open(path, flags | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| CgroupError::Read {
        path: path.to_owned(),
        source: e.into(),
    })
}

impl CgroupJoin {
    /// The cgroup2 directory to pass to `clone3(CLONE_INTO_CGROUP)`.
    pub fn v2_dir(&self) -> Option<BorrowedFd<'_>> {
        self.v2.as_ref().map(|(_, fd)| fd.as_fd())
    }

    /// In the new process, single-threaded: moves it into every v1
    /// hierarchy (the caller's only thread is the whole process).
    pub fn join_v1_self(&self) -> Result<(), CgroupError> {
        for (path, fd) in &self.v1_tasks {
            // "0" names the writing thread itself.
            nix::unistd::write(fd, b"0").map_err(|e| CgroupError::Write {
                path: path.clone(),
                value: "0".into(),
                source: e.into(),
            })?;
        }
        Ok(())
    }

    /// In the runtime, when the process could not be cloned straight into
    /// the cgroup2 directory: moves `pid` there the usual (locking) way.
    pub fn add_v2(&self, pid: i32) -> Result<(), CgroupError> {
        match &self.v2 {
            Some((dir, _)) => write_file(&dir.join("cgroup.procs"), &pid.to_string()),
            None => Ok(()),
        }
    }
}
