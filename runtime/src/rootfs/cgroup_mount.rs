//! The `cgroup` mount type (/sys/fs/cgroup inside the container).
//!
//! - cgroup v2 host: a cgroup2 mount (own cgroup namespace) or a bind of the
//!   container's own cgroup directory (shared cgroup namespace).
//! - v1 or hybrid host (a tmpfs at /sys/fs/cgroup with one mount per
//!   hierarchy, possibly `unified` cgroup2): a tmpfs with one sub-mount per
//!   host hierarchy, each a fresh mount (own cgroup namespace, where the kernel
//!   roots it at the namespace's cgroup) or a bind of the container's directory
//!   in that hierarchy (shared namespace), and the host's symlinks such as
//!   `cpu -> cpu,cpuacct`. The tmpfs is remounted read-only when asked.
//!
//! Without a cgroup namespace the container's directories are read from
//! /proc/self/cgroup, so the caller must have joined the container's cgroup first.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;
use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, TMPFS_MAGIC};
use tracing::debug;

use super::mount_options::MountOptions;
use super::mounts::{
    apply_propagation, mount_err, mount_on_fd, remount_bind_at, set_recursive_attr, MountContext,
};
use super::safe_path::{self, proc_fd_path};
use super::{mountinfo, RootfsError};

const HOST_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One line of /proc/self/cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CgroupEntry {
    hierarchy: String,
    controllers: Vec<String>,
    path: String,
}

fn parse_proc_cgroup(text: &str) -> Vec<CgroupEntry> {
    text.lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let hierarchy = parts.next()?.to_string();
            let controllers = parts
                .next()?
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            let path = parts.next()?.to_string();
            Some(CgroupEntry {
                hierarchy,
                controllers,
                path,
            })
        })
        .collect()
}

fn read_own_cgroups() -> Result<Vec<CgroupEntry>, RootfsError> {
    let path = PathBuf::from("/proc/self/cgroup");
    let text = std::fs::read_to_string(&path).map_err(|source| RootfsError::Io { path, source })?;
    Ok(parse_proc_cgroup(&text))
}

/// The /proc/self/cgroup entry for a host hierarchy mount.
fn entry_for<'a>(entries: &'a [CgroupEntry], m: &mountinfo::MountInfo) -> Option<&'a CgroupEntry> {
    if m.fstype == "cgroup2" {
        return entries
            .iter()
            .find(|e| e.hierarchy == "0" && e.controllers.is_empty());
    }
    let opts: Vec<&str> = m.super_options.split(',').collect();
    entries.iter().find(|e| {
        !e.controllers.is_empty() && e.controllers.iter().all(|c| opts.contains(&c.as_str()))
    })
}

/// Host directory of our cgroup in a hierarchy mounted at `m`.
fn host_dir(m: &mountinfo::MountInfo, cgroup_path: &str) -> Result<PathBuf, RootfsError> {
    let rel = Path::new(cgroup_path).strip_prefix(&m.root).map_err(|_| {
        RootfsError::Unsupported(format!(
            "cgroup {cgroup_path:?} is outside the hierarchy mounted at {:?} (root {:?})",
            m.mount_point, m.root
        ))
    })?;
    Ok(m.mount_point.join(rel))
}

/// Mounts the `cgroup` type at `dest` inside the rootfs.
pub(super) fn mount_cgroup(
    ctx: &MountContext,
    dest: &Path,
    opts: &MountOptions,
) -> Result<(), RootfsError> {
    let st = nix::sys::statfs::statfs(HOST_CGROUP_ROOT)
        .map_err(|e| mount_err("statfs", Path::new(HOST_CGROUP_ROOT), e))?;
    if st.filesystem_type() == CGROUP2_SUPER_MAGIC {
        mount_v2(ctx, dest, opts)
    } else if st.filesystem_type() == TMPFS_MAGIC {
        mount_v1(ctx, dest, opts)
    } else {
        Err(RootfsError::Unsupported(format!(
            "host {HOST_CGROUP_ROOT} is neither cgroup2 nor a tmpfs of v1 hierarchies"
        )))
    }
}

fn sub_flags(opts: &MountOptions) -> MsFlags {
    opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)
}

/// Bind-mounts `host` on `target` (an fd resolved at `dest`) and applies the per-mount flags.
fn bind_with_flags(
    ctx: &MountContext,
    host: &Path,
    target: BorrowedFd<'_>,
    dest: &Path,
    flags: MsFlags,
) -> Result<(), RootfsError> {
    mount_on_fd(
        Some(host),
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| mount_err(format!("bind mount {host:?} on"), dest, e))?;
    let remount = flags & super::mount_options::REMOUNT_FLAGS;
    if remount.is_empty() {
        return Ok(());
    }
    // The old fd names the directory under the new mount: look the mount up again.
    let mounted = safe_path::open_in_root(ctx.root, dest, OFlag::O_PATH, Mode::empty())?;
    remount_bind_at(&proc_fd_path(mounted.as_fd()), remount, false, dest)
}

/// A new cgroup/cgroup2 mount on `target`, made read-only per mount when asked.
///
/// Outside a new cgroup namespace the superblock is the host's (rw): asking
/// mount(2) for MS_RDONLY there fails with EBUSY, so read-only is applied
/// with a bind remount afterwards, which only affects this mount.
fn fresh_mount(
    ctx: &MountContext,
    fstype: &str,
    target: BorrowedFd<'_>,
    dest: &Path,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), RootfsError> {
    mount_on_fd(
        Some(Path::new(fstype)),
        target,
        Some(fstype),
        flags & !MsFlags::MS_RDONLY,
        data,
    )
    .map_err(|e| mount_err(format!("mount {fstype} on"), dest, e))?;
    let remount = flags & super::mount_options::REMOUNT_FLAGS;
    if !flags.contains(MsFlags::MS_RDONLY) {
        return Ok(());
    }
    let mounted = safe_path::open_in_root(ctx.root, dest, OFlag::O_PATH, Mode::empty())?;
    remount_bind_at(&proc_fd_path(mounted.as_fd()), remount, false, dest)
}

fn mount_v2(ctx: &MountContext, dest: &Path, opts: &MountOptions) -> Result<(), RootfsError> {
    let target = safe_path::mkdir_all_in_root(ctx.root, dest, Mode::from_bits_truncate(0o755))?;
    let flags = sub_flags(opts);
    if ctx.cgroup_ns {
        let data = opts.data_string();
        fresh_mount(ctx, "cgroup2", target.as_fd(), dest, flags, data.as_deref())?;
    } else {
        let own = read_own_cgroups()?;
        let path = own
            .iter()
            .find(|e| e.hierarchy == "0")
            .map(|e| e.path.clone())
            .unwrap_or_else(|| "/".to_string());
        let host = Path::new(HOST_CGROUP_ROOT).join(path.trim_start_matches('/'));
        bind_with_flags(ctx, &host, target.as_fd(), dest, flags)?;
    }
    let mounted = safe_path::open_in_root(ctx.root, dest, OFlag::O_PATH, Mode::empty())?;
    set_recursive_attr(mounted.as_fd(), opts.recursive, dest)?;
    apply_propagation(mounted.as_fd(), &opts.propagation, dest)
}

fn mount_v1(ctx: &MountContext, dest: &Path, opts: &MountOptions) -> Result<(), RootfsError> {
    let flags = sub_flags(opts);
    let target = safe_path::mkdir_all_in_root(ctx.root, dest, Mode::from_bits_truncate(0o755))?;
    // The tmpfs stays writable until the hierarchy directories exist.
    mount_on_fd(
        Some(Path::new("tmpfs")),
        target.as_fd(),
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        Some("mode=755"),
    )
    .map_err(|e| mount_err("mount tmpfs on", dest, e))?;
    let tmpfs = safe_path::open_in_root(
        ctx.root,
        dest,
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        Mode::empty(),
    )?;

    let mounts = mountinfo::read().map_err(|source| RootfsError::Io {
        path: "/proc/self/mountinfo".into(),
        source,
    })?;
    let own = if ctx.cgroup_ns {
        Vec::new()
    } else {
        read_own_cgroups()?
    };
    for m in mounts.iter().filter(|m| {
        matches!(m.fstype.as_str(), "cgroup" | "cgroup2")
            && m.mount_point.parent() == Some(Path::new(HOST_CGROUP_ROOT))
    }) {
        let Some(name) = m.mount_point.file_name() else {
            continue;
        };
        let sub_dest = dest.join(name);
        let sub =
            safe_path::mkdir_all_in_root(ctx.root, &sub_dest, Mode::from_bits_truncate(0o755))?;
        if ctx.cgroup_ns {
            // A fresh mount is rooted at the cgroup namespace's root.
            let data: Vec<&str> = m
                .super_options
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro" | ""))
                .collect();
            let data = (!data.is_empty()).then(|| data.join(","));
            fresh_mount(
                ctx,
                &m.fstype,
                sub.as_fd(),
                &sub_dest,
                flags,
                data.as_deref(),
            )?;
        } else {
            let Some(entry) = entry_for(&own, m) else {
                debug!(hierarchy = ?m.mount_point, "not a member of this hierarchy; skipped");
                continue;
            };
            let host = host_dir(m, &entry.path)?;
            bind_with_flags(ctx, &host, sub.as_fd(), &sub_dest, flags)?;
        }
    }
    copy_symlinks(tmpfs.as_fd(), dest)?;
    if flags.contains(MsFlags::MS_RDONLY) {
        remount_bind_at(
            &proc_fd_path(tmpfs.as_fd()),
            flags & super::mount_options::REMOUNT_FLAGS,
            false,
            dest,
        )?;
    }
    set_recursive_attr(tmpfs.as_fd(), opts.recursive, dest)?;
    apply_propagation(tmpfs.as_fd(), &opts.propagation, dest)
}

/// Recreates the host's /sys/fs/cgroup symlinks (`cpu -> cpu,cpuacct`) in the container's tmpfs.
fn copy_symlinks(dir: std::os::fd::BorrowedFd<'_>, dest: &Path) -> Result<(), RootfsError> {
    let host = Path::new(HOST_CGROUP_ROOT);
    let entries = std::fs::read_dir(host).map_err(|source| RootfsError::Io {
        path: host.to_path_buf(),
        source,
    })?;
    for entry in entries.flatten() {
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if !is_link {
            continue;
        }
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        match nix::unistd::symlinkat(&target, dir, entry.file_name().as_os_str()) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(mount_err("symlink in", &dest.join(entry.file_name()), e)),
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_parsing_and_matching() {
        let entries =
            parse_proc_cgroup("9:name=systemd:/a\n2:cpu,cpuacct:/b\n4:memory:/c/d\n0::/e\n");
        assert_eq!(entries.len(), 4);
        let mi = |fstype: &str, opts: &str, root: &str| mountinfo::MountInfo {
            root: root.to_string(),
            mount_point: PathBuf::from("/sys/fs/cgroup/x"),
            optional: vec![],
            fstype: fstype.to_string(),
            super_options: opts.to_string(),
        };
        assert_eq!(
            entry_for(&entries, &mi("cgroup", "rw,cpu,cpuacct", "/"))
                .unwrap()
                .path,
            "/b"
        );
        assert_eq!(
            entry_for(&entries, &mi("cgroup", "rw,xattr,name=systemd", "/"))
                .unwrap()
                .path,
            "/a"
        );
        assert_eq!(
            entry_for(&entries, &mi("cgroup2", "rw", "/")).unwrap().path,
            "/e"
        );
        assert!(entry_for(&entries, &mi("cgroup", "rw,pids", "/")).is_none());
        assert_eq!(
            host_dir(&mi("cgroup", "rw,memory", "/c"), "/c/d").unwrap(),
            PathBuf::from("/sys/fs/cgroup/x/d")
        );
        assert!(host_dir(&mi("cgroup", "rw,memory", "/z"), "/c/d").is_err());
    }
}
