//! An overlay filesystem whose lower layers are id-mapped, for the root
//! filesystem of a container in a user namespace.
//!
//! overlayfs itself cannot be id-mapped (mount_setattr(MOUNT_ATTR_IDMAP) on
//! an overlay mount fails with EINVAL, checked on Linux 6.18), but it accepts
//! id-mapped layers (Linux 5.19). Each lower layer is cloned as a detached
//! mount with the mapping and handed to the new mount API as a file
//! descriptor (`fsconfig(FSCONFIG_SET_FD, "lowerdir+")`, Linux 6.13 and
//! later), so nothing is attached on the host. Image files owned by host uid
//! 0 then show as the container's root; the upper layer is not mapped, so
//! what the container writes is stored with its real host ids (the pod's
//! range), and the upper directory itself must belong to the container's
//! root (its owner is the owner of the overlay's `/`).

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::idmap::idmapped_tree;
use super::RootfsError;

const FSOPEN_CLOEXEC: libc::c_uint = 0x1;
const FSMOUNT_CLOEXEC: libc::c_uint = 0x1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_SET_FD: libc::c_uint = 5;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x8;

/// What an id-mapped overlay is made of.
#[derive(Debug, Clone, Default)]
pub struct OverlayLayers {
    /// Lower layers, top first (as in `lowerdir=`).
    pub lowers: Vec<PathBuf>,
    /// The writable layer (None: a read-only overlay).
    pub upper: Option<PathBuf>,
    /// overlayfs' work directory (with `upper`).
    pub work: Option<PathBuf>,
    /// Other overlay options (`volatile`, `index=off`, ...), as in mount(8) data.
    pub options: Vec<String>,
    /// Per-mount flags: read-only, nosuid, nodev, noexec.
    pub readonly: bool,
    /// nosuid.
    pub nosuid: bool,
    /// nodev.
    pub nodev: bool,
    /// noexec.
    pub noexec: bool,
}

fn overlay_err(step: &'static str, target: &Path, source: Errno, log: String) -> RootfsError {
    RootfsError::Overlay {
        step,
        target: target.to_path_buf(),
        log,
        source,
    }
}

fn cstring(s: &str) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno::EINVAL)
}

fn owned(ret: libc::c_long) -> Result<OwnedFd, Errno> {
    if ret < 0 {
        return Err(Errno::last());
    }
    let fd = RawFd::try_from(ret).map_err(|_| Errno::EBADF)?;
    // SAFETY: the syscall succeeded and returned a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn sys_fsopen(fstype: &str) -> Result<OwnedFd, Errno> {
    let name = cstring(fstype)?;
    // SAFETY: `name` is NUL-terminated and outlives the call.
    owned(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })
}

/// One fsconfig(2) call: a flag (`value` None), a string, or an fd.
fn sys_fsconfig(fs: BorrowedFd<'_>, key: &str, value: FsValue<'_>) -> Result<(), Errno> {
    let key = cstring(key)?;
    let ret = match value {
        FsValue::Flag => {
            // SAFETY: `key` is NUL-terminated; value must be NULL and aux 0 for a flag.
            unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    fs.as_raw_fd(),
                    FSCONFIG_SET_FLAG,
                    key.as_ptr(),
                    std::ptr::null::<libc::c_char>(),
                    0,
                )
            }
        }
        FsValue::String(v) => {
            let v = cstring(v)?;
            // SAFETY: `key` and `v` are NUL-terminated and outlive the call; aux is 0.
            unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    fs.as_raw_fd(),
                    FSCONFIG_SET_STRING,
                    key.as_ptr(),
                    v.as_ptr(),
                    0,
                )
            }
        }
        FsValue::Fd(fd) => {
            // SAFETY: `key` is NUL-terminated, value is NULL and aux an open fd, as FSCONFIG_SET_FD takes.
            unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    fs.as_raw_fd(),
                    FSCONFIG_SET_FD,
                    key.as_ptr(),
                    std::ptr::null::<libc::c_char>(),
                    fd.as_raw_fd(),
                )
            }
        }
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

enum FsValue<'a> {
    Flag,
    String(&'a str),
    Fd(BorrowedFd<'a>),
}

fn sys_fsconfig_create(fs: BorrowedFd<'_>) -> Result<(), Errno> {
    // SAFETY: FSCONFIG_CMD_CREATE takes no key or value; `fs` stays open for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

fn sys_fsmount(fs: BorrowedFd<'_>, attrs: libc::c_uint) -> Result<OwnedFd, Errno> {
    // SAFETY: plain integer arguments; `fs` stays open for the call.
    owned(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}

/// The filesystem context's messages (why the kernel refused an option).
fn fs_log(fs: BorrowedFd<'_>) -> String {
    let Ok(dup) = fs.try_clone_to_owned() else {
        return String::new();
    };
    let mut file = std::fs::File::from(dup);
    let mut lines = Vec::new();
    let mut buf = [0u8; 1024];
    // Each read returns one message; ENODATA ends the list.
    while let Ok(n) = file.read(&mut buf) {
        if n == 0 {
            break;
        }
        lines.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
        if lines.len() > 16 {
            break;
        }
    }
    lines.join("; ")
}

/// Makes an overlay with every lower layer id-mapped through `userns` and
/// attaches it on `target` (a host path).
pub fn mount_idmapped_overlay(
    target: &Path,
    layers: &OverlayLayers,
    userns: BorrowedFd<'_>,
) -> Result<(), RootfsError> {
    let fs = sys_fsopen("overlay")
        .map_err(|e| overlay_err("fsopen(overlay)", target, e, String::new()))?;
    let fail = |step, e| overlay_err(step, target, e, fs_log(fs.as_fd()));
    // Every tree stays open until the overlay exists: closing a detached
    // tree's last fd unmounts it, and the layer would be refused at create.
    let mut trees = Vec::with_capacity(layers.lowers.len());
    for lower in &layers.lowers {
        let tree = idmapped_tree(lower, userns, false, false)?;
        sys_fsconfig(fs.as_fd(), "lowerdir+", FsValue::Fd(tree.as_fd())).map_err(|e| {
            if e == Errno::EINVAL {
                RootfsError::Unsupported(format!(
                    "overlay layers given as file descriptors (Linux 6.13 or later) for {lower:?}: {}",
                    fs_log(fs.as_fd())
                ))
            } else {
                fail("fsconfig(lowerdir+)", e)
            }
        })?;
        trees.push(tree);
    }
    for (key, dir) in [("upperdir", &layers.upper), ("workdir", &layers.work)] {
        if let Some(dir) = dir {
            let dir = dir.to_str().ok_or_else(|| RootfsError::InvalidSpec {
                field: "overlay layer",
                value: format!("{dir:?} is not UTF-8"),
            })?;
            sys_fsconfig(fs.as_fd(), key, FsValue::String(dir))
                .map_err(|e| fail("fsconfig(upperdir/workdir)", e))?;
        }
    }
    for opt in &layers.options {
        let value = match opt.split_once('=') {
            Some((k, v)) => sys_fsconfig(fs.as_fd(), k, FsValue::String(v)),
            None => sys_fsconfig(fs.as_fd(), opt, FsValue::Flag),
        };
        value.map_err(|e| fail("fsconfig(option)", e))?;
    }
    sys_fsconfig_create(fs.as_fd()).map_err(|e| fail("fsconfig(create)", e))?;
    let mut attrs = 0;
    for (on, attr) in [
        (layers.readonly, MOUNT_ATTR_RDONLY),
        (layers.nosuid, MOUNT_ATTR_NOSUID),
        (layers.nodev, MOUNT_ATTR_NODEV),
        (layers.noexec, MOUNT_ATTR_NOEXEC),
    ] {
        if on {
            attrs |= attr;
        }
    }
    let mnt = sys_fsmount(fs.as_fd(), attrs).map_err(|e| fail("fsmount", e))?;
    drop(trees);
    let dir = nix::fcntl::open(
        target,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| overlay_err("open target", target, e, String::new()))?;
    super::idmap::sys_move_mount(mnt.as_fd(), dir.as_fd())
        .map_err(|e| overlay_err("move_mount", target, e, String::new()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rootfs::idmap::userns_from_mappings;
    use crate::rootfs::test_support::{check, in_mount_ns, msg};
    use nix::sched::CloneFlags;
    use oci_spec::runtime::LinuxIdMappingBuilder;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn lower_layers_are_id_mapped_and_writes_keep_host_ids() {
        let tmp = tempfile::tempdir().unwrap();
        let p = |s: &str| tmp.path().join(s);
        for d in ["l1", "l2", "up", "work", "merged"] {
            std::fs::create_dir(p(d)).unwrap();
        }
        std::fs::write(p("l1/top"), "t").unwrap();
        std::fs::write(p("l2/bottom"), "b").unwrap();
        std::fs::write(p("l2/top"), "hidden").unwrap();
        std::os::unix::fs::chown(p("up"), Some(300000), Some(300000)).unwrap();
        let map = vec![LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(300000u32)
            .size(65536u32)
            .build()
            .unwrap()];
        let layers = OverlayLayers {
            lowers: vec![p("l1"), p("l2")],
            upper: Some(p("up")),
            work: Some(p("work")),
            options: vec!["volatile".into()],
            nodev: true,
            ..Default::default()
        };
        in_mount_ns(CloneFlags::empty(), || {
            let userns = userns_from_mappings(&map, &map).map_err(msg)?;
            mount_idmapped_overlay(&p("merged"), &layers, userns.as_fd()).map_err(msg)?;
            let merged = p("merged");
            let top = std::fs::read_to_string(merged.join("top")).map_err(msg)?;
            check(top == "t", format!("top layer wins: {top}"))?;
            for f in ["top", "bottom"] {
                let m = std::fs::metadata(merged.join(f)).map_err(msg)?;
                check(
                    (m.uid(), m.gid()) == (300000, 300000),
                    format!("{f} owned by {}:{}", m.uid(), m.gid()),
                )?;
            }
            // Written by the host's root: stored as uid 0 in the unmapped upper.
            std::fs::write(merged.join("new"), "n").map_err(msg)?;
            let new = std::fs::metadata(p("up/new")).map_err(msg)?;
            check(new.uid() == 0, format!("new file stored as {}", new.uid()))?;
            std::os::unix::fs::chown(merged.join("bottom"), Some(300005), None).map_err(msg)?;
            let up = std::fs::metadata(p("up/bottom")).map_err(msg)?;
            check(up.uid() == 300005, format!("copied up as {}", up.uid()))?;
            let lower = std::fs::metadata(p("l2/bottom")).map_err(msg)?;
            check(lower.uid() == 0, "lower layer changed")?;
            Ok(())
        });
    }

    #[test]
    fn bad_options_name_the_kernel_message() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("l")).unwrap();
        let map = vec![LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(300000u32)
            .size(10u32)
            .build()
            .unwrap()];
        let userns = userns_from_mappings(&map, &map).unwrap();
        let layers = OverlayLayers {
            lowers: vec![tmp.path().join("l")],
            options: vec!["no-such-option".into()],
            ..Default::default()
        };
        let err = mount_idmapped_overlay(tmp.path(), &layers, userns.as_fd()).unwrap_err();
        assert!(
            matches!(err, RootfsError::Overlay { step, .. } if step == "fsconfig(option)"),
            "{err:?}"
        );
    }
}
