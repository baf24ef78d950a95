//! After pivot_root: readonlyPaths, maskedPaths, a read-only root and the
//! final rootfs propagation.
//!
//! These run with the container's root as "/", so path lookups can no longer
//! leave it; a missing path is skipped, as the runtime-spec allows.

use std::path::Path;

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::SFlag;
use oci_spec::runtime::Spec;
use tracing::debug;

use super::mounts::{mount_err, remount_bind_at};
use super::{rootfs_propagation, RootfsError};

/// Bind-mounts `path` onto itself and makes it read-only, keeping its other flags.
fn readonly_path(path: &Path) -> Result<(), RootfsError> {
    match nix::mount::mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(Errno::ENOENT) => {
            debug!(?path, "readonly path missing; skipped");
            return Ok(());
        }
        Err(e) => return Err(mount_err("bind mount (readonlyPaths)", path, e)),
    }
    remount_bind_at(path, MsFlags::MS_RDONLY, true, path)
}

/// Hides `path`: /dev/null over a file, an empty read-only tmpfs over a directory.
fn mask_path(path: &Path) -> Result<(), RootfsError> {
    let st = match nix::sys::stat::stat(path) {
        Ok(st) => st,
        Err(Errno::ENOENT) => {
            debug!(?path, "masked path missing; skipped");
            return Ok(());
        }
        Err(e) => return Err(mount_err("stat (maskedPaths)", path, e)),
    };
    let is_dir = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFDIR;
    let result = if is_dir {
        nix::mount::mount(
            Some("tmpfs"),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
    } else {
        nix::mount::mount(
            Some("/dev/null"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    result.map_err(|e| mount_err("mask (maskedPaths)", path, e))
}

/// After pivot: maskedPaths, readonlyPaths, root.readonly remount, final rootfsPropagation.
pub fn finish_rootfs(spec: &Spec) -> Result<(), RootfsError> {
    let linux = spec.linux().as_ref();
    for p in linux
        .and_then(|l| l.readonly_paths().as_deref())
        .unwrap_or_default()
    {
        readonly_path(Path::new(p))?;
    }
    for p in linux
        .and_then(|l| l.masked_paths().as_deref())
        .unwrap_or_default()
    {
        mask_path(Path::new(p))?;
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
