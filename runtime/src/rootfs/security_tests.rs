//! Root-only tests of hostile inputs: symlinks and `..` in mount destinations
//! and device paths, mounts over /proc, a tampered /dev/null, a symlinked
//! /dev/console. Each runs in a forked child with its own mount namespace.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::statfs::TMPFS_MAGIC;
use oci_spec::runtime::{LinuxBuilder, LinuxDeviceBuilder, LinuxDeviceType, Mount, SpecBuilder};

use super::test_support::{
    bind, check, in_mount_ns, inside, magic, mount, msg, prepare, rootfs_dir, source_dir,
    spec_with, tmpfs_on,
};
use super::{bind_console, finish_rootfs, pivot_root};

#[test]
fn mount_destination_absolute_symlink_stays_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    let src = source_dir(&tmp);
    let host_target = tmp.path().join("host_target");
    std::fs::create_dir(&host_target).unwrap();
    in_mount_ns(CloneFlags::empty(), || {
        tmpfs_on(&root)?;
        std::os::unix::fs::symlink(&host_target, root.join("mnt")).map_err(msg)?;
        prepare(&spec_with(vec![bind(&src, "/mnt", &["rbind"])]), &root)?;
        check(
            !host_target.join("from_source").exists(),
            "mount escaped to the host target",
        )?;
        check(
            inside(&root, &host_target).join("from_source").exists(),
            "mount not inside the rootfs",
        )
    });
}

#[test]
fn mount_destination_relative_symlink_and_dotdot_stay_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    let src = source_dir(&tmp);
    let host_target = tmp.path().join("host_target");
    std::fs::create_dir(&host_target).unwrap();
    in_mount_ns(CloneFlags::empty(), || {
        tmpfs_on(&root)?;
        std::fs::create_dir(root.join("a")).map_err(msg)?;
        // On the host, root/a/../../host_target is tmp/host_target.
        std::os::unix::fs::symlink("../../host_target", root.join("a/evil")).map_err(msg)?;
        let spec = spec_with(vec![
            bind(&src, "/a/evil", &["bind"]),
            mount("tmpfs", "tmpfs", "/../../dotdot", &["size=1m"]),
        ]);
        prepare(&spec, &root)?;
        check(
            !host_target.join("from_source").exists(),
            "relative symlink escaped",
        )?;
        check(
            root.join("host_target/from_source").exists(),
            "bind not at root/host_target",
        )?;
        check(
            !tmp.path().join("dotdot").exists(),
            "`..` destination escaped",
        )?;
        check(
            magic(&root.join("dotdot"))? == TMPFS_MAGIC,
            "tmpfs not at root/dotdot",
        )
    });
}

#[test]
fn device_paths_through_symlinks_stay_inside() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    let host_dir = tmp.path().join("hostdev");
    std::fs::create_dir(&host_dir).unwrap();
    let host_file = tmp.path().join("hostfile");
    std::fs::write(&host_file, b"keep").unwrap();
    in_mount_ns(CloneFlags::empty(), || {
        tmpfs_on(&root)?;
        std::fs::create_dir(root.join("dev")).map_err(msg)?;
        std::os::unix::fs::symlink(&host_dir, root.join("dev/evil")).map_err(msg)?;
        std::os::unix::fs::symlink(&host_file, root.join("dev/link")).map_err(msg)?;
        let dev = |p: &str| {
            LinuxDeviceBuilder::default()
                .path(p)
                .typ(LinuxDeviceType::C)
                .major(1)
                .minor(3)
                .file_mode(0o640u32)
                .uid(1000u32)
                .gid(1001u32)
                .build()
                .unwrap()
        };
        let linux = LinuxBuilder::default()
            .devices(vec![dev("/dev/evil/mydev"), dev("/dev/link")])
            .build()
            .unwrap();
        let spec = SpecBuilder::default()
            .mounts(Vec::<Mount>::new())
            .linux(linux)
            .build()
            .unwrap();
        prepare(&spec, &root)?;
        check(
            !host_dir.join("mydev").exists(),
            "device created on the host",
        )?;
        check(
            std::fs::read(&host_file).map_err(msg)? == b"keep",
            "host file changed",
        )?;
        let node = inside(&root, &host_dir).join("mydev");
        let meta = std::fs::symlink_metadata(&node).map_err(|e| format!("{node:?}: {e}"))?;
        check(meta.file_type().is_char_device(), "not a char device")?;
        check(meta.rdev() == nix::sys::stat::makedev(1, 3), "wrong rdev")?;
        check(meta.permissions().mode() & 0o7777 == 0o640, "wrong mode")?;
        check(meta.uid() == 1000 && meta.gid() == 1001, "wrong owner")?;
        let link = std::fs::symlink_metadata(root.join("dev/link")).map_err(msg)?;
        check(
            link.file_type().is_char_device(),
            "symlink not replaced by the device",
        )
    });
}

#[test]
fn proc_mounts_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    let src = source_dir(&tmp);
    in_mount_ns(CloneFlags::empty(), || {
        tmpfs_on(&root)?;
        let err = prepare(
            &spec_with(vec![mount("tmpfs", "tmpfs", "/proc", &[])]),
            &root,
        )
        .unwrap_err();
        check(
            err.contains("proc"),
            format!("tmpfs over /proc accepted: {err}"),
        )?;
        let spec = spec_with(vec![
            mount("proc", "proc", "/proc", &[]),
            bind(&src, "/proc/sys", &["bind"]),
        ]);
        let err = prepare(&spec, &root).unwrap_err();
        check(
            err.contains("not allowed"),
            format!("bind over /proc/sys accepted: {err}"),
        )?;
        std::os::unix::fs::symlink("/etc", root.join("sys")).map_err(msg)?;
        let err = prepare(
            &spec_with(vec![mount("sysfs", "sysfs", "/sys", &[])]),
            &root,
        )
        .unwrap_err();
        check(
            err.contains("symlink"),
            format!("sysfs on a symlink accepted: {err}"),
        )
    });
}

#[test]
fn masking_refuses_a_dev_null_that_is_not_the_null_device() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    let fake_dev = tmp.path().join("fakedev");
    std::fs::create_dir(&fake_dev).unwrap();
    // An image-controlled /dev whose "null" leads into procfs.
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", fake_dev.join("null")).unwrap();
    in_mount_ns(CloneFlags::empty(), || {
        tmpfs_on(&root)?;
        let linux = LinuxBuilder::default()
            .masked_paths(vec![
                "/proc/keys".to_string(),
                "/proc/timer_list".to_string(),
            ])
            .build()
            .unwrap();
        let spec = SpecBuilder::default()
            .mounts(vec![
                mount("proc", "proc", "/proc", &[]),
                bind(&fake_dev, "/dev", &["rbind"]),
            ])
            .linux(linux)
            .build()
            .unwrap();
        prepare(&spec, &root)?;
        pivot_root(&root).map_err(msg)?;
        let err = finish_rootfs(&spec).map_err(msg).unwrap_err();
        check(
            err.contains("/dev/null is not the null"),
            format!("tampered /dev/null accepted: {err}"),
        )?;
        let keys = std::fs::metadata("/proc/keys").map_err(msg)?;
        check(keys.file_type().is_file(), "/proc/keys was replaced")
    });
}

#[test]
fn console_after_pivot_replaces_a_symlinked_console() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    in_mount_ns(CloneFlags::empty(), || {
        tmpfs_on(&root)?;
        std::fs::create_dir(root.join("etc")).map_err(msg)?;
        std::fs::write(root.join("etc/target"), b"untouched").map_err(msg)?;
        let spec = spec_with(vec![
            mount("proc", "proc", "/proc", &[]),
            mount("tmpfs", "tmpfs", "/dev", &["nosuid", "mode=755"]),
            mount(
                "devpts",
                "devpts",
                "/dev/pts",
                &["newinstance", "ptmxmode=0666", "mode=0620"],
            ),
        ]);
        prepare(&spec, &root)?;
        std::os::unix::fs::symlink("/etc/target", root.join("dev/console")).map_err(msg)?;
        pivot_root(&root).map_err(msg)?;
        let pty = nix::pty::openpty(None, None).map_err(msg)?;
        let slave_fd = std::os::fd::AsRawFd::as_raw_fd(&pty.slave);
        let slave_path = std::fs::read_link(format!("/proc/self/fd/{slave_fd}")).map_err(msg)?;
        bind_console(Path::new("/"), &slave_path).map_err(msg)?;
        let console = std::fs::metadata("/dev/console").map_err(msg)?;
        let slave = std::fs::metadata(&slave_path).map_err(msg)?;
        check(
            console.rdev() == slave.rdev(),
            "console is not the pty slave",
        )?;
        check(
            std::fs::read("/etc/target").map_err(msg)? == b"untouched",
            "symlink target touched",
        )?;
        let err = bind_console(Path::new("/"), Path::new("/etc/target"))
            .map_err(msg)
            .unwrap_err();
        check(
            err.contains("not a character device"),
            format!("regular file accepted as console: {err}"),
        )
    });
}
