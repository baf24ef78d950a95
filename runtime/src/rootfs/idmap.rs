//! Id-mapped bind mounts (`idmap` / `ridmap` with the mount's uidMappings and gidMappings).
//!
//! The source is cloned as a detached mount (open_tree OPEN_TREE_CLONE), the
//! clone gets MOUNT_ATTR_IDMAP with a user namespace holding the mount's
//! mappings, and move_mount attaches it on the destination fd resolved inside
//! the rootfs. The user namespace comes from a short-lived helper child that
//! only unshares CLONE_NEWUSER and waits while its maps are written.
//!
//! Needs Linux 5.12 and a filesystem that supports idmapped mounts; the caller
//! needs CAP_SYS_ADMIN over the source filesystem (so not from inside a new
//! user namespace for a host filesystem).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxIdMapping, Mount};

use super::mounts::{mount_err, sys_mount_setattr, MountAttr};
use super::RootfsError;

/// MOUNT_ATTR_IDMAP (linux/mount.h).
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

fn idmap_err(step: &str, dest: &Path, source: Errno) -> RootfsError {
    mount_err(format!("id-mapped mount ({step})"), dest, source)
}

/// open_tree(2): a detached copy of the mount tree at `path` (recursive with AT_RECURSIVE).
fn sys_open_tree(path: &Path, recursive: bool) -> Result<OwnedFd, Errno> {
    let c_path =
        std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| Errno::EINVAL)?;
    let mut flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: `c_path` is NUL-terminated and outlives the call; the flags are plain integers.
    let ret = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c_path.as_ptr(), flags) };
    if ret < 0 {
        return Err(Errno::last());
    }
    let fd = RawFd::try_from(ret).map_err(|_| Errno::EBADF)?;
    // SAFETY: open_tree succeeded and returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mount_setattr(2) MOUNT_ATTR_IDMAP with `userns` on the detached tree `tree`.
fn sys_set_idmap(
    tree: BorrowedFd<'_>,
    userns: BorrowedFd<'_>,
    recursive: bool,
) -> Result<(), Errno> {
    let value = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns.as_raw_fd()).map_err(|_| Errno::EBADF)?,
    };
    sys_mount_setattr(tree, recursive, &value)
}

/// move_mount(2) of the detached tree onto the inode behind `target` (an fd, no path lookup).
fn sys_move_mount(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: the empty paths are static NUL-terminated strings, both fds stay
    // open for the call, and the flags are plain integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

fn fork_helper() -> nix::Result<ForkResult> {
    // SAFETY: the helper child only calls unshare, write, read and _exit
    // (all async-signal-safe) before exiting.
    unsafe { nix::unistd::fork() }
}

/// The `/proc/<pid>/{uid,gid}_map` text for spec mappings.
fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// A user namespace holding `uid` and `gid` mappings, as an fd.
fn make_userns(
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
    dest: &Path,
) -> Result<OwnedFd, RootfsError> {
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(|e| idmap_err("pipe", dest, e))?;
    let (done_r, done_w) = nix::unistd::pipe().map_err(|e| idmap_err("pipe", dest, e))?;
    match fork_helper().map_err(|e| idmap_err("fork", dest, e))? {
        ForkResult::Child => {
            drop(ready_r);
            drop(done_w);
            let code = match nix::sched::unshare(CloneFlags::CLONE_NEWUSER) {
                Ok(()) => 0,
                Err(_) => 1,
            };
            let _ = nix::unistd::write(ready_w.as_fd(), &[code]);
            let mut buf = [0u8; 1];
            // Blocks until the parent closes its end (EOF) once it holds the namespace fd.
            let _ = nix::unistd::read(done_r.as_fd(), &mut buf);
            // SAFETY: _exit ends the helper without running the parent's atexit handlers.
            unsafe { libc::_exit(i32::from(code)) }
        }
        ForkResult::Parent { child } => {
            drop(ready_w);
            drop(done_r);
            let result = userns_of(child, ready_r, uid, gid, dest);
            drop(done_w);
            let _ = waitpid(child, None);
            result
        }
    }
}

fn userns_of(
    child: Pid,
    ready: OwnedFd,
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
    dest: &Path,
) -> Result<OwnedFd, RootfsError> {
    let mut status = [1u8; 1];
    let n =
        nix::unistd::read(ready.as_fd(), &mut status).map_err(|e| idmap_err("helper", dest, e))?;
    if n != 1 || status[0] != 0 {
        return Err(idmap_err(
            "helper unshare(CLONE_NEWUSER)",
            dest,
            Errno::EPERM,
        ));
    }
    let proc_dir = Path::new("/proc").join(child.as_raw().to_string());
    for (file, text) in [("uid_map", map_text(uid)), ("gid_map", map_text(gid))] {
        let path = proc_dir.join(file);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|source| RootfsError::Io { path, source })?;
    }
    nix::fcntl::open(
        &proc_dir.join("ns/user"),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| idmap_err("open user namespace", dest, e))
}

/// Bind-mounts `source` on `target` (resolved at `dest`) through an id-mapped clone.
pub(super) fn idmapped_bind(
    m: &Mount,
    source: &Path,
    target: BorrowedFd<'_>,
    dest: &Path,
    rbind: bool,
    ridmap: bool,
) -> Result<(), RootfsError> {
    let (Some(uid), Some(gid)) = (m.uid_mappings().as_deref(), m.gid_mappings().as_deref()) else {
        return Err(RootfsError::Unsupported(format!(
            "idmap on {dest:?} without uidMappings and gidMappings on the mount"
        )));
    };
    let userns = make_userns(uid, gid, dest)?;
    let tree = sys_open_tree(source, rbind).map_err(|e| idmap_err("open_tree", dest, e))?;
    sys_set_idmap(tree.as_fd(), userns.as_fd(), ridmap).map_err(|e| match e {
        Errno::ENOSYS => RootfsError::Unsupported("id-mapped mounts need Linux 5.12".to_string()),
        e => idmap_err("mount_setattr", dest, e),
    })?;
    sys_move_mount(tree.as_fd(), target).map_err(|e| idmap_err("move_mount", dest, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxIdMappingBuilder;

    #[test]
    fn map_text_lists_container_host_size() {
        let m = |c: u32, h: u32, s: u32| {
            LinuxIdMappingBuilder::default()
                .container_id(c)
                .host_id(h)
                .size(s)
                .build()
                .unwrap()
        };
        assert_eq!(
            map_text(&[m(0, 1000, 1), m(1, 100000, 65536)]),
            "0 1000 1\n1 100000 65536\n"
        );
    }
}
