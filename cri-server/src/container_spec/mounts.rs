//! Mounts and devices: the kernel filesystems every container gets, the
//! pod's shared files, CRI mounts, image VOLUMEs and CRI devices.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use berth_proto::cri::{self, MountPropagation};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxIdMapping, Mount};

use super::userns::{self, PodUserNamespace};
use super::{ContainerSpecInput, SpecBuildError};

/// An image VOLUME no CRI mount covers: the caller creates `host_path`
/// (copying the image's content at `container_path` into it) before start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnonymousVolume {
    /// Where the volume appears in the container.
    pub container_path: PathBuf,
    /// The directory on the host bound there.
    pub host_path: PathBuf,
}

/// A character or block device found on the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceInfo {
    /// `C` or `B`.
    pub typ: LinuxDeviceType,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Permission bits of the node.
    pub file_mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
}

/// How devices are found on the host (a seam so tests need no real /dev).
pub trait DeviceLookup {
    /// The device at `path` (following symlinks); `Ok(None)` if it exists but
    /// is not a device.
    fn lookup(&self, path: &Path) -> io::Result<Option<DeviceInfo>>;
    /// Every device under the host's /dev, for privileged containers.
    fn host_devices(&self) -> io::Result<Vec<(PathBuf, DeviceInfo)>>;
}

/// The real host's devices, read with stat(2).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostDevices;

fn dev_major(dev: u64) -> i64 {
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as i64
}

fn dev_minor(dev: u64) -> i64 {
    ((dev & 0xff) | ((dev >> 12) & !0xff)) as i64
}

fn info(meta: &std::fs::Metadata) -> Option<DeviceInfo> {
    let ft = meta.file_type();
    let typ = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return None;
    };
    Some(DeviceInfo {
        typ,
        major: dev_major(meta.rdev()),
        minor: dev_minor(meta.rdev()),
        file_mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// /dev entries privileged containers do not get: their own instances are
/// mounted (pts, shm, mqueue) or they are per-session (console, fd).
const SKIPPED_DEV_ENTRIES: &[&str] = &["pts", "shm", "mqueue", "fd", "console", ".udev"];

fn walk_dev(dir: &Path, out: &mut Vec<(PathBuf, DeviceInfo)>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if dir == Path::new("/dev") && SKIPPED_DEV_ENTRIES.iter().any(|s| name == *s) {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            walk_dev(&path, out)?;
        } else if let Some(d) = info(&meta) {
            out.push((path, d));
        }
    }
    Ok(())
}

impl DeviceLookup for HostDevices {
    fn lookup(&self, path: &Path) -> io::Result<Option<DeviceInfo>> {
        Ok(info(&std::fs::metadata(path)?))
    }

    fn host_devices(&self) -> io::Result<Vec<(PathBuf, DeviceInfo)>> {
        let mut out = Vec::new();
        walk_dev(Path::new("/dev"), &mut out)?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }
}

/// The mounts of a container and the host work they need.
pub(super) struct Mounted {
    pub mounts: Vec<Mount>,
    pub anonymous_volumes: Vec<AnonymousVolume>,
    pub host_paths: Vec<PathBuf>,
    pub rootfs_propagation: Option<String>,
}

fn mount(dest: &str, typ: &str, source: &Path, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(source.to_path_buf()));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m.set_uid_mappings(None);
    m.set_gid_mappings(None);
    m
}

/// The kernel filesystems (containerd's set; /dev/shm comes from the pod).
fn default_mounts(privileged: bool) -> Vec<Mount> {
    let ro_or_rw = if privileged { "rw" } else { "ro" };
    vec![
        mount(
            "/proc",
            "proc",
            Path::new("proc"),
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/dev",
            "tmpfs",
            Path::new("tmpfs"),
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            Path::new("devpts"),
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            Path::new("mqueue"),
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            Path::new("sysfs"),
            &["nosuid", "noexec", "nodev", ro_or_rw],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            Path::new("cgroup"),
            &["nosuid", "noexec", "nodev", "relatime", ro_or_rw],
        ),
    ]
}

/// An absolute path with `.` and duplicate slashes removed; `..` refused so
/// that two spellings of one destination cannot both be mounted.
fn clean(path: &str, what: &str) -> Result<PathBuf, SpecBuildError> {
    let bad = |reason: &str| SpecBuildError::InvalidMount {
        container_path: path.to_string(),
        reason: format!("{what} {reason}"),
    };
    if !path.starts_with('/') {
        return Err(bad("is not absolute"));
    }
    let mut out = PathBuf::from("/");
    for c in Path::new(path).components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(bad("contains \"..\"")),
        }
    }
    Ok(out)
}

fn propagation_option(raw: i32, container_path: &str) -> Result<&'static str, SpecBuildError> {
    match MountPropagation::try_from(raw) {
        Ok(MountPropagation::PropagationPrivate) => Ok("rprivate"),
        Ok(MountPropagation::PropagationHostToContainer) => Ok("rslave"),
        Ok(MountPropagation::PropagationBidirectional) => Ok("rshared"),
        Err(_) => Err(SpecBuildError::InvalidMount {
            container_path: container_path.to_string(),
            reason: format!("unknown propagation {raw}"),
        }),
    }
}

/// Id mappings for an id-mapped bind mount.
type IdMaps = (Vec<LinuxIdMapping>, Vec<LinuxIdMapping>);

/// How mounts are id-mapped for a container.
#[derive(Clone, Copy)]
pub(super) struct IdmapPolicy<'a> {
    /// The pod's user namespace, if it has one.
    pub pod_userns: Option<&'a PodUserNamespace>,
}

impl IdmapPolicy<'_> {
    /// The pod's mappings: volumes of a user-namespaced pod are id-mapped
    /// with them (berth-runtime makes the mounts before joining the pod's
    /// user namespace), so on-disk owners keep their ids inside.
    fn pod_maps(&self) -> Option<IdMaps> {
        self.pod_userns
            .map(|u| (u.uid_mappings.clone(), u.gid_mappings.clone()))
    }
}

/// The id mappings of a CRI mount: its own when the kubelet gives some, else
/// the pod user namespace's.
fn mount_id_maps(
    m: &cri::Mount,
    policy: IdmapPolicy<'_>,
) -> Result<Option<IdMaps>, SpecBuildError> {
    match (m.uid_mappings.is_empty(), m.gid_mappings.is_empty()) {
        (true, true) => Ok(policy.pod_maps()),
        (false, false) => {
            let conv = |maps: &[cri::IdMapping], what| {
                maps.iter()
                    .map(|x| userns::oci_mapping(x, what))
                    .collect::<Result<Vec<_>, _>>()
            };
            Ok(Some((
                conv(&m.uid_mappings, "mount uid")?,
                conv(&m.gid_mappings, "mount gid")?,
            )))
        }
        _ => Err(SpecBuildError::InvalidMount {
            container_path: m.container_path.clone(),
            reason: "an id-mapped mount needs both uid and gid mappings".into(),
        }),
    }
}

/// Makes `out` an id-mapped bind (`idmap`: the mount itself, not the
/// submounts an rbind brings along, which may be on filesystems that cannot
/// be id-mapped).
fn set_id_maps(out: &mut Mount, maps: Option<IdMaps>) {
    if let Some((uids, gids)) = maps {
        let mut options = out.options().clone().unwrap_or_default();
        options.push("idmap".to_string());
        out.set_options(Some(options));
        out.set_uid_mappings(Some(uids));
        out.set_gid_mappings(Some(gids));
    }
}

/// One CRI mount as an OCI bind mount.
fn cri_mount(m: &cri::Mount, policy: IdmapPolicy<'_>) -> Result<Mount, SpecBuildError> {
    let dest = clean(&m.container_path, "container path")?;
    let src = clean(&m.host_path, "host path")?;
    let propagation = propagation_option(m.propagation, &m.container_path)?;
    if m.recursive_read_only && (!m.readonly || propagation != "rprivate") {
        return Err(SpecBuildError::InvalidMount {
            container_path: m.container_path.clone(),
            reason: "recursive read-only needs readonly and private propagation".into(),
        });
    }
    if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
        return Err(SpecBuildError::InvalidMount {
            container_path: m.container_path.clone(),
            reason: "image volume mounts are not supported".into(),
        });
    }
    let maps = mount_id_maps(m, policy)?;
    let mut options = vec!["rbind", propagation, if m.readonly { "ro" } else { "rw" }];
    if m.recursive_read_only {
        options.push("rro");
    }
    let mut out = mount("", "bind", &src, &options);
    out.set_destination(dest);
    set_id_maps(&mut out, maps);
    Ok(out)
}

fn covered(dests: &[PathBuf], dest: &Path) -> bool {
    dests.iter().any(|d| d == dest)
}

/// All mounts, in the order the runtime applies them.
pub(super) fn build_mounts(
    input: &ContainerSpecInput<'_>,
    privileged: bool,
    policy: IdmapPolicy<'_>,
) -> Result<Mounted, SpecBuildError> {
    let readonly_rootfs = input
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .is_some_and(|s| s.readonly_rootfs);
    let mut cri_mounts = input
        .config
        .mounts
        .iter()
        .map(|m| cri_mount(m, policy))
        .collect::<Result<Vec<_>, _>>()?;
    // Parents before children, so a mount below another one stays visible.
    cri_mounts.sort_by_key(|m| m.destination().components().count());
    let cri_dests: Vec<PathBuf> = cri_mounts.iter().map(|m| m.destination().clone()).collect();

    let mut mounts: Vec<Mount> = default_mounts(privileged)
        .into_iter()
        .filter(|m| !covered(&cri_dests, m.destination()))
        .collect();

    let pod = input.pod;
    let file_opt = if readonly_rootfs { "ro" } else { "rw" };
    let pod_files = [
        ("/etc/hosts", &pod.hosts_path, file_opt),
        ("/etc/hostname", &pod.hostname_path, file_opt),
        ("/etc/resolv.conf", &pod.resolv_conf_path, file_opt),
        ("/dev/shm", &pod.shm_path, "rw"),
    ];
    for (dest, src, opt) in pod_files {
        if covered(&cri_dests, Path::new(dest)) {
            continue;
        }
        match src {
            Some(src) => mounts.push(mount(dest, "bind", src, &["rbind", "rprivate", opt])),
            // No pod-level /dev/shm: a private one for this container.
            None if dest == "/dev/shm" => mounts.push(mount(
                dest,
                "tmpfs",
                Path::new("shm"),
                &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            )),
            None => {}
        }
    }

    let rootfs_propagation = if cri_mounts
        .iter()
        .any(|m| m.options().iter().flatten().any(|o| o == "rshared"))
    {
        Some("rshared".to_string())
    } else if cri_mounts
        .iter()
        .any(|m| m.options().iter().flatten().any(|o| o == "rslave"))
    {
        Some("rslave".to_string())
    } else {
        None
    };
    let host_paths = cri_mounts
        .iter()
        .filter_map(|m| m.source().clone())
        .collect();
    mounts.extend(cri_mounts);

    let mut anonymous_volumes = Vec::new();
    let volumes = input
        .image_config
        .and_then(|c| c.volumes().clone())
        .unwrap_or_default();
    for (i, vol) in volumes.iter().enumerate() {
        let dest = clean(vol, "image volume")?;
        if covered(&cri_dests, &dest)
            || anonymous_volumes
                .iter()
                .any(|v: &AnonymousVolume| v.container_path == dest)
        {
            continue;
        }
        let name: String = dest
            .to_string_lossy()
            .trim_start_matches('/')
            .replace('/', "_");
        let host_path = input.volumes_dir.join(format!("{i}-{name}"));
        mounts.push({
            let mut m = mount("", "bind", &host_path, &["rbind", "rprivate", "rw"]);
            m.set_destination(dest.clone());
            set_id_maps(&mut m, policy.pod_maps());
            m
        });
        anonymous_volumes.push(AnonymousVolume {
            container_path: dest,
            host_path,
        });
    }
    Ok(Mounted {
        mounts,
        anonymous_volumes,
        host_paths,
        rootfs_propagation,
    })
}

fn device_rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(typ);
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

fn linux_device(path: PathBuf, d: &DeviceInfo) -> LinuxDevice {
    let mut dev = LinuxDevice::default();
    dev.set_path(path);
    dev.set_typ(d.typ);
    dev.set_major(d.major);
    dev.set_minor(d.minor);
    dev.set_file_mode(Some(d.file_mode));
    dev.set_uid(Some(d.uid));
    dev.set_gid(Some(d.gid));
    dev
}

/// `linux.devices` and the device cgroup rules: deny everything, then allow
/// each CRI device with its permissions; privileged containers get every
/// host device and an allow-all rule.
pub(super) fn devices(
    lookup: &dyn DeviceLookup,
    cri_devices: &[cri::Device],
    privileged: bool,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecBuildError> {
    let mut devs = Vec::new();
    let mut rules = vec![device_rule(false, None, None, None, "rwm")];
    if privileged {
        let host = lookup
            .host_devices()
            .map_err(|source| SpecBuildError::Device {
                path: PathBuf::from("/dev"),
                source,
            })?;
        devs.extend(host.iter().map(|(p, d)| linux_device(p.clone(), d)));
        rules = vec![device_rule(true, None, None, None, "rwm")];
    }
    for d in cri_devices {
        let dest = clean(&d.container_path, "device container path")?;
        let perms = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if !perms.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(SpecBuildError::InvalidMount {
                container_path: d.container_path.clone(),
                reason: format!("invalid device permissions {perms:?}"),
            });
        }
        let host = PathBuf::from(&d.host_path);
        let info = lookup
            .lookup(&host)
            .map_err(|source| SpecBuildError::Device {
                path: host.clone(),
                source,
            })?
            .ok_or(SpecBuildError::NotADevice { path: host })?;
        devs.retain(|x: &LinuxDevice| x.path() != &dest);
        devs.push(linux_device(dest, &info));
        if !privileged {
            rules.push(device_rule(
                true,
                Some(info.typ),
                Some(info.major),
                Some(info.minor),
                perms,
            ));
        }
    }
    Ok((devs, rules))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const NO_USERNS: IdmapPolicy<'static> = IdmapPolicy { pod_userns: None };

    #[test]
    fn propagation_mapping() {
        let p = |v: MountPropagation| propagation_option(v as i32, "/x").unwrap();
        assert_eq!(p(MountPropagation::PropagationPrivate), "rprivate");
        assert_eq!(p(MountPropagation::PropagationHostToContainer), "rslave");
        assert_eq!(p(MountPropagation::PropagationBidirectional), "rshared");
        assert!(propagation_option(17, "/x").is_err());
    }

    #[test]
    fn cri_mount_options() {
        let mut m = cri::Mount {
            container_path: "/data/./x/".into(),
            host_path: "/srv/data".into(),
            readonly: true,
            ..Default::default()
        };
        let out = cri_mount(&m, NO_USERNS).unwrap();
        assert_eq!(out.destination(), Path::new("/data/x"));
        assert_eq!(out.source().as_deref(), Some(Path::new("/srv/data")));
        assert_eq!(
            out.options().clone().unwrap(),
            vec!["rbind", "rprivate", "ro"]
        );
        m.recursive_read_only = true;
        assert_eq!(
            cri_mount(&m, NO_USERNS).unwrap().options().clone().unwrap(),
            vec!["rbind", "rprivate", "ro", "rro"]
        );
        m.propagation = MountPropagation::PropagationBidirectional as i32;
        assert!(
            cri_mount(&m, NO_USERNS).is_err(),
            "rro needs private propagation"
        );
        m.recursive_read_only = false;
        m.readonly = false;
        assert_eq!(
            cri_mount(&m, NO_USERNS).unwrap().options().clone().unwrap(),
            vec!["rbind", "rshared", "rw"]
        );
        m.container_path = "relative".into();
        assert!(cri_mount(&m, NO_USERNS).is_err());
        m.container_path = "/a/../etc".into();
        assert!(cri_mount(&m, NO_USERNS).is_err());
    }

    #[test]
    fn host_device_lookup_reads_dev_null() {
        let d = HostDevices.lookup(Path::new("/dev/null")).unwrap().unwrap();
        assert_eq!((d.typ, d.major, d.minor), (LinuxDeviceType::C, 1, 3));
        assert_eq!(
            HostDevices.lookup(Path::new("/etc/hostname")).unwrap(),
            None
        );
    }
}
