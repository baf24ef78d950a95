//! Root propagation, and switching the process root to the rootfs.
//!
//! pivot_root(".", ".") stacks the old root on top of the new one; detaching
//! it right away needs no temporary directory in the image. pivot_root(2)
//! refuses to move the initial ramfs/tmpfs "rootfs" mount (the initramfs: it
//! can never be unmounted); there, and for `--no-pivot`, the rootfs is moved
//! over "/" with MS_MOVE and entered with chroot(2). Whether "/" is that mount
//! is read from mountinfo (fstype "rootfs"): a statfs magic alone cannot tell,
//! because an ordinary tmpfs root pivots fine and the initramfs may be either
//! ramfs or tmpfs.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;
use tracing::{debug, warn};

use super::{mountinfo, RootfsError};

fn pivot_err(rootfs: &Path, step: &'static str, source: Errno) -> RootfsError {
    RootfsError::Pivot {
        rootfs: rootfs.to_path_buf(),
        step,
        source,
    }
}

/// The rootfs path as mountinfo spells it (symlinks such as /var/run resolved).
fn canonical(rootfs: &Path) -> Result<PathBuf, RootfsError> {
    std::fs::canonicalize(rootfs).map_err(|source| RootfsError::Io {
        path: rootfs.to_path_buf(),
        source,
    })
}

fn read_mounts() -> Result<Vec<mountinfo::MountInfo>, RootfsError> {
    mountinfo::read().map_err(|source| RootfsError::Io {
        path: PathBuf::from("/proc/self/mountinfo"),
        source,
    })
}

/// Sets the propagation of "/" (default rslave: host mounts still reach the
/// container, nothing done here reaches the host), makes the rootfs' parent
/// mount private when it is shared (pivot_root refuses a shared parent), and
/// binds the rootfs onto itself so it is a mount point pivot_root accepts.
pub(super) fn prepare_root_propagation(
    propagation: Option<MsFlags>,
    rootfs: &Path,
) -> Result<(), RootfsError> {
    let flags = propagation.unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
        .map_err(|e| pivot_err(rootfs, "set propagation of /", e))?;
    let mounts = read_mounts()?;
    if let Some(parent) = mountinfo::containing_mount(&mounts, rootfs) {
        if parent.is_shared() {
            debug!(parent = ?parent.mount_point, "making the rootfs parent mount private");
            nix::mount::mount(
                None::<&str>,
                &parent.mount_point,
                None::<&str>,
                MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .map_err(|e| pivot_err(rootfs, "make parent mount private", e))?;
        }
    }
    nix::mount::mount(
        Some(rootfs),
        rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| pivot_err(rootfs, "bind rootfs on itself", e))
}

/// True when the process root is the kernel's initial rootfs (initramfs), which pivot_root cannot move.
pub fn root_is_initramfs() -> Result<bool, RootfsError> {
    Ok(is_initramfs(&read_mounts()?))
}

fn is_initramfs(mounts: &[mountinfo::MountInfo]) -> bool {
    mountinfo::containing_mount(mounts, Path::new("/")).is_some_and(|m| m.fstype == "rootfs")
}

/// pivot_root into rootfs (MS_MOVE + chroot fallback when "/" is an initramfs), detach the old root, chdir("/").
pub fn pivot_root(rootfs: &Path) -> Result<(), RootfsError> {
    let rootfs = &canonical(rootfs)?;
    let mounts = read_mounts()?;
    if is_initramfs(&mounts) {
        warn!(
            ?rootfs,
            "\"/\" is the initramfs: using MS_MOVE + chroot instead of pivot_root"
        );
        return move_root(rootfs);
    }
    // pivot_root(2) refuses a shared parent of the current root; when "/" is the
    // namespace's root mount it is its own parent. It is detached right after,
    // so making it private changes nothing the container can see.
    if mountinfo::containing_mount(&mounts, Path::new("/")).is_some_and(|m| m.is_shared()) {
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|e| pivot_err(rootfs, "make old root private", e))?;
    }
    let dir = OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC;
    let old_root =
        nix::fcntl::open("/", dir, Mode::empty()).map_err(|e| pivot_err(rootfs, "open /", e))?;
    let new_root = nix::fcntl::open(rootfs, dir, Mode::empty())
        .map_err(|e| pivot_err(rootfs, "open rootfs", e))?;
    nix::unistd::fchdir(new_root.as_fd()).map_err(|e| pivot_err(rootfs, "fchdir rootfs", e))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| pivot_err(rootfs, "pivot_root", e))?;
    // The old root now sits on top of "."; make it a slave first so the
    // detach below does not propagate unmounts to the host.
    nix::unistd::fchdir(old_root.as_fd()).map_err(|e| pivot_err(rootfs, "fchdir old root", e))?;
    nix::mount::mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| pivot_err(rootfs, "make old root rslave", e))?;
    nix::mount::umount2(".", MntFlags::MNT_DETACH)
        .map_err(|e| pivot_err(rootfs, "detach old root", e))?;
    nix::unistd::chdir("/").map_err(|e| pivot_err(rootfs, "chdir /", e))
}

/// Enters rootfs with MS_MOVE + chroot (for `--no-pivot` and initramfs hosts).
///
/// chroot alone leaves the old mount tree reachable to a process that can
/// chroot again, so every mount outside the rootfs is detached first (the
/// ones the rootfs lives under are kept, they cannot be detached).
pub fn move_root(rootfs: &Path) -> Result<(), RootfsError> {
    let rootfs = &canonical(rootfs)?;
    let mut mounts = read_mounts()?;
    mounts.sort_by_key(|m| std::cmp::Reverse(m.mount_point.as_os_str().len()));
    for m in &mounts {
        let mp = &m.mount_point;
        if mp.starts_with(rootfs) || rootfs.starts_with(mp) {
            continue;
        }
        // Slave first so the detach does not propagate to the host.
        let _ = nix::mount::mount(
            None::<&str>,
            mp,
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        );
        match nix::mount::umount2(mp, MntFlags::MNT_DETACH) {
            // EINVAL/ENOENT: already gone with a detached parent.
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => warn!(mount = ?mp, error = %e, "cannot detach host mount before chroot"),
        }
    }
    nix::unistd::chdir(rootfs).map_err(|e| pivot_err(rootfs, "chdir rootfs", e))?;
    nix::mount::mount(
        Some(rootfs),
        "/",
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .map_err(|e| pivot_err(rootfs, "MS_MOVE rootfs to /", e))?;
    nix::unistd::chroot(".").map_err(|e| pivot_err(rootfs, "chroot", e))?;
    nix::unistd::chdir("/").map_err(|e| pivot_err(rootfs, "chdir /", e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn initramfs_is_recognised_by_fstype_only() {
        let parse = |lines: &[&str]| -> Vec<mountinfo::MountInfo> {
            lines
                .iter()
                .filter_map(|l| mountinfo::parse_line(l))
                .collect()
        };
        let initramfs = parse(&["1 1 0:2 / / rw - rootfs rootfs rw,size=100k"]);
        assert!(is_initramfs(&initramfs));
        // A tmpfs "/" (a root mounted by a container manager) pivots fine.
        let tmpfs = parse(&["20 1 0:30 / / rw - tmpfs tmpfs rw"]);
        assert!(!is_initramfs(&tmpfs));
        // A real root mounted over the hidden initramfs (the usual boot) is not it either.
        let booted = parse(&[
            "1 1 0:2 / / rw - rootfs rootfs rw",
            "27 1 254:0 / / rw - ext4 /dev/vda rw",
        ]);
        assert!(!is_initramfs(&booted));
        assert!(!root_is_initramfs().unwrap());
    }
}
