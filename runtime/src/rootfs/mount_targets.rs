//! Mount destinations created ahead of time, for containers in a user
//! namespace.
//!
//! The init creates a missing mount destination (`/etc/hosts`, a volume's
//! directory) after it has entered the container's user namespace. There the
//! image's directories belong to an unmapped owner, so `mkdir` and `creat`
//! fail with EACCES. `create` therefore makes them from the runtime process,
//! still the host's root, before the clone. Paths are resolved inside the
//! rootfs with [`safe_path`], so a symlink in the image cannot point them
//! outside.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::rootfs::safe_path::{self, SafePathError};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use oci_spec::runtime::Spec;

/// Errors from creating mount destinations in a rootfs.
#[derive(Debug, thiserror::Error)]
pub enum MountTargetError {
    /// The rootfs cannot be opened.
    #[error("failed to open the rootfs {path}")]
    OpenRoot {
        /// The rootfs.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: nix::Error,
    },
    /// A bind mount's source cannot be examined.
    #[error("failed to stat mount source {path}")]
    Source {
        /// The source on the host.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The destination cannot be created inside the rootfs.
    #[error("failed to create mount destination {destination} in the rootfs")]
    Create {
        /// The destination inside the container.
        destination: PathBuf,
        /// The underlying error.
        #[source]
        source: SafePathError,
    },
}

/// The destinations to create: `(path, is_dir)` for every mount that is not
/// below an earlier mount of the spec (those land on the earlier mount, e.g.
/// `/dev/pts` on the `/dev` tmpfs, which the container's root owns).
/// A bind mount's destination is a file when its source is not a directory.
pub fn mount_targets(spec: &Spec) -> Result<Vec<(PathBuf, bool)>, MountTargetError> {
    let mut seen: Vec<&Path> = Vec::new();
    let mut out = Vec::new();
    for m in spec.mounts().iter().flatten() {
        let dest = m.destination().as_path();
        if seen.iter().any(|p| dest != *p && dest.starts_with(p)) {
            continue;
        }
        seen.push(dest);
        let bind = m.typ().as_deref() == Some("bind")
            || m.options()
                .iter()
                .flatten()
                .any(|o| o == "bind" || o == "rbind");
        let is_dir = match (bind, m.source()) {
            (true, Some(src)) => std::fs::metadata(src)
                .map_err(|source| MountTargetError::Source {
                    path: src.clone(),
                    source,
                })?
                .is_dir(),
            _ => true,
        };
        out.push((dest.to_path_buf(), is_dir));
    }
    Ok(out)
}

/// Creates every destination of [`mount_targets`] inside `rootfs` (as
/// directories 0755 or empty files 0644; existing ones are kept).
pub fn create_mount_targets(spec: &Spec, rootfs: &Path) -> Result<(), MountTargetError> {
    let root = nix::fcntl::open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| MountTargetError::OpenRoot {
        path: rootfs.to_path_buf(),
        source,
    })?;
    for (dest, is_dir) in mount_targets(spec)? {
        safe_path::create_mount_target(root.as_fd(), &dest, is_dir).map_err(|source| {
            MountTargetError::Create {
                destination: dest.clone(),
                source,
            }
        })?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use oci_spec::runtime::{Mount, MountBuilder};

    fn m(dest: &str, typ: &str, src: &Path) -> Mount {
        MountBuilder::default()
            .destination(dest)
            .typ(typ)
            .source(src)
            .options(if typ == "bind" {
                vec!["rbind".to_string()]
            } else {
                vec![]
            })
            .build()
            .unwrap()
    }

    #[test]
    fn targets_are_created_inside_the_rootfs_only() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // A hostile image: /data is a symlink to an absolute host path.
        std::os::unix::fs::symlink(&outside, rootfs.join("data")).unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, "x").unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir(&vol).unwrap();

        let mut spec = Spec::default();
        spec.set_mounts(Some(vec![
            m("/proc", "proc", Path::new("proc")),
            m("/dev", "tmpfs", Path::new("tmpfs")),
            m("/dev/shm", "bind", &vol),
            m("/etc/hosts", "bind", &file),
            m("/data/x", "bind", &vol),
        ]));
        let targets = mount_targets(&spec).unwrap();
        assert_eq!(
            targets,
            vec![
                (PathBuf::from("/proc"), true),
                (PathBuf::from("/dev"), true),
                (PathBuf::from("/etc/hosts"), false),
                (PathBuf::from("/data/x"), true),
            ],
            "/dev/shm lands on the /dev tmpfs"
        );
        create_mount_targets(&spec, &rootfs).unwrap();
        assert!(rootfs.join("proc").is_dir());
        assert!(rootfs.join("etc/hosts").is_file());
        assert!(!rootfs.join("dev/shm").exists());
        // The symlink resolved inside the rootfs, never to the host dir.
        assert!(!outside.join("x").exists());
        assert!(rootfs
            .join(outside.strip_prefix("/").unwrap())
            .join("x")
            .is_dir());
        // Idempotent.
        create_mount_targets(&spec, &rootfs).unwrap();

        spec.set_mounts(Some(vec![m("/x", "bind", &dir.path().join("missing"))]));
        assert!(matches!(
            create_mount_targets(&spec, &rootfs).unwrap_err(),
            MountTargetError::Source { .. }
        ));
    }
}
