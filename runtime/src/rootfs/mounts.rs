//! Spec mounts: each destination is resolved inside the rootfs and the mount
//! is made on the resolved inode through `/proc/self/fd/N`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::statfs::PROC_SUPER_MAGIC;
use nix::sys::statvfs::FsFlags;
use oci_spec::runtime::Mount;
use tracing::{debug, warn};

use super::mount_options::{self, MountOptions, RecursiveAttr};
use super::safe_path::{self, proc_fd_path};
use super::{cgroup_mount, copyup, idmap, RootfsError};

/// Shared state of one prepare_rootfs run.
pub(super) struct MountContext<'a> {
    /// O_PATH fd of the rootfs (after it was bound on itself).
    pub root: BorrowedFd<'a>,
    /// Canonical host path of the rootfs.
    pub rootfs: &'a Path,
    /// The container has its own user namespace.
    pub in_user_ns: bool,
    /// The container has its own cgroup namespace.
    pub cgroup_ns: bool,
    /// `context="..."` for linux.mountLabel, when SELinux is on and a label is set.
    pub label_option: Option<String>,
    /// Id-mapped bind trees `create` made on the host side.
    pub idmapped: Option<&'a idmap::PreparedIdmaps>,
}

/// /proc files a bind mount may cover (lxcfs-style overrides), as runc allows.
const PROC_MOUNT_ALLOWLIST: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// mount(2) onto the inode behind `target` (an fd resolved inside the root).
pub(super) fn mount_on_fd(
    source: Option<&Path>,
    target: BorrowedFd<'_>,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), Errno> {
    nix::mount::mount(source, &proc_fd_path(target), fstype, flags, data)
}

pub(super) fn mount_err(action: impl Into<String>, target: &Path, source: Errno) -> RootfsError {
    RootfsError::Mount {
        action: action.into(),
        target: target.to_path_buf(),
        source,
    }
}

/// struct mount_attr from linux/mount.h (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
pub(super) struct MountAttr {
    /// MOUNT_ATTR_* bits to set.
    pub attr_set: u64,
    /// MOUNT_ATTR_* bits to clear.
    pub attr_clr: u64,
    /// Propagation type (0: unchanged).
    pub propagation: u64,
    /// User namespace fd for MOUNT_ATTR_IDMAP.
    pub userns_fd: u64,
}

/// The raw mount_setattr(2) call on the mount at `fd`, and every mount
/// below it when `recursive`.
pub(super) fn sys_mount_setattr(
    fd: BorrowedFd<'_>,
    recursive: bool,
    value: &MountAttr,
) -> Result<(), Errno> {
    let mut flags = libc::AT_EMPTY_PATH;
    if recursive {
        flags |= libc::AT_RECURSIVE;
    }
    // SAFETY: the empty path is a NUL-terminated static string, `value` is a fully
    // initialised mount_attr whose exact size is passed, and `fd` stays open for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            flags,
            value as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Applies recursive attributes (`rro`, `rnosuid`, ...) to the mount at `fd` and everything below it.
pub(super) fn set_recursive_attr(
    fd: BorrowedFd<'_>,
    attr: RecursiveAttr,
    dest: &Path,
) -> Result<(), RootfsError> {
    if attr.is_empty() {
        return Ok(());
    }
    let value = MountAttr {
        attr_set: attr.set,
        attr_clr: attr.clear,
        propagation: 0,
        userns_fd: 0,
    };
    sys_mount_setattr(fd, true, &value).map_err(|e| match e {
        Errno::ENOSYS => RootfsError::Unsupported(format!(
            "recursive mount options on {dest:?} need mount_setattr(2) (Linux 5.12)"
        )),
        e => mount_err("mount_setattr(AT_RECURSIVE)", dest, e),
    })
}

/// mount(2) flags equivalent to the statvfs flags of a mount (the ones a user namespace may lock).
fn current_flags(target: &Path) -> Result<MsFlags, Errno> {
    let st = nix::sys::statvfs::statvfs(target)?;
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (st_flag, ms) in [
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(st_flag) {
            out |= ms;
        }
    }
    Ok(out)
}

/// `flags` plus the mount's current per-mount flags; an explicit atime mode replaces the current one.
fn merge_current(flags: MsFlags, current: MsFlags) -> MsFlags {
    let atime = MsFlags::MS_NOATIME | MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME;
    if flags.intersects(atime) {
        (current & !atime) | flags
    } else {
        current | flags
    }
}

/// Bind-remounts the mount at `target` (a path or `/proc/self/fd/N`) with `flags`.
///
/// With `keep_current` the mount's existing flags (nosuid, nodev, noexec, ...)
/// are kept, as for readonlyPaths and a read-only root. Without it, the flags
/// are exactly the requested ones, except that inside a user namespace the
/// kernel refuses to clear flags it locked on the source mount: on EPERM the
/// remount is retried with the current flags added, as runc does.
pub(super) fn remount_bind_at(
    target: &Path,
    flags: MsFlags,
    keep_current: bool,
    dest: &Path,
) -> Result<(), RootfsError> {
    let base = MsFlags::MS_REMOUNT | MsFlags::MS_BIND;
    let current = || current_flags(target).map_err(|e| mount_err("statvfs", dest, e));
    let first = if keep_current {
        merge_current(flags, current()?)
    } else {
        flags
    };
    match nix::mount::mount(
        None::<&Path>,
        target,
        None::<&str>,
        base | first,
        None::<&str>,
    ) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) if !keep_current => {
            let retry = merge_current(flags, current()?);
            debug!(
                ?dest,
                ?retry,
                "bind remount retried with the mount's locked flags"
            );
            nix::mount::mount(
                None::<&Path>,
                target,
                None::<&str>,
                base | retry,
                None::<&str>,
            )
            .map_err(|e| mount_err("bind remount", dest, e))
        }
        Err(e) => Err(mount_err("bind remount", dest, e)),
    }
}

/// Applies propagation changes to the mount at `fd`.
pub(super) fn apply_propagation(
    fd: BorrowedFd<'_>,
    propagation: &[MsFlags],
    dest: &Path,
) -> Result<(), RootfsError> {
    for p in propagation {
        mount_on_fd(None, fd, None, *p, None)
            .map_err(|e| mount_err(format!("set propagation {p:?} on"), dest, e))?;
    }
    Ok(())
}

/// The container path of an fd inside the rootfs (for checks on where a mount really lands).
fn container_path(ctx: &MountContext, fd: BorrowedFd<'_>) -> Result<PathBuf, RootfsError> {
    let link = proc_fd_path(fd);
    let host =
        std::fs::read_link(&link).map_err(|source| RootfsError::Io { path: link, source })?;
    let rel = host.strip_prefix(ctx.rootfs).unwrap_or(&host);
    Ok(Path::new("/").join(rel))
}

fn is_procfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == PROC_SUPER_MAGIC)
}

/// Refuses mounts that would hide or redirect parts of the container's procfs
/// (CVE-2019-16884, CVE-2019-19921): /proc must be a procfs, and below /proc
/// only procfs sources and a few lxcfs-style file overrides are allowed.
fn check_proc_mount(
    resolved: &Path,
    typ: &str,
    source: Option<&Path>,
    is_bind: bool,
) -> Result<(), RootfsError> {
    if !resolved.starts_with("/proc") {
        return Ok(());
    }
    let refused = |reason: &str| RootfsError::Refused {
        destination: resolved.to_path_buf(),
        reason: reason.to_string(),
    };
    if typ == "proc" {
        return Ok(());
    }
    let source_is_proc = is_bind && source.is_some_and(is_procfs);
    if source_is_proc {
        return Ok(());
    }
    if resolved == Path::new("/proc") {
        return Err(refused("/proc can only be a proc filesystem"));
    }
    if PROC_MOUNT_ALLOWLIST
        .iter()
        .any(|p| Path::new(p) == resolved)
    {
        return Ok(());
    }
    Err(refused("mounting over a /proc entry is not allowed"))
}

/// proc and sysfs must not be mounted on a symlink (runc refuses it as well):
/// a symlinked /proc could make later /proc writes land somewhere else.
fn refuse_symlink_destination(ctx: &MountContext, dest: &Path) -> Result<(), RootfsError> {
    match safe_path::open_in_root(
        ctx.root,
        dest,
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
        Mode::empty(),
    ) {
        Ok(fd) => {
            let st = nix::sys::stat::fstat(fd.as_fd()).map_err(|e| mount_err("fstat", dest, e))?;
            if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFLNK {
                return Err(RootfsError::Refused {
                    destination: dest.to_path_buf(),
                    reason: "the destination is a symlink".to_string(),
                });
            }
            Ok(())
        }
        Err(e) if safe_path::errno_of(&e) == Some(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Mounts one spec entry (number `index` of the spec's mounts) inside the rootfs.
pub(super) fn mount_entry(ctx: &MountContext, index: usize, m: &Mount) -> Result<(), RootfsError> {
    let dest = m.destination().as_path();
    let typ = m.typ().as_deref().unwrap_or("");
    let options = m.options().as_deref().unwrap_or_default();
    let mut opts = mount_options::parse(options).map_err(|source| RootfsError::Options {
        destination: dest.to_path_buf(),
        source,
    })?;
    if typ == "bind" {
        opts.flags |= MsFlags::MS_BIND;
    }
    debug!(?dest, typ, source = ?m.source(), ?opts, "mounting");
    // Mappings on a mount make it id-mapped even without the option, as in runc.
    if opts.idmap.is_none() && (m.uid_mappings().is_some() || m.gid_mappings().is_some()) {
        opts.idmap = Some(false);
    }
    if opts.idmap.is_some() && !opts.is_bind() {
        return Err(RootfsError::InvalidSpec {
            field: "mounts[].options",
            value: format!("idmap on {dest:?} needs a bind mount"),
        });
    }
    if typ == "cgroup" && !opts.is_bind() {
        return cgroup_mount::mount_cgroup(ctx, dest, &opts);
    }
    if matches!(typ, "proc" | "sysfs") {
        refuse_symlink_destination(ctx, dest)?;
    }
    let source = m.source().as_deref();
    if opts.is_bind() {
        bind_entry(ctx, index, m, source, typ, &opts)
    } else {
        fs_entry(ctx, dest, source, typ, &opts)
    }
}

/// A bind (or rbind) mount of a host file or directory.
fn bind_entry(
    ctx: &MountContext,
    index: usize,
    m: &Mount,
    source: Option<&Path>,
    typ: &str,
    opts: &MountOptions,
) -> Result<(), RootfsError> {
    let dest = m.destination().as_path();
    let source = source.ok_or_else(|| RootfsError::InvalidSpec {
        field: "mounts[].source",
        value: format!("missing for bind mount {dest:?}"),
    })?;
    let meta = std::fs::metadata(source).map_err(|e| RootfsError::Io {
        path: source.to_path_buf(),
        source: e,
    })?;
    let target = safe_path::create_mount_target(ctx.root, dest, meta.is_dir())?;
    let resolved = container_path(ctx, target.as_fd())?;
    check_proc_mount(&resolved, typ, Some(source), true)?;
    let rbind = opts.flags.contains(MsFlags::MS_REC);
    if let Some(recursive) = opts.idmap {
        let prepared = ctx.idmapped.and_then(|p| p.tree(index));
        idmap::idmapped_bind(m, prepared, source, target.as_fd(), dest, rbind, recursive)?;
    } else {
        let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        mount_on_fd(Some(source), target.as_fd(), None, flags, None)
            .map_err(|e| mount_err(format!("bind mount {source:?} on"), dest, e))?;
    }
    finish_entry(ctx, dest, opts, true)
}

/// Re-resolves `dest` (now the new mount's root) and applies remount flags, recursive attributes and propagation.
fn finish_entry(
    ctx: &MountContext,
    dest: &Path,
    opts: &MountOptions,
    bind: bool,
) -> Result<(), RootfsError> {
    let mounted = safe_path::open_in_root(ctx.root, dest, OFlag::O_PATH, Mode::empty())?;
    let remount = opts.remount_flags();
    if bind && !remount.is_empty() {
        remount_bind_at(&proc_fd_path(mounted.as_fd()), remount, false, dest)?;
    }
    set_recursive_attr(mounted.as_fd(), opts.recursive, dest)?;
    apply_propagation(mounted.as_fd(), &opts.propagation, dest)
}

/// A filesystem mount (tmpfs, proc, sysfs, devpts, mqueue, ...).
fn fs_entry(
    ctx: &MountContext,
    dest: &Path,
    source: Option<&Path>,
    typ: &str,
    opts: &MountOptions,
) -> Result<(), RootfsError> {
    if typ.is_empty() || typ == "none" {
        return Err(RootfsError::InvalidSpec {
            field: "mounts[].type",
            value: format!("missing for non-bind mount {dest:?}"),
        });
    }
    if opts.tmpcopyup && typ != "tmpfs" {
        return Err(RootfsError::InvalidSpec {
            field: "mounts[].options",
            value: format!("tmpcopyup on {dest:?} needs type tmpfs, not {typ:?}"),
        });
    }
    let target = safe_path::create_mount_target(ctx.root, dest, true)?;
    let resolved = container_path(ctx, target.as_fd())?;
    check_proc_mount(&resolved, typ, source, false)?;
    let source = source.unwrap_or(Path::new(typ));
    let mut data = opts.data_string();
    // Like runc, the SELinux mount label goes on the filesystems created for
    // the container, not on proc and sysfs (they keep their kernel labels).
    if let Some(label) = ctx
        .label_option
        .as_deref()
        .filter(|_| !matches!(typ, "proc" | "sysfs"))
    {
        data = Some(match data {
            Some(d) => format!("{d},{label}"),
            None => label.to_string(),
        });
    }
    // tmpcopyup fills the tmpfs before it becomes read-only.
    let flags = if opts.tmpcopyup {
        opts.flags & !MsFlags::MS_RDONLY
    } else {
        opts.flags
    };
    match mount_on_fd(
        Some(source),
        target.as_fd(),
        Some(typ),
        flags,
        data.as_deref(),
    ) {
        Ok(()) => {}
        // Without its own network (ipc) namespace a user-namespaced container may
        // not mount sysfs (mqueue): give it the host's instead, read-only flags applied.
        Err(Errno::EPERM) if ctx.in_user_ns && matches!(typ, "sysfs" | "mqueue") => {
            let host = if typ == "sysfs" {
                "/sys"
            } else {
                "/dev/mqueue"
            };
            warn!(
                ?dest,
                typ, host, "mount refused in the user namespace; bind-mounting the host's"
            );
            mount_on_fd(
                Some(Path::new(host)),
                target.as_fd(),
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )
            .map_err(|e| mount_err(format!("bind mount {host} on"), dest, e))?;
            return finish_entry(ctx, dest, &with_bind_remount(opts), true);
        }
        Err(e) => return Err(mount_err(format!("mount {typ} on"), dest, e)),
    }
    if opts.tmpcopyup {
        // `target` still names the directory the tmpfs now covers.
        let fresh = safe_path::open_in_root(
            ctx.root,
            dest,
            OFlag::O_PATH | OFlag::O_DIRECTORY,
            Mode::empty(),
        )?;
        copyup::copy_dir(target.as_fd(), fresh.as_fd(), dest)?;
        if opts.flags.contains(MsFlags::MS_RDONLY) {
            remount_bind_at(
                &proc_fd_path(fresh.as_fd()),
                opts.remount_flags(),
                false,
                dest,
            )?;
        }
    }
    finish_entry(ctx, dest, opts, false)
}

/// Options for the bind fallback of a filesystem mount: its flags become a bind remount.
fn with_bind_remount(opts: &MountOptions) -> MountOptions {
    let mut o = opts.clone();
    o.flags |= MsFlags::MS_BIND;
    o
}
