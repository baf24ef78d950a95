//! The container root filesystem: spec mounts, /dev, pivot_root and the
//! final hardening (masked and read-only paths, read-only root).
//!
//! Order inside the container's init (already in its own mount namespace):
//! [`prepare_rootfs`], optionally [`bind_console`], then [`pivot_root`] (or
//! [`move_root`] for `--no-pivot`), then [`finish_rootfs`].

mod cgroup_mount;
mod copyup;
mod devices;
pub mod idmap;
mod masked;
pub mod mount_options;
pub mod mount_targets;
pub mod mountinfo;
mod mounts;
pub mod overlay;
mod pivot;
pub mod safe_path;

#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

pub use idmap::PreparedIdmaps;
pub use masked::finish_rootfs;
pub use mount_targets::{create_mount_targets, MountTargetError};
pub use pivot::{move_root, pivot_root, root_is_initramfs};

/// What [`prepare_rootfs`] needs to know about the container.
#[derive(Debug, Clone, Copy)]
pub struct RootfsConfig<'a> {
    /// The container's spec.
    pub spec: &'a Spec,
    /// Absolute host path of the rootfs (spec.root.path resolved against the bundle).
    pub rootfs: &'a Path,
    /// The container runs in a new user namespace: device nodes are bind-mounted from the host instead of mknod'ed.
    pub in_user_ns: bool,
    /// The container has its own cgroup namespace (affects the /sys/fs/cgroup mount).
    pub cgroup_ns: bool,
    /// Id-mapped bind trees made before the clone ([`PreparedIdmaps::prepare`]);
    /// without them id-mapped binds are made in place (privileged callers only).
    pub idmapped: Option<&'a PreparedIdmaps>,
}

/// Errors of the rootfs set-up.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A path inside the rootfs could not be resolved or created.
    #[error(transparent)]
    SafePath(#[from] safe_path::SafePathError),
    /// A mount's options are invalid or unsupported.
    #[error("mount {destination:?}: invalid options")]
    Options {
        /// The mount destination in the container.
        destination: PathBuf,
        /// The parse error.
        #[source]
        source: mount_options::OptionsError,
    },
    /// A mount(2) (or umount2, mount_setattr) call failed.
    #[error("{action} {target:?} failed")]
    Mount {
        /// What was attempted, e.g. "mount tmpfs on" or "remount read-only".
        action: String,
        /// The target, as a path in the container (or on the host before the rootfs exists).
        target: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// A mount was refused for security reasons.
    #[error("mount {destination:?} refused: {reason}")]
    Refused {
        /// The mount destination in the container.
        destination: PathBuf,
        /// Why.
        reason: String,
    },
    /// A device node or a /dev symlink could not be created.
    #[error("{action} {path:?} failed")]
    Device {
        /// What was attempted.
        action: &'static str,
        /// The path in the container.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// Copying a directory's content into its tmpfs (`tmpcopyup`) failed.
    #[error("{action} {path:?} failed")]
    CopyUp {
        /// What was attempted.
        action: &'static str,
        /// The path in the container.
        path: PathBuf,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// A spec value is invalid.
    #[error("invalid {field}: {value:?}")]
    InvalidSpec {
        /// The spec field.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// pivot_root / MS_MOVE / chroot and their helpers.
    #[error("switching root to {rootfs:?}: {step} failed")]
    Pivot {
        /// The new root.
        rootfs: PathBuf,
        /// The step that failed.
        step: &'static str,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// Reading host state (mountinfo, /proc/self/cgroup, a source's metadata).
    #[error("reading {path:?}")]
    Io {
        /// The host path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Making an overlay with the new mount API failed.
    #[error("overlay on {target:?}: {step} failed{}", if log.is_empty() { String::new() } else { format!(" ({log})") })]
    Overlay {
        /// The step (fsopen, fsconfig(...), fsmount, move_mount).
        step: &'static str,
        /// Where the overlay was to be attached.
        target: PathBuf,
        /// The kernel's messages from the filesystem context.
        log: String,
        /// The errno.
        #[source]
        source: Errno,
    },
    /// A feature this runtime does not implement.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Parses `linux.rootfsPropagation`; None when unset.
fn rootfs_propagation(spec: &Spec) -> Result<Option<MsFlags>, RootfsError> {
    let value = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone());
    match value.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => mount_options::propagation_flags(v)
            .map(Some)
            .ok_or_else(|| RootfsError::InvalidSpec {
                field: "linux.rootfsPropagation",
                value: v.to_string(),
            }),
    }
}

/// Runs in the container's init child, already inside its own mount namespace, before pivot_root:
/// root propagation (rootfsPropagation, default rslave of "/" so nothing reaches the host), bind rootfs
/// on itself, every spec mount in order (destinations resolved inside the rootfs), then, unless
/// /dev is a bind mount (as runc), the default devices, linux.devices, the /dev symlinks and ptmx.
///
/// Relative bind-mount sources are resolved by the kernel against the current
/// directory: the caller should be in the bundle directory, as runc is.
pub fn prepare_rootfs(cfg: &RootfsConfig) -> Result<(), RootfsError> {
    let rootfs = std::fs::canonicalize(cfg.rootfs).map_err(|source| RootfsError::Io {
        path: cfg.rootfs.to_path_buf(),
        source,
    })?;
    pivot::prepare_root_propagation(rootfs_propagation(cfg.spec)?, &rootfs)?;
    let root = nix::fcntl::open(
        &rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| RootfsError::Pivot {
        rootfs: rootfs.clone(),
        step: "open new root",
        source,
    })?;
    let ctx = mounts::MountContext {
        root: root.as_fd(),
        rootfs: &rootfs,
        in_user_ns: cfg.in_user_ns,
        cgroup_ns: cfg.cgroup_ns,
        label_option: cfg
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.mount_label().as_deref())
            .and_then(crate::lsm::mount_label_option),
        idmapped: cfg.idmapped,
    };
    for (index, m) in cfg.spec.mounts().iter().flatten().enumerate() {
        mounts::mount_entry(&ctx, index, m)?;
    }
    devices::setup_dev(&ctx, cfg.spec)?;
    Ok(())
}

/// Bind-mounts the terminal's pty slave (a path like /dev/pts/N) over <rootfs>/dev/console.
///
/// Before pivot with the host rootfs path, or after it with `rootfs = "/"`;
/// either way a procfs must be mounted at /proc (the mount goes through fds).
pub fn bind_console(rootfs: &Path, pty_slave: &Path) -> Result<(), RootfsError> {
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| RootfsError::Pivot {
        rootfs: rootfs.to_path_buf(),
        step: "open root",
        source,
    })?;
    devices::bind_console(root.as_fd(), pty_slave)
}
