//! After pivot_root: readonlyPaths, maskedPaths, a read-only root and the
//! final rootfs propagation.
//!
//! The container's root is "/" now, so lookups cannot reach the host; they
//! still go through openat2 and the mounts through `/proc/self/fd/N`, so a
//! symlink swapped in by another container sharing a volume cannot redirect
//! them. The /dev/null used for masking must really be the null device: a
//! masking bind of something else (say a procfs file reached through a
//! symlinked /dev/null) would expose it instead of hiding the path
//! (CVE-2025-31133). A missing path is skipped, as the runtime-spec allows.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::Spec;
use tracing::debug;

use super::mounts::{mount_err, remount_bind_at};
use super::safe_path::{self, proc_fd_path};
use super::{rootfs_propagation, RootfsError};

/// Resolves container paths under "/" and names them for mount(2).
struct Resolver {
    root: OwnedFd,
    /// /proc is a real procfs: `/proc/self/fd/N` can name resolved inodes.
    proc_fd: bool,
}

impl Resolver {
    fn new() -> Result<Self, RootfsError> {
        let root = nix::fcntl::open(
            "/",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| mount_err("open", Path::new("/"), e))?;
        Ok(Self {
            root,
            proc_fd: safe_path::proc_fd_usable(),
        })
    }

    /// Opens `path` (O_PATH, plus `extra`), None when it does not exist.
    fn open(&self, path: &Path, extra: OFlag) -> Result<Option<OwnedFd>, RootfsError> {
        match safe_path::open_in_root(
            self.root.as_fd(),
            path,
            OFlag::O_PATH | extra,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(e) if safe_path::errno_of(&e) == Some(Errno::ENOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The path to hand to mount(2) for an fd resolved from `path`.
    fn mount_path(&self, fd: BorrowedFd<'_>, path: &Path) -> PathBuf {
        if self.proc_fd {
            proc_fd_path(fd)
        } else {
            path.to_path_buf()
        }
    }
}

fn file_type(fd: BorrowedFd<'_>, path: &Path) -> Result<(SFlag, u64), RootfsError> {
    let st = nix::sys::stat::fstat(fd).map_err(|e| mount_err("fstat", path, e))?;
    Ok((
        SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT),
        st.st_rdev,
    ))
}

/// Bind-mounts `path` onto itself and makes it read-only, keeping its other flags.
fn readonly_path(r: &Resolver, path: &Path) -> Result<(), RootfsError> {
    let Some(fd) = r.open(path, OFlag::empty())? else {
        debug!(?path, "readonly path missing; skipped");
        return Ok(());
    };
    let target = r.mount_path(fd.as_fd(), path);
    nix::mount::mount(
        Some(&target),
        &target,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| mount_err("bind mount (readonlyPaths)", path, e))?;
    // Look the path up again: the old fd names the directory under the new mount.
    let Some(mounted) = r.open(path, OFlag::empty())? else {
        return Err(mount_err("re-open (readonlyPaths)", path, Errno::ENOENT));
    };
    remount_bind_at(
        &r.mount_path(mounted.as_fd(), path),
        MsFlags::MS_RDONLY,
        true,
        path,
    )
}

/// Hides `path`: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask_path(r: &Resolver, path: &Path, null: Option<BorrowedFd<'_>>) -> Result<(), RootfsError> {
    let Some(fd) = r.open(path, OFlag::empty())? else {
        debug!(?path, "masked path missing; skipped");
        return Ok(());
    };
    let target = r.mount_path(fd.as_fd(), path);
    let (kind, _) = file_type(fd.as_fd(), path)?;
    let result = if kind == SFlag::S_IFDIR {
        nix::mount::mount(
            Some("tmpfs"),
            &target,
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
    } else {
        let null = null.ok_or_else(|| RootfsError::Refused {
            destination: path.to_path_buf(),
            reason: "masking a file needs /dev/null in the container".to_string(),
        })?;
        let source = r.mount_path(null, Path::new("/dev/null"));
        nix::mount::mount(
            Some(&source),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    result.map_err(|e| mount_err("mask (maskedPaths)", path, e))
}

/// Opens the container's /dev/null without following a symlink and checks it is the null device (1:3).
fn open_null(r: &Resolver) -> Result<Option<OwnedFd>, RootfsError> {
    let path = Path::new("/dev/null");
    let Some(fd) = r.open(path, OFlag::O_NOFOLLOW)? else {
        return Ok(None);
    };
    let (kind, rdev) = file_type(fd.as_fd(), path)?;
    if kind != SFlag::S_IFCHR || rdev != nix::sys::stat::makedev(1, 3) {
        return Err(RootfsError::Refused {
            destination: path.to_path_buf(),
            reason: "/dev/null is not the null character device; refusing to mask with it"
                .to_string(),
        });
    }
    Ok(Some(fd))
}

/// After pivot: maskedPaths, readonlyPaths, root.readonly remount, final rootfsPropagation.
pub fn finish_rootfs(spec: &Spec) -> Result<(), RootfsError> {
    let r = Resolver::new()?;
    let linux = spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or_default()
    {
        readonly_path(&r, Path::new(p))?;
    }
    let masked = linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or_default();
    if !masked.is_empty() {
        let null = open_null(&r)?;
        for p in masked {
            mask_path(&r, Path::new(p), null.as_ref().map(|f| f.as_fd()))?;
        }
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount_bind_at(Path::new("/"), MsFlags::MS_RDONLY, true, Path::new("/"))?;
    }
    if let Some(flags) = rootfs_propagation(spec)? {
        nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .map_err(|e| mount_err("set rootfsPropagation on", Path::new("/"), e))?;
    }
    Ok(())
}
