//! Id-mapped bind mounts (`idmap` / `ridmap` with the mount's uidMappings and gidMappings).
//!
//! The source is cloned as a detached mount (open_tree OPEN_TREE_CLONE), the
//! clone gets MOUNT_ATTR_IDMAP with a user namespace holding the mount's
//! mappings, and move_mount attaches it on the destination fd resolved inside
//! the rootfs.
//!
//! Setting MOUNT_ATTR_IDMAP needs CAP_SYS_ADMIN over the source's filesystem,
//! which a container init that already entered its user namespace lacks for a
//! host filesystem. So `create` makes every id-mapped tree on the host side,
//! before the clone ([`PreparedIdmaps::prepare`]); the init only moves each
//! detached tree onto its destination (the fds survive the clone, and a
//! detached tree may be attached in any mount namespace its caller
//! administers). A caller of `prepare_rootfs` that passes no prepared trees
//! gets them made in place, which works for a privileged caller only.
//!
//! A mount without mappings of its own uses the container's user namespace
//! mapping (runtime-spec 1.2, as crun). The user namespace carrying the
//! mappings is the container's own when it is joined by path and the
//! mount's mappings equal `linux.uidMappings` / `gidMappings` (a pod's
//! pinned namespace: no process to make); otherwise a short-lived helper
//! child unshares CLONE_NEWUSER, its maps are written and its namespace is
//! kept as an fd ([`userns_from_mappings`]).
//!
//! Needs Linux 5.12 and a filesystem that supports idmapped mounts.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Pid};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Mount, Spec};

use super::mount_options;
use super::mounts::{mount_err, sys_mount_setattr, MountAttr};
use super::RootfsError;

/// MOUNT_ATTR_IDMAP (linux/mount.h).
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

fn idmap_err(step: &str, path: &Path, source: Errno) -> RootfsError {
    mount_err(format!("id-mapped mount ({step})"), path, source)
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
pub(super) fn sys_move_mount(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> Result<(), Errno> {
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
    // (all async-signal-safe) before exiting, so this is sound from a
    // multi-threaded caller (the shim) too.
    unsafe { nix::unistd::fork() }
}

/// The `/proc/<pid>/{uid,gid}_map` text for spec mappings.
fn map_text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// A new user namespace holding `uid` and `gid` mappings, as an fd (for
/// MOUNT_ATTR_IDMAP). Forks a helper that only unshares and waits; safe to
/// call from a multi-threaded process.
pub fn userns_from_mappings(
    uid: &[LinuxIdMapping],
    gid: &[LinuxIdMapping],
) -> Result<OwnedFd, RootfsError> {
    let ctx = Path::new("/proc/self/ns/user");
    if uid.is_empty() || gid.is_empty() {
        return Err(RootfsError::Unsupported(
            "an id-mapped mount needs both uid and gid mappings".to_string(),
        ));
    }
    let (ready_r, ready_w) = nix::unistd::pipe().map_err(|e| idmap_err("pipe", ctx, e))?;
    let (done_r, done_w) = nix::unistd::pipe().map_err(|e| idmap_err("pipe", ctx, e))?;
    match fork_helper().map_err(|e| idmap_err("fork", ctx, e))? {
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
            let result = userns_of(child, ready_r, uid, gid);
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
) -> Result<OwnedFd, RootfsError> {
    let proc_dir = Path::new("/proc").join(child.as_raw().to_string());
    let mut status = [1u8; 1];
    let n = nix::unistd::read(ready.as_fd(), &mut status)
        .map_err(|e| idmap_err("helper", &proc_dir, e))?;
    if n != 1 || status[0] != 0 {
        return Err(idmap_err(
            "helper unshare(CLONE_NEWUSER)",
            &proc_dir,
            Errno::EPERM,
        ));
    }
    for (file, text) in [("uid_map", map_text(uid)), ("gid_map", map_text(gid))] {
        let path = proc_dir.join(file);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|source| RootfsError::Io { path, source })?;
    }
    let ns = proc_dir.join("ns/user");
    nix::fcntl::open(&ns, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| idmap_err("open user namespace", &ns, e))
}

/// A detached, id-mapped clone of the mount tree at `source`: the whole tree
/// below it with `clone_recursive` (rbind), the mapping on every mount of the
/// clone with `idmap_recursive` (ridmap) or on its top mount only.
pub fn idmapped_tree(
    source: &Path,
    userns: BorrowedFd<'_>,
    clone_recursive: bool,
    idmap_recursive: bool,
) -> Result<OwnedFd, RootfsError> {
    let tree =
        sys_open_tree(source, clone_recursive).map_err(|e| idmap_err("open_tree", source, e))?;
    sys_set_idmap(tree.as_fd(), userns, idmap_recursive).map_err(|e| match e {
        Errno::ENOSYS => RootfsError::Unsupported("id-mapped mounts need Linux 5.12".to_string()),
        Errno::EINVAL => RootfsError::Unsupported(format!(
            "the filesystem of {source:?} does not support id-mapped mounts"
        )),
        e => idmap_err("mount_setattr", source, e),
    })?;
    Ok(tree)
}

/// Attaches a detached tree (from [`idmapped_tree`]) on the host path `target`.
pub fn attach_tree(tree: BorrowedFd<'_>, target: &Path) -> Result<(), RootfsError> {
    let dir = nix::fcntl::open(target, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| idmap_err("open target", target, e))?;
    sys_move_mount(tree, dir.as_fd()).map_err(|e| idmap_err("move_mount", target, e))
}

/// Whether a spec mount is an id-mapped bind, and if so (rbind, ridmap).
fn idmapped_bind_flags(m: &Mount) -> Result<Option<(bool, bool)>, RootfsError> {
    let dest = m.destination();
    let opts =
        mount_options::parse(m.options().as_deref().unwrap_or_default()).map_err(|source| {
            RootfsError::Options {
                destination: dest.clone(),
                source,
            }
        })?;
    // Mappings on a mount make it id-mapped even without the option, as in runc.
    let idmap = opts
        .idmap
        .or((m.uid_mappings().is_some() || m.gid_mappings().is_some()).then_some(false));
    let bind = m.typ().as_deref() == Some("bind") || opts.flags.contains(MsFlags::MS_BIND);
    match idmap {
        Some(recursive) if bind => Ok(Some((opts.flags.contains(MsFlags::MS_REC), recursive))),
        // mount_entry refuses it with the spec error.
        _ => Ok(None),
    }
}

/// uid and gid mappings of one id-mapped mount.
type Mappings = (Vec<LinuxIdMapping>, Vec<LinuxIdMapping>);

/// Id-mapped bind trees made by `create` on the host side, by mount index.
#[derive(Debug, Default)]
pub struct PreparedIdmaps {
    trees: Vec<(usize, OwnedFd)>,
}

impl PreparedIdmaps {
    /// Makes a detached id-mapped tree for every id-mapped bind mount of
    /// `spec` (relative sources resolved against `bundle`). Call before the
    /// clone, still privileged in the host's namespaces, and before entering
    /// pid/time namespaces for children (a helper process may be forked).
    pub fn prepare(spec: &Spec, bundle: &Path) -> Result<Self, RootfsError> {
        let linux = spec.linux().as_ref();
        let userns = linux
            .and_then(|l| l.namespaces().as_ref())
            .and_then(|nss| nss.iter().find(|n| n.typ() == LinuxNamespaceType::User));
        let joined_userns: Option<PathBuf> = userns.and_then(|n| n.path().clone());
        let spec_maps = (
            linux.and_then(|l| l.uid_mappings().clone()),
            linux.and_then(|l| l.gid_mappings().clone()),
        );
        let mut namespaces: Vec<(Option<Mappings>, OwnedFd)> = Vec::new();
        let mut trees = Vec::new();
        for (index, m) in spec.mounts().iter().flatten().enumerate() {
            let Some((rbind, ridmap)) = idmapped_bind_flags(m)? else {
                continue;
            };
            let dest = m.destination();
            let nonempty = |v: &Option<Vec<LinuxIdMapping>>| v.clone().filter(|v| !v.is_empty());
            // runtime-spec 1.2: without mappings on the mount, the container's
            // user namespace mapping is used (as crun does).
            let maps = match (nonempty(m.uid_mappings()), nonempty(m.gid_mappings())) {
                (Some(u), Some(g)) => Some((u, g)),
                (None, None) if userns.is_some() => None,
                _ => {
                    return Err(RootfsError::Unsupported(format!(
                        "idmap on {dest:?} without uidMappings and gidMappings on the mount \
                         (or a user namespace for the container)"
                    )))
                }
            };
            let source = m
                .source()
                .as_deref()
                .ok_or_else(|| RootfsError::InvalidSpec {
                    field: "mounts[].source",
                    value: format!("missing for bind mount {dest:?}"),
                })?;
            let source = bundle.join(source);
            let pos = match namespaces.iter().position(|(k, _)| *k == maps) {
                Some(p) => p,
                None => {
                    let container_maps = maps.is_none()
                        || maps.as_ref().is_some_and(|(u, g)| {
                            spec_maps.0.as_ref() == Some(u) && spec_maps.1.as_ref() == Some(g)
                        });
                    let fd = match (&joined_userns, &maps) {
                        (Some(path), _) if container_maps => nix::fcntl::open(
                            path,
                            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                            Mode::empty(),
                        )
                        .map_err(|e| idmap_err("open the container's user namespace", path, e))?,
                        (_, Some((u, g))) => userns_from_mappings(u, g)?,
                        (_, None) => userns_from_mappings(
                            spec_maps.0.as_deref().unwrap_or_default(),
                            spec_maps.1.as_deref().unwrap_or_default(),
                        )?,
                    };
                    namespaces.push((maps, fd));
                    namespaces.len() - 1
                }
            };
            let tree = idmapped_tree(&source, namespaces[pos].1.as_fd(), rbind, ridmap)?;
            tracing::debug!(?dest, ?source, rbind, ridmap, "id-mapped tree prepared");
            trees.push((index, tree));
        }
        Ok(PreparedIdmaps { trees })
    }

    /// The prepared tree for mount number `index` of the spec.
    pub(super) fn tree(&self, index: usize) -> Option<BorrowedFd<'_>> {
        self.trees
            .iter()
            .find(|(i, _)| *i == index)
            .map(|(_, fd)| fd.as_fd())
    }

    /// Whether no mount needed an id-mapped tree.
    pub fn is_empty(&self) -> bool {
        self.trees.is_empty()
    }
}

/// Attaches an id-mapped bind on `target` (resolved at `dest`): the tree
/// `create` prepared when there is one, else one made here.
pub(super) fn idmapped_bind(
    m: &Mount,
    prepared: Option<BorrowedFd<'_>>,
    source: &Path,
    target: BorrowedFd<'_>,
    dest: &Path,
    rbind: bool,
    ridmap: bool,
) -> Result<(), RootfsError> {
    let made;
    let tree = match prepared {
        Some(tree) => tree,
        None => {
            let (Some(uid), Some(gid)) = (m.uid_mappings().as_deref(), m.gid_mappings().as_deref())
            else {
                return Err(RootfsError::Unsupported(format!(
                    "idmap on {dest:?} without uidMappings and gidMappings on the mount"
                )));
            };
            let userns = userns_from_mappings(uid, gid)?;
            made = idmapped_tree(source, userns.as_fd(), rbind, ridmap)?;
            made.as_fd()
        }
    };
    sys_move_mount(tree, target).map_err(|e| idmap_err("move_mount", dest, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxIdMappingBuilder;

    fn m(c: u32, h: u32, s: u32) -> LinuxIdMapping {
        LinuxIdMappingBuilder::default()
            .container_id(c)
            .host_id(h)
            .size(s)
            .build()
            .unwrap()
    }

    #[test]
    fn map_text_lists_container_host_size() {
        assert_eq!(
            map_text(&[m(0, 1000, 1), m(1, 100000, 65536)]),
            "0 1000 1\n1 100000 65536\n"
        );
    }

    #[test]
    fn only_bind_mounts_with_idmap_or_mappings_are_id_mapped() {
        let mount = |typ: &str, opts: &[&str], maps: bool| {
            let mut out = oci_spec::runtime::MountBuilder::default()
                .destination("/d")
                .typ(typ)
                .source("/s")
                .options(opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .build()
                .unwrap();
            if maps {
                out.set_uid_mappings(Some(vec![m(0, 1000, 10)]));
                out.set_gid_mappings(Some(vec![m(0, 1000, 10)]));
            }
            out
        };
        let flags = |mo: Mount| idmapped_bind_flags(&mo).unwrap();
        assert_eq!(flags(mount("bind", &["rbind"], false)), None);
        assert_eq!(
            flags(mount("bind", &["rbind"], true)),
            Some((true, false)),
            "mappings alone mean idmap"
        );
        assert_eq!(
            flags(mount("none", &["bind", "ridmap"], true)),
            Some((false, true))
        );
        assert_eq!(flags(mount("tmpfs", &["idmap"], true)), None);
    }

    #[test]
    fn userns_from_mappings_refuses_empty_maps() {
        assert!(matches!(
            userns_from_mappings(&[], &[m(0, 1, 1)]),
            Err(RootfsError::Unsupported(_))
        ));
    }
}
