//! Mounting the rootfs a client passes in `CreateTaskRequest.rootfs` onto
//! `<bundle>/rootfs` (overlay from berthd, overlay or bind from containerd).

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// One mount of the request (type, source, options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootMount {
    /// Filesystem type ("overlay", "bind", ...).
    pub typ: String,
    /// Source.
    pub source: String,
    /// Options (flags and fs data).
    pub options: Vec<String>,
}

/// Errors mounting or unmounting.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// mount(2) failed.
    #[error("mounting {typ} {source_path} on {target}: {source}")]
    Mount {
        /// fs type.
        typ: String,
        /// Mount source.
        source_path: String,
        /// Target.
        target: PathBuf,
        /// Errno.
        #[source]
        source: nix::Error,
    },
    /// umount(2) failed.
    #[error("unmounting {target}: {source}")]
    Unmount {
        /// Target.
        target: PathBuf,
        /// Errno.
        #[source]
        source: nix::Error,
    },
    /// Creating the mount point failed.
    #[error("creating {path}: {source}")]
    Mkdir {
        /// Directory.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// More than one mount (stacked rootfs) is not supported.
    #[error("{0} rootfs mounts given; berth-shim supports one")]
    TooMany(usize),
}

/// Splits options into mount flags and the fs data string.
pub fn split_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        match o.as_str() {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" | "defaults" => {}
            "bind" => flags |= MsFlags::MS_BIND,
            "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "noatime" => flags |= MsFlags::MS_NOATIME,
            "relatime" => flags |= MsFlags::MS_RELATIME,
            other => data.push(other),
        }
    }
    (flags, data.join(","))
}

/// `<bundle>/rootfs`.
pub fn target(bundle: &Path) -> PathBuf {
    bundle.join("rootfs")
}

/// Mounts `mounts` (at most one) onto `<bundle>/rootfs`. Returns whether
/// something was mounted.
pub fn mount_rootfs(bundle: &Path, mounts: &[RootMount]) -> Result<bool, RootfsError> {
    let m = match mounts {
        [] => return Ok(false),
        [m] => m,
        many => return Err(RootfsError::TooMany(many.len())),
    };
    let target = target(bundle);
    std::fs::create_dir_all(&target).map_err(|source| RootfsError::Mkdir {
        path: target.clone(),
        source,
    })?;
    let (mut flags, data) = split_options(&m.options);
    if m.typ == "bind" {
        flags |= MsFlags::MS_BIND;
    }
    let err = |source| RootfsError::Mount {
        typ: m.typ.clone(),
        source_path: m.source.clone(),
        target: target.clone(),
        source,
    };
    let fstype = (!flags.contains(MsFlags::MS_BIND)).then_some(m.typ.as_str());
    let data_opt = (!data.is_empty()).then_some(data.as_str());
    let first_flags = if flags.contains(MsFlags::MS_BIND) {
        flags.difference(MsFlags::MS_RDONLY)
    } else {
        flags
    };
    mount(
        Some(m.source.as_str()),
        &target,
        fstype,
        first_flags,
        data_opt,
    )
    .map_err(err)?;
    // A bind mount ignores MS_RDONLY on the first call.
    if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(err)?;
    }
    Ok(true)
}

/// Unmounts `<bundle>/rootfs` (lazily, so a leftover process cannot block
/// the removal); not mounted is fine.
pub fn unmount_rootfs(bundle: &Path) -> Result<(), RootfsError> {
    let target = target(bundle);
    match umount2(&target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(source) => Err(RootfsError::Unmount { target, source }),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["ro", "rbind", "lowerdir=/a:/b", "upperdir=/u", "nodev"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (f, d) = split_options(&opts);
        assert!(
            f.contains(MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NODEV)
        );
        assert_eq!(d, "lowerdir=/a:/b,upperdir=/u");
    }

    #[test]
    fn too_many_mounts_are_refused_and_none_is_a_no_op() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!mount_rootfs(dir.path(), &[]).unwrap());
        let m = RootMount {
            typ: "bind".into(),
            source: "/".into(),
            options: vec![],
        };
        assert!(matches!(
            mount_rootfs(dir.path(), &[m.clone(), m]),
            Err(RootfsError::TooMany(2))
        ));
        unmount_rootfs(dir.path()).unwrap();
    }

    #[test]
    fn bind_mount_read_only_and_unmount() {
        let dir = tempfile::tempdir().unwrap();
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("f"), "x").unwrap();
        let m = RootMount {
            typ: "bind".into(),
            source: src.path().display().to_string(),
            options: vec!["rbind".into(), "ro".into()],
        };
        assert!(mount_rootfs(dir.path(), &[m]).unwrap());
        let t = target(dir.path());
        assert_eq!(std::fs::read_to_string(t.join("f")).unwrap(), "x");
        assert!(std::fs::write(t.join("g"), "y").is_err());
        unmount_rootfs(dir.path()).unwrap();
        assert!(!t.join("f").exists());
    }
}
