//! Mounting the rootfs a client passes in `CreateTaskRequest.rootfs` onto
//! `<bundle>/rootfs` (overlay from berthd, overlay or bind from containerd).
//!
//! For a container in a user namespace the mount carries containerd 2's
//! `uidmap=<container>:<host>:<size>` and `gidmap=...` options (several
//! ranges separated by `,`): the overlay's lower layers (or the bound
//! directory) are then id-mapped with them, so image files owned by host
//! root show as the container's root. overlayfs cannot be id-mapped as a
//! whole, and the upper layer is left unmapped (see
//! `berth_runtime::rootfs::overlay`).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use berth_runtime::rootfs::idmap::{attach_tree, idmapped_tree, userns_from_mappings};
use berth_runtime::rootfs::overlay::{mount_idmapped_overlay, OverlayLayers};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder};

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
    /// A `uidmap=`/`gidmap=` option is malformed or comes without the other.
    #[error("invalid rootfs id mapping option {option:?}: {reason}")]
    BadMapping {
        /// The option as given.
        option: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The id-mapped rootfs could not be made.
    #[error("id-mapped {typ} rootfs on {target}")]
    Idmapped {
        /// fs type.
        typ: String,
        /// Target.
        target: PathBuf,
        /// What failed.
        #[source]
        source: Box<berth_runtime::rootfs::RootfsError>,
    },
}

/// Parses `c:h:s[,c:h:s...]` (containerd's `uidmap=` / `gidmap=` value).
pub fn parse_mappings(option: &str, value: &str) -> Result<Vec<LinuxIdMapping>, RootfsError> {
    let bad = |reason| RootfsError::BadMapping {
        option: option.to_string(),
        reason,
    };
    value
        .split(',')
        .map(|range| {
            let nums = range
                .split(':')
                .map(|n| n.parse::<u32>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| bad("not container:host:size numbers"))?;
            let [c, h, n] = nums[..] else {
                return Err(bad("not container:host:size"));
            };
            if n == 0 || c.checked_add(n - 1).is_none() || h.checked_add(n - 1).is_none() {
                return Err(bad("empty or overflowing range"));
            }
            LinuxIdMappingBuilder::default()
                .container_id(c)
                .host_id(h)
                .size(n)
                .build()
                .map_err(|_| bad("unbuildable"))
        })
        .collect()
}

/// The `uidmap=`/`gidmap=` options of a mount, removed from `options`.
type Mappings = (Vec<LinuxIdMapping>, Vec<LinuxIdMapping>);

fn take_mappings(options: &mut Vec<String>) -> Result<Option<Mappings>, RootfsError> {
    let (mut uid, mut gid) = (None, None);
    let mut rest = Vec::with_capacity(options.len());
    for o in options.drain(..) {
        if let Some(v) = o.strip_prefix("uidmap=") {
            uid = Some(parse_mappings(&o, v)?);
        } else if let Some(v) = o.strip_prefix("gidmap=") {
            gid = Some(parse_mappings(&o, v)?);
        } else {
            rest.push(o);
        }
    }
    *options = rest;
    match (uid, gid) {
        (None, None) => Ok(None),
        (Some(u), Some(g)) => Ok(Some((u, g))),
        (u, _) => Err(RootfsError::BadMapping {
            option: if u.is_some() { "uidmap" } else { "gidmap" }.to_string(),
            reason: "uidmap and gidmap must be given together",
        }),
    }
}

/// The overlay layers from mount(8)-style data (`lowerdir=a:b`, `upperdir=`, `workdir=`, others).
fn overlay_layers(flags: MsFlags, data: &str) -> OverlayLayers {
    let mut layers = OverlayLayers {
        readonly: flags.contains(MsFlags::MS_RDONLY),
        nosuid: flags.contains(MsFlags::MS_NOSUID),
        nodev: flags.contains(MsFlags::MS_NODEV),
        noexec: flags.contains(MsFlags::MS_NOEXEC),
        ..Default::default()
    };
    for o in data.split(',').filter(|o| !o.is_empty()) {
        match o.split_once('=') {
            Some(("lowerdir", v)) => layers.lowers = v.split(':').map(PathBuf::from).collect(),
            Some(("upperdir", v)) => layers.upper = Some(PathBuf::from(v)),
            Some(("workdir", v)) => layers.work = Some(PathBuf::from(v)),
            _ => layers.options.push(o.to_string()),
        }
    }
    layers
}

/// Mounts an overlay with id-mapped lower layers, or an id-mapped bind, on `target`.
fn mount_idmapped(
    m: &RootMount,
    flags: MsFlags,
    data: &str,
    maps: &Mappings,
    target: &Path,
) -> Result<(), RootfsError> {
    let err = |source| RootfsError::Idmapped {
        typ: m.typ.clone(),
        target: target.to_path_buf(),
        source: Box::new(source),
    };
    let userns = userns_from_mappings(&maps.0, &maps.1).map_err(err)?;
    if flags.contains(MsFlags::MS_BIND) {
        let rec = flags.contains(MsFlags::MS_REC);
        let tree = idmapped_tree(Path::new(&m.source), userns.as_fd(), rec, rec).map_err(err)?;
        attach_tree(tree.as_fd(), target).map_err(err)?;
        if flags.contains(MsFlags::MS_RDONLY) {
            mount(
                None::<&str>,
                target,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(|source| RootfsError::Mount {
                typ: m.typ.clone(),
                source_path: m.source.clone(),
                target: target.to_path_buf(),
                source,
            })?;
        }
        return Ok(());
    }
    if m.typ != "overlay" {
        return Err(RootfsError::BadMapping {
            option: "uidmap".to_string(),
            reason: "id mappings are supported on overlay and bind rootfs mounts only",
        });
    }
    mount_idmapped_overlay(target, &overlay_layers(flags, data), userns.as_fd()).map_err(err)
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
    let mut options = m.options.clone();
    let maps = take_mappings(&mut options)?;
    let (mut flags, data) = split_options(&options);
    if m.typ == "bind" {
        flags |= MsFlags::MS_BIND;
    }
    if let Some(maps) = &maps {
        mount_idmapped(m, flags, &data, maps, &target)?;
        return Ok(true);
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
    fn mapping_options_are_parsed_and_checked() {
        let maps = parse_mappings(
            "uidmap=0:100000:65536,65536:5:1",
            "0:100000:65536,65536:5:1",
        )
        .unwrap();
        assert_eq!(maps.len(), 2);
        assert_eq!(
            (maps[0].container_id(), maps[0].host_id(), maps[0].size()),
            (0, 100000, 65536)
        );
        for bad in ["0:1", "a:b:c", "0:1:0", "0:4294967295:2"] {
            assert!(parse_mappings("uidmap", bad).is_err(), "{bad}");
        }
        let mut opts = vec![
            "lowerdir=/a".to_string(),
            "uidmap=0:1000:10".to_string(),
            "gidmap=0:2000:10".to_string(),
        ];
        let (u, g) = take_mappings(&mut opts).unwrap().unwrap();
        assert_eq!((u[0].host_id(), g[0].host_id()), (1000, 2000));
        assert_eq!(opts, vec!["lowerdir=/a".to_string()]);
        let mut only_uid = vec!["uidmap=0:1000:10".to_string()];
        assert!(take_mappings(&mut only_uid).is_err());
        let layers = overlay_layers(
            MsFlags::MS_NODEV,
            "lowerdir=/t:/b,upperdir=/u,workdir=/w,volatile",
        );
        assert_eq!(
            layers.lowers,
            vec![PathBuf::from("/t"), PathBuf::from("/b")]
        );
        assert_eq!(layers.upper.as_deref(), Some(Path::new("/u")));
        assert_eq!(layers.options, vec!["volatile".to_string()]);
        assert!(layers.nodev && !layers.readonly);
    }

    #[test]
    fn idmapped_overlay_rootfs_shows_host_root_files_as_mapped() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let p = |s: &str| dir.path().join(s);
        for d in ["lower", "upper", "work", "bundle"] {
            std::fs::create_dir(p(d)).unwrap();
        }
        std::fs::write(p("lower/f"), "x").unwrap();
        let m = RootMount {
            typ: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                format!("lowerdir={}", p("lower").display()),
                format!("upperdir={}", p("upper").display()),
                format!("workdir={}", p("work").display()),
                "uidmap=0:310000:65536".into(),
                "gidmap=0:320000:65536".into(),
            ],
        };
        assert!(mount_rootfs(&p("bundle"), &[m]).unwrap());
        let meta = std::fs::metadata(target(&p("bundle")).join("f"));
        unmount_rootfs(&p("bundle")).unwrap();
        let meta = meta.unwrap();
        assert_eq!((meta.uid(), meta.gid()), (310000, 320000));
        assert!(!target(&p("bundle")).join("f").exists());
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
