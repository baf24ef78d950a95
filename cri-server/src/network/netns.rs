//! Pinned pod network namespaces under `/run/berth/netns/<pod_id>`.
//!
//! berthd runs on a multi-threaded tokio runtime, and a network namespace is
//! a per-thread attribute: `unshare(CLONE_NEWNET)` on a worker would move
//! whatever task runs there next into the pod's network. So the unshare
//! happens on a short-lived dedicated `std::thread` that also brings `lo` up
//! (an `SIOCSIFFLAGS` ioctl: no plugin binary and no netlink crate needed,
//! and lo is up before any CNI plugin runs), bind-mounts its own
//! `/proc/thread-self/ns/net` onto the pin file so the namespace outlives the
//! thread, then exits. The caller's namespace is never touched.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Where berthd pins pod network namespaces.
pub const DEFAULT_NETNS_DIR: &str = "/run/berth/netns";

/// Errors creating or removing a pod network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The pod id cannot be a file name.
    #[error("invalid pod id {0:?} for a netns name")]
    InvalidId(String),
    /// The pin dir or file could not be created or removed.
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
    /// A namespace syscall failed.
    #[error("{op} for netns {path}")]
    Sys {
        /// The syscall.
        op: &'static str,
        /// The pin path.
        path: PathBuf,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// The helper thread died.
    #[error("netns helper thread for {0} panicked")]
    Thread(PathBuf),
}

/// A pinned network namespace of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetns {
    path: PathBuf,
}

impl PodNetns {
    /// Creates a new network namespace with `lo` up, pinned at `dir/pod_id`.
    ///
    /// Blocks for a thread spawn and join (about a millisecond); async
    /// callers run it under `tokio::task::spawn_blocking`.
    pub fn create(dir: &Path, pod_id: &str) -> Result<PodNetns, NetnsError> {
        let path = pin_path(dir, pod_id)?;
        std::fs::create_dir_all(dir).map_err(|source| NetnsError::Io {
            op: "creating netns dir",
            path: dir.to_path_buf(),
            source,
        })?;
        // create_new: an existing pin belongs to a live pod; never reuse it.
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|source| NetnsError::Io {
                op: "creating netns pin file",
                path: path.clone(),
                source,
            })?;
        let thread_path = path.clone();
        let joined = std::thread::Builder::new()
            .name("berth-netns".into())
            .spawn(move || new_netns_on_this_thread(&thread_path))
            .map_err(|source| NetnsError::Io {
                op: "spawning netns thread",
                path: path.clone(),
                source,
            })?
            .join();
        let res = match joined {
            Ok(r) => r,
            Err(_) => Err(NetnsError::Thread(path.clone())),
        };
        if let Err(e) = res {
            // Leave nothing behind: the mount may or may not have happened.
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        tracing::debug!(path = %path.display(), "pod netns created");
        Ok(PodNetns { path })
    }

    /// The namespace at `dir/pod_id` (which may or may not exist).
    pub fn at(dir: &Path, pod_id: &str) -> Result<PodNetns, NetnsError> {
        Ok(PodNetns {
            path: pin_path(dir, pod_id)?,
        })
    }

    /// The pin path, as passed in `CNI_NETNS`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the pin exists.
    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Unmounts and deletes the pin; succeeds when it is already gone.
    pub fn remove(&self) -> Result<(), NetnsError> {
        match umount2(&self.path, MntFlags::MNT_DETACH) {
            // EINVAL: not a mount point (already unmounted); ENOENT: gone.
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(source) => {
                return Err(NetnsError::Sys {
                    op: "umount",
                    path: self.path.clone(),
                    source,
                })
            }
        }
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(NetnsError::Io {
                op: "removing netns pin",
                path: self.path.clone(),
                source,
            }),
        }
    }
}

fn pin_path(dir: &Path, pod_id: &str) -> Result<PathBuf, NetnsError> {
    if pod_id.is_empty() || pod_id.contains('/') || pod_id == "." || pod_id == ".." {
        return Err(NetnsError::InvalidId(pod_id.to_string()));
    }
    Ok(dir.join(pod_id))
}

/// Runs on a dedicated thread that exits right after: it leaves the thread
/// in the new namespace, which is then only held by the bind mount.
fn new_netns_on_this_thread(pin: &Path) -> Result<(), NetnsError> {
    let sys = |op, source| NetnsError::Sys {
        op,
        path: pin.to_path_buf(),
        source,
    };
    unshare(CloneFlags::CLONE_NEWNET).map_err(|e| sys("unshare(CLONE_NEWNET)", e))?;
    loopback_up().map_err(|e| sys("bringing lo up", e))?;
    mount(
        Some("/proc/thread-self/ns/net"),
        pin,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| sys("bind-mounting netns", e))
}

/// Sets IFF_UP on `lo` in the calling thread's network namespace.
fn loopback_up() -> Result<(), nix::Error> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket(2) call; the result is checked before use.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: fd is a fresh, valid descriptor owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads into req, a valid ifreq with a NUL-ended name.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(nix::Error::last());
    }
    // SAFETY: the flags member of the union was just filled by SIOCGIFFLAGS.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    // SAFETY: SIOCSIFFLAGS reads req, a valid ifreq with name and flags set.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_ids_are_refused() {
        let dir = Path::new("/run/berth/netns");
        for id in ["", "a/b", "..", "."] {
            assert!(matches!(
                PodNetns::at(dir, id),
                Err(NetnsError::InvalidId(_))
            ));
        }
    }

    #[test]
    fn remove_of_missing_pin_succeeds() {
        let dir = tempfile::tempdir().unwrap();
        let ns = PodNetns::at(dir.path(), "gone").unwrap();
        assert!(!ns.exists());
        ns.remove().unwrap();
        ns.remove().unwrap();
    }
}
