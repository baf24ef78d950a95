//! /dev inside the container: the default device nodes, `linux.devices`, the
//! standard symlinks, /dev/ptmx and the console.
//!
//! Like runc, devices are created unless /dev is a bind mount (creating nodes
//! there would create them on the host's /dev). Every node is made with
//! mknodat(2) relative to a parent directory resolved inside the root; in a
//! user namespace mknod is not allowed, so the host node is bind-mounted onto
//! an empty file instead.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid, UnlinkatFlags};
use oci_spec::runtime::{LinuxDeviceType, Spec};
use tracing::debug;

use super::mounts::{mount_on_fd, MountContext};
use super::safe_path;
use super::RootfsError;

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeviceNode {
    path: PathBuf,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

/// The devices every container gets (runtime-spec "Default Devices").
const DEFAULT_DEVICES: &[(&str, u64, u64)] = &[
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// The standard /dev symlinks (target, link).
const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
];

/// Lexically normalised absolute form of a container path, for comparisons only.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// True unless the spec bind-mounts something over /dev.
fn needs_dev_setup(spec: &Spec) -> bool {
    !spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|m| {
            normalize(m.destination()) == Path::new("/dev")
                && (m.typ().as_deref() == Some("bind")
                    || m.options()
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .any(|o| o == "bind" || o == "rbind"))
        })
}

fn spec_devices(spec: &Spec) -> Result<Vec<DeviceNode>, RootfsError> {
    let devices = spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().clone())
        .unwrap_or_default();
    devices
        .iter()
        .map(|d| {
            let kind = match d.typ() {
                LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
                LinuxDeviceType::B => SFlag::S_IFBLK,
                LinuxDeviceType::P => SFlag::S_IFIFO,
                LinuxDeviceType::A => {
                    return Err(RootfsError::InvalidSpec {
                        field: "linux.devices[].type",
                        value: format!("\"a\" for {:?}", d.path()),
                    })
                }
            };
            let number = |v: i64, what: &'static str| {
                u64::try_from(v).map_err(|_| RootfsError::InvalidSpec {
                    field: what,
                    value: format!("{v} for {:?}", d.path()),
                })
            };
            Ok(DeviceNode {
                path: d.path().clone(),
                kind,
                major: number(d.major(), "linux.devices[].major")?,
                minor: number(d.minor(), "linux.devices[].minor")?,
                mode: d.file_mode().unwrap_or(0o666),
                uid: d.uid().unwrap_or(0),
                gid: d.gid().unwrap_or(0),
            })
        })
        .collect()
}

/// Creates /dev content after all spec mounts are in place.
pub(super) fn setup_dev(ctx: &MountContext, spec: &Spec) -> Result<(), RootfsError> {
    if !needs_dev_setup(spec) {
        debug!("/dev is a bind mount: no device nodes created");
        return Ok(());
    }
    let requested = spec_devices(spec)?;
    let defaults = DEFAULT_DEVICES
        .iter()
        .filter(|(p, _, _)| !requested.iter().any(|d| normalize(&d.path) == Path::new(p)))
        .map(|(p, major, minor)| DeviceNode {
            path: PathBuf::from(p),
            kind: SFlag::S_IFCHR,
            major: *major,
            minor: *minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        });
    let all: Vec<DeviceNode> = defaults.chain(requested.iter().cloned()).collect();
    for dev in &all {
        create_device(ctx, dev)?;
    }
    let dev_dir =
        safe_path::mkdir_all_in_root(ctx.root, Path::new("/dev"), Mode::from_bits_truncate(0o755))?;
    let mut links: Vec<(&str, &str)> = DEV_SYMLINKS.to_vec();
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match nix::unistd::symlinkat(target, dev_dir.as_fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(source) => return Err(dev_err("symlink", Path::new("/dev").join(name), source)),
        }
    }
    // /dev/ptmx must be the devpts instance's ptmx (newinstance), not a host node.
    match nix::unistd::unlinkat(dev_dir.as_fd(), "ptmx", UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(source) => return Err(dev_err("remove", PathBuf::from("/dev/ptmx"), source)),
    }
    nix::unistd::symlinkat("pts/ptmx", dev_dir.as_fd(), "ptmx")
        .map_err(|source| dev_err("symlink", PathBuf::from("/dev/ptmx"), source))
}

fn dev_err(action: &'static str, path: PathBuf, source: Errno) -> RootfsError {
    RootfsError::Device {
        action,
        path,
        source,
    }
}

/// Removes a non-directory entry so the node replaces whatever the image put there
/// (unlinkat never follows the final symlink, so a link to a host path is just removed).
fn remove_existing(
    parent: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    path: &Path,
) -> Result<(), RootfsError> {
    match nix::unistd::unlinkat(parent, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(source) => Err(dev_err("remove existing", path.to_path_buf(), source)),
    }
}

fn create_device(ctx: &MountContext, dev: &DeviceNode) -> Result<(), RootfsError> {
    let (parent, name) = safe_path::open_parent_in_root(ctx.root, &dev.path)?;
    remove_existing(parent.as_fd(), name, &dev.path)?;
    if ctx.in_user_ns && dev.kind != SFlag::S_IFIFO {
        // Device nodes cannot be made in a user namespace: bind the host's node instead.
        let file = nix::fcntl::openat(
            parent.as_fd(),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| dev_err("create bind target", dev.path.clone(), source))?;
        return mount_on_fd(Some(&dev.path), file.as_fd(), None, MsFlags::MS_BIND, None)
            .map_err(|source| dev_err("bind host device", dev.path.clone(), source));
    }
    let perm = Mode::from_bits_truncate(dev.mode & 0o7777);
    // The node's mode must be exactly the spec's: no umask.
    let old_umask = nix::sys::stat::umask(Mode::empty());
    let made = nix::sys::stat::mknodat(
        parent.as_fd(),
        name,
        dev.kind,
        perm,
        nix::sys::stat::makedev(dev.major, dev.minor),
    );
    nix::sys::stat::umask(old_umask);
    made.map_err(|source| dev_err("mknod", dev.path.clone(), source))?;
    nix::unistd::fchownat(
        parent.as_fd(),
        name,
        Some(Uid::from_raw(dev.uid)),
        Some(Gid::from_raw(dev.gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|source| dev_err("chown", dev.path.clone(), source))
}

/// Bind-mounts the pty slave over /dev/console inside the root.
///
/// Both ends are pinned by fd: the slave is opened without following
/// symlinks and must be a character device, and /dev/console is recreated
/// as a fresh regular file, so neither a symlinked source nor a symlinked
/// /dev/console can turn this into a bind of some other file (CVE-2025-52565).
/// Works before pivot_root (rootfs = the host path) and after it (rootfs = "/",
/// with the container's /proc mounted).
pub(super) fn bind_console(root: BorrowedFd<'_>, pty_slave: &Path) -> Result<(), RootfsError> {
    let console = Path::new("/dev/console");
    if !safe_path::proc_fd_usable() {
        return Err(RootfsError::Unsupported(
            "binding the console needs /proc mounted (a procfs) in the container".to_string(),
        ));
    }
    let slave = nix::fcntl::open(
        pty_slave,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| dev_err("open pty slave", pty_slave.to_path_buf(), source))?;
    let st = nix::sys::stat::fstat(slave.as_fd())
        .map_err(|source| dev_err("stat pty slave", pty_slave.to_path_buf(), source))?;
    if SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) != SFlag::S_IFCHR {
        return Err(dev_err(
            "use as console (not a character device)",
            pty_slave.to_path_buf(),
            Errno::ENOTTY,
        ));
    }
    let (parent, name) = safe_path::open_parent_in_root(root, console)?;
    remove_existing(parent.as_fd(), name, console)?;
    let target = nix::fcntl::openat(
        parent.as_fd(),
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|source| dev_err("create", console.to_path_buf(), source))?;
    let source = safe_path::proc_fd_path(slave.as_fd());
    mount_on_fd(Some(&source), target.as_fd(), None, MsFlags::MS_BIND, None)
        .map_err(|source| dev_err("bind console", console.to_path_buf(), source))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxDeviceBuilder, MountBuilder, SpecBuilder};

    #[test]
    fn dev_setup_skipped_only_for_bind_dev() {
        let spec = Spec::default();
        assert!(needs_dev_setup(&spec));
        let bind = MountBuilder::default()
            .destination("/dev/")
            .typ("none")
            .source("/dev")
            .options(vec!["rbind".to_string()])
            .build()
            .unwrap();
        let spec = SpecBuilder::default().mounts(vec![bind]).build().unwrap();
        assert!(!needs_dev_setup(&spec));
    }

    #[test]
    fn spec_devices_parse_types_and_defaults() {
        let dev = LinuxDeviceBuilder::default()
            .path("/dev/fuse")
            .typ(LinuxDeviceType::C)
            .major(10)
            .minor(229)
            .build()
            .unwrap();
        let fifo = LinuxDeviceBuilder::default()
            .path("/dev/fifo")
            .typ(LinuxDeviceType::P)
            .file_mode(0o600u32)
            .uid(7u32)
            .build()
            .unwrap();
        let linux = LinuxBuilder::default()
            .devices(vec![dev, fifo])
            .build()
            .unwrap();
        let spec = SpecBuilder::default().linux(linux).build().unwrap();
        let d = spec_devices(&spec).unwrap();
        assert_eq!(d[0].kind, SFlag::S_IFCHR);
        assert_eq!((d[0].major, d[0].minor, d[0].mode), (10, 229, 0o666));
        assert_eq!(
            (d[1].kind, d[1].mode, d[1].uid, d[1].gid),
            (SFlag::S_IFIFO, 0o600, 7, 0)
        );
        let bad = LinuxDeviceBuilder::default()
            .path("/dev/x")
            .typ(LinuxDeviceType::A)
            .build()
            .unwrap();
        let linux = LinuxBuilder::default().devices(vec![bad]).build().unwrap();
        let spec = SpecBuilder::default().linux(linux).build().unwrap();
        assert!(spec_devices(&spec).is_err());
    }
}
