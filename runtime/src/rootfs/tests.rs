//! Root-only tests of the rootfs set-up. Each runs in a forked child with its
//! own mount namespace (see test_support), so the host mount table is never
//! touched and every mount disappears with the child.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::statfs::{PROC_SUPER_MAGIC, SYSFS_MAGIC, TMPFS_MAGIC};
use nix::sys::statvfs::{statvfs, FsFlags};
use oci_spec::runtime::{
    LinuxBuilder, LinuxDeviceBuilder, LinuxDeviceType, RootBuilder, Spec, SpecBuilder,
};

use super::test_support::{
    bind, cgroup_probe, check, in_mount_ns, is_ro, magic, mount, msg, prepare, rootfs_dir,
    source_dir, spec_with, tmpfs_on, ChildResult,
};
use super::{bind_console, finish_rootfs, move_root, pivot_root, prepare_rootfs, RootfsConfig};

#[test]
fn full_lifecycle_with_default_mounts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    let src = source_dir(&tmp);
    let file_src = tmp.path().join("file_src");
    std::fs::write(&file_src, b"file content").unwrap();
    in_mount_ns(CloneFlags::empty(), || {
        tmpfs_on(&root)?;
        std::fs::write(root.join("marker"), b"in rootfs").map_err(msg)?;
        let mut mounts = oci_spec::runtime::get_default_mounts();
        mounts.push(bind(&src, "/data", &["rbind", "ro", "nosuid"]));
        mounts.push(bind(&file_src, "/etc/file", &["bind"]));
        let default = Spec::default();
        let defaults = default.linux().as_ref().unwrap();
        let mydev = LinuxDeviceBuilder::default()
            .path("/dev/mynull")
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .file_mode(0o600u32)
            .build()
            .unwrap();
        let linux = LinuxBuilder::default()
            .masked_paths(defaults.masked_paths().clone().unwrap())
            .readonly_paths(defaults.readonly_paths().clone().unwrap())
            .devices(vec![mydev])
            .build()
            .unwrap();
        let spec = SpecBuilder::default()
            .root(
                RootBuilder::default()
                    .path(&root)
                    .readonly(true)
                    .build()
                    .unwrap(),
            )
            .mounts(mounts)
            .linux(linux)
            .build()
            .unwrap();
        prepare(&spec, &root)?;
        pivot_root(&root).map_err(msg)?;
        finish_rootfs(&spec).map_err(msg)?;

        check(Path::new("/marker").exists(), "rootfs content not at /")?;
        check(
            !Path::new("/bin/busybox").exists(),
            "host root still visible",
        )?;
        let null = std::fs::metadata("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        check(
            null.rdev() == nix::sys::stat::makedev(1, 3),
            "/dev/null rdev",
        )?;
        check(null.permissions().mode() & 0o777 == 0o666, "/dev/null mode")?;
        for d in [
            "/dev/zero",
            "/dev/full",
            "/dev/random",
            "/dev/urandom",
            "/dev/tty",
        ] {
            check(
                std::fs::metadata(d).is_ok_and(|m| m.file_type().is_char_device()),
                format!("{d} missing"),
            )?;
        }
        let mynull = std::fs::metadata("/dev/mynull").map_err(|e| format!("/dev/mynull: {e}"))?;
        check(
            mynull.permissions().mode() & 0o777 == 0o600,
            "/dev/mynull mode",
        )?;
        check(
            std::fs::read_link("/dev/ptmx").map_err(|e| format!("/dev/ptmx: {e}"))?
                == Path::new("pts/ptmx"),
            "/dev/ptmx",
        )?;
        check(
            std::fs::read_link("/dev/fd").map_err(|e| format!("/dev/fd: {e}"))?
                == Path::new("/proc/self/fd"),
            "/dev/fd",
        )?;
        check(
            std::fs::read_link("/dev/stderr").map_err(|e| format!("/dev/stderr: {e}"))?
                == Path::new("/proc/self/fd/2"),
            "/dev/stderr",
        )?;
        check(
            magic(Path::new("/proc"))? == PROC_SUPER_MAGIC,
            "/proc not procfs",
        )?;
        check(magic(Path::new("/sys"))? == SYSFS_MAGIC, "/sys not sysfs")?;
        check(is_ro(Path::new("/sys"))?, "/sys not read-only")?;
        check(
            is_ro(Path::new("/sys/fs/cgroup"))?,
            "/sys/fs/cgroup not read-only",
        )?;
        let probe = Path::new("/sys/fs/cgroup").join(cgroup_probe());
        check(probe.exists(), format!("{probe:?} missing"))?;
        check(
            magic(Path::new("/dev/shm"))? == TMPFS_MAGIC,
            "/dev/shm not tmpfs",
        )?;
        // Masked files are /dev/null, masked directories an empty read-only tmpfs.
        let masked_file = [
            "/proc/kcore",
            "/proc/keys",
            "/proc/timer_list",
            "/proc/sched_debug",
        ]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("no masked /proc file exists")?;
        let meta = std::fs::metadata(masked_file).map_err(|e| format!("{masked_file}: {e}"))?;
        check(
            meta.rdev() == nix::sys::stat::makedev(1, 3),
            format!("{masked_file} not masked"),
        )?;
        if Path::new("/proc/acpi").exists() {
            check(
                magic(Path::new("/proc/acpi"))? == TMPFS_MAGIC,
                "/proc/acpi not masked",
            )?;
        }
        check(is_ro(Path::new("/proc/sys"))?, "/proc/sys not read-only")?;
        check(!is_ro(Path::new("/proc"))?, "/proc itself became read-only")?;
        check(is_ro(Path::new("/"))?, "root not read-only")?;
        check(std::fs::write("/newfile", b"x").is_err(), "root writable")?;
        check(is_ro(Path::new("/data"))?, "ro bind not read-only")?;
        let data = statvfs("/data").map_err(msg)?;
        check(
            data.flags().contains(FsFlags::ST_NOSUID),
            "nosuid lost on ro bind",
        )?;
        check(
            Path::new("/data/from_source").exists(),
            "bind source content missing",
        )?;
        check(
            std::fs::read("/etc/file").map_err(|e| format!("/etc/file: {e}"))? == b"file content",
            "file bind",
        )
    });
}

#[test]
fn recursive_readonly_and_propagation_options() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    let src = source_dir(&tmp);
    std::fs::create_dir(src.join("sub")).unwrap();
    in_mount_ns(CloneFlags::empty(), || {
        tmpfs_on(&root)?;
        tmpfs_on(&src.join("sub"))?;
        let spec = spec_with(vec![
            bind(&src, "/rro", &["rbind", "rro", "rshared"]),
            bind(&src, "/ro", &["rbind", "ro"]),
        ]);
        prepare(&spec, &root)?;
        check(
            is_ro(&root.join("rro"))? && is_ro(&root.join("rro/sub"))?,
            "rro not recursive",
        )?;
        check(
            is_ro(&root.join("ro"))? && !is_ro(&root.join("ro/sub"))?,
            "plain ro changed a submount",
        )?;
        let mounts = super::mountinfo::read().map_err(msg)?;
        let rro = mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == root.join("rro"));
        check(rro.is_some_and(|m| m.is_shared()), "rshared not applied")?;
        let ro = mounts
            .iter()
            .rev()
            .find(|m| m.mount_point == root.join("ro"));
        check(
            ro.is_some_and(|m| !m.is_shared()),
            "/ro unexpectedly shared",
        )
    });
}

#[test]
fn idmapped_bind_mounts_shift_ownership() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    let src = source_dir(&tmp);
    std::fs::create_dir(src.join("sub")).unwrap();
    in_mount_ns(CloneFlags::empty(), || {
        tmpfs_on(&root)?;
        let map = |c: u32, h: u32| {
            vec![oci_spec::runtime::LinuxIdMappingBuilder::default()
                .container_id(c)
                .host_id(h)
                .size(1u32)
                .build()
                .unwrap()]
        };
        let mut idmapped = bind(&src, "/data", &["rbind", "ridmap", "ro"]);
        idmapped.set_uid_mappings(Some(map(0, 1000)));
        idmapped.set_gid_mappings(Some(map(0, 2000)));
        prepare(&spec_with(vec![idmapped]), &root)?;
        let meta = std::fs::metadata(root.join("data/from_source")).map_err(msg)?;
        check(
            meta.uid() == 1000 && meta.gid() == 2000,
            format!("owner {}:{}", meta.uid(), meta.gid()),
        )?;
        check(is_ro(&root.join("data"))?, "idmapped bind not read-only")?;
        let host = std::fs::metadata(src.join("from_source")).map_err(msg)?;
        check(
            host.uid() == 0 && host.gid() == 0,
            "source ownership changed",
        )?;
        let err = prepare(
            &spec_with(vec![bind(&src, "/nomap", &["bind", "idmap"])]),
            &root,
        )
        .unwrap_err();
        check(
            err.contains("without uidMappings"),
            format!("idmap without mappings: {err}"),
        )?;
        let err = prepare(
            &spec_with(vec![mount("tmpfs", "tmpfs", "/t", &["idmap"])]),
            &root,
        )
        .unwrap_err();
        check(
            err.contains("needs a bind mount"),
            format!("idmap on tmpfs: {err}"),
        )
    });
}

#[test]
fn tmpcopyup_copies_content_without_following_links() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    in_mount_ns(CloneFlags::empty(), || {
        tmpfs_on(&root)?;
        let base = root.join("var/cache");
        std::fs::create_dir_all(base.join("sub")).map_err(msg)?;
        std::fs::write(base.join("sub/file"), b"cached").map_err(msg)?;
        std::fs::set_permissions(
            base.join("sub/file"),
            std::fs::Permissions::from_mode(0o640),
        )
        .map_err(msg)?;
        std::os::unix::fs::symlink("/etc/passwd", base.join("link")).map_err(msg)?;
        nix::unistd::mkfifo(
            &base.join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .map_err(msg)?;
        let spec = spec_with(vec![mount(
            "tmpfs",
            "tmpfs",
            "/var/cache",
            &["tmpcopyup", "ro", "mode=755"],
        )]);
        prepare(&spec, &root)?;
        check(
            magic(&base)? == TMPFS_MAGIC && is_ro(&base)?,
            "not a read-only tmpfs",
        )?;
        check(
            std::fs::read(base.join("sub/file")).map_err(msg)? == b"cached",
            "file not copied",
        )?;
        let mode = std::fs::metadata(base.join("sub/file"))
            .map_err(msg)?
            .permissions()
            .mode();
        check(mode & 0o777 == 0o640, format!("mode {mode:o} not kept"))?;
        check(
            std::fs::read_link(base.join("link")).map_err(msg)? == Path::new("/etc/passwd"),
            "link",
        )?;
        let fifo = std::fs::symlink_metadata(base.join("fifo")).map_err(msg)?;
        check(fifo.file_type().is_fifo(), "fifo not copied")?;
        let err = prepare(
            &spec_with(vec![mount("proc", "proc", "/p", &["tmpcopyup"])]),
            &root,
        )
        .unwrap_err();
        check(
            err.contains("tmpcopyup"),
            format!("tmpcopyup on proc: {err}"),
        )
    });
}

#[test]
fn rootfs_propagation_shared_survives_pivot() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    in_mount_ns(CloneFlags::empty(), || {
        tmpfs_on(&root)?;
        let linux = LinuxBuilder::default()
            .rootfs_propagation("rshared")
            .build()
            .unwrap();
        let spec = SpecBuilder::default()
            .mounts(vec![mount("proc", "proc", "/proc", &[])])
            .linux(linux)
            .build()
            .unwrap();
        prepare(&spec, &root)?;
        pivot_root(&root).map_err(msg)?;
        finish_rootfs(&spec).map_err(msg)?;
        check(
            Path::new("/dev/null").exists(),
            "devices missing after pivot",
        )?;
        let mounts = super::mountinfo::read().map_err(msg)?;
        let top = super::mountinfo::containing_mount(&mounts, Path::new("/"));
        check(
            top.is_some_and(|m| m.is_shared()),
            format!("/ not shared: {top:?}"),
        )?;
        check(
            mounts.iter().all(|m| m.mount_point.starts_with("/")),
            "odd mount table",
        )
    });
}

#[test]
fn move_root_enters_rootfs_and_detaches_host_mounts() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    in_mount_ns(CloneFlags::empty(), || {
        tmpfs_on(&root)?;
        std::fs::write(root.join("marker"), b"x").map_err(msg)?;
        let spec = spec_with(vec![mount(
            "proc",
            "proc",
            "/proc",
            &["nosuid", "noexec", "nodev"],
        )]);
        prepare(&spec, &root)?;
        move_root(&root).map_err(msg)?;
        finish_rootfs(&spec).map_err(msg)?;
        check(Path::new("/marker").exists(), "not in the rootfs")?;
        let mounts = super::mountinfo::read().map_err(msg)?;
        // Host mounts such as /sys/fs/cgroup/* were detached before the chroot.
        check(
            !mounts
                .iter()
                .any(|m| m.fstype == "cgroup" || m.fstype == "sysfs"),
            "host mounts left behind",
        )
    });
}

#[test]
fn console_and_user_ns_device_binds() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    in_mount_ns(CloneFlags::empty(), || {
        tmpfs_on(&root)?;
        let spec = spec_with(vec![mount(
            "tmpfs",
            "tmpfs",
            "/dev",
            &["nosuid", "mode=755"],
        )]);
        let cfg = RootfsConfig {
            spec: &spec,
            rootfs: &root,
            in_user_ns: true,
            cgroup_ns: false,
            idmapped: None,
        };
        prepare_rootfs(&cfg).map_err(msg)?;
        let null = std::fs::metadata(root.join("dev/null")).map_err(msg)?;
        check(
            null.rdev() == nix::sys::stat::makedev(1, 3),
            "bound /dev/null wrong",
        )?;
        let pty = nix::pty::openpty(None, None).map_err(msg)?;
        let slave_path = std::fs::read_link(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&pty.slave)
        ))
        .map_err(msg)?;
        bind_console(&root, &slave_path).map_err(msg)?;
        let console = std::fs::metadata(root.join("dev/console")).map_err(msg)?;
        let slave = std::fs::metadata(&slave_path).map_err(msg)?;
        check(
            console.rdev() == slave.rdev(),
            "console is not the pty slave",
        )
    });
}

#[test]
fn cgroup_mount_with_own_cgroup_namespace() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    in_mount_ns(CloneFlags::CLONE_NEWCGROUP, || {
        tmpfs_on(&root)?;
        let spec = spec_with(vec![mount(
            "cgroup",
            "cgroup",
            "/sys/fs/cgroup",
            &["nosuid", "ro"],
        )]);
        let cfg = RootfsConfig {
            spec: &spec,
            rootfs: &root,
            in_user_ns: false,
            cgroup_ns: true,
            idmapped: None,
        };
        prepare_rootfs(&cfg).map_err(msg)?;
        let cg = root.join("sys/fs/cgroup");
        check(is_ro(&cg)?, "cgroup tmpfs not read-only")?;
        let probe = cg.join(cgroup_probe());
        check(probe.exists(), format!("{probe:?} missing"))?;
        check(is_ro(probe.parent().unwrap())?, "hierarchy not read-only")
    });
}

#[test]
fn plain_directory_rootfs_is_bound_and_pivoted() {
    // The usual bundle: rootfs is a directory on the host filesystem, not a mount point.
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    std::fs::create_dir(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), b"berth-test").unwrap();
    in_mount_ns(CloneFlags::empty(), || {
        let spec = SpecBuilder::default()
            .root(
                RootBuilder::default()
                    .path(&root)
                    .readonly(true)
                    .build()
                    .unwrap(),
            )
            .mounts(vec![
                mount("proc", "proc", "/proc", &["nosuid", "noexec", "nodev"]),
                mount(
                    "tmpfs",
                    "tmpfs",
                    "/dev",
                    &["nosuid", "strictatime", "mode=755", "size=65536k"],
                ),
            ])
            .build()
            .unwrap();
        prepare(&spec, &root)?;
        pivot_root(&root).map_err(msg)?;
        finish_rootfs(&spec).map_err(msg)?;
        check(
            std::fs::read("/etc/os-release").map_err(msg)? == b"berth-test",
            "rootfs content",
        )?;
        check(is_ro(Path::new("/"))?, "root not read-only")?;
        check(!is_ro(Path::new("/dev"))?, "/dev must stay writable")?;
        let mounts = super::mountinfo::read().map_err(msg)?;
        check(
            mounts
                .iter()
                .all(|m| !m.mount_point.starts_with(tmp.path())),
            "host paths in the mount table",
        )?;
        check(
            mounts
                .iter()
                .filter(|m| m.mount_point == Path::new("/"))
                .count()
                == 1,
            "old root still mounted",
        )
    });
    // Nothing was left on the host's copy of the rootfs but the image content.
    let left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        left.iter().all(|n| n == "etc" || n == "proc" || n == "dev"),
        "{left:?}"
    );
    assert_eq!(
        std::fs::read_dir(root.join("dev")).unwrap().count(),
        0,
        "device nodes written to the host rootfs"
    );
}

/// Enters a new user namespace mapping only root (the child's own uid), then a mount namespace it owns.
fn enter_user_ns() -> ChildResult {
    nix::sched::unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| format!("unshare user: {e}"))?;
    std::fs::write("/proc/self/setgroups", b"deny").map_err(msg)?;
    std::fs::write("/proc/self/uid_map", b"0 0 1").map_err(msg)?;
    std::fs::write("/proc/self/gid_map", b"0 0 1").map_err(msg)?;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| format!("unshare mount: {e}"))
}

#[test]
fn user_namespace_fallbacks_keep_locked_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    let src = tmp.path().join("locked");
    std::fs::create_dir(&src).unwrap();
    in_mount_ns(CloneFlags::empty(), || {
        // A source mounted nosuid,nodev before the user namespace exists: those flags get locked.
        nix::mount::mount(
            Some("tmpfs"),
            &src,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            None::<&str>,
        )
        .map_err(msg)?;
        std::fs::write(src.join("probe"), b"p").map_err(msg)?;
        enter_user_ns()?;
        tmpfs_on(&root)?;
        let spec = spec_with(vec![
            mount("tmpfs", "tmpfs", "/dev", &["nosuid", "mode=755"]),
            mount(
                "sysfs",
                "sysfs",
                "/sys",
                &["nosuid", "noexec", "nodev", "ro"],
            ),
            bind(&src, "/locked", &["rbind", "ro"]),
        ]);
        let fifo = LinuxDeviceBuilder::default()
            .path("/dev/myfifo")
            .typ(LinuxDeviceType::P)
            .build()
            .unwrap();
        let mut spec = spec;
        spec.set_linux(Some(
            LinuxBuilder::default().devices(vec![fifo]).build().unwrap(),
        ));
        let cfg = RootfsConfig {
            spec: &spec,
            rootfs: &root,
            in_user_ns: true,
            cgroup_ns: false,
            idmapped: None,
        };
        prepare_rootfs(&cfg).map_err(msg)?;
        // sysfs needs a network namespace: the host's /sys is bound instead, read-only.
        check(magic(&root.join("sys"))? == SYSFS_MAGIC, "no sysfs at /sys")?;
        check(is_ro(&root.join("sys"))?, "/sys fallback not read-only")?;
        let locked = statvfs(&root.join("locked")).map_err(msg)?;
        check(
            locked.flags().contains(FsFlags::ST_RDONLY),
            "ro bind not read-only",
        )?;
        check(
            locked
                .flags()
                .contains(FsFlags::ST_NODEV | FsFlags::ST_NOSUID),
            "locked flags dropped",
        )?;
        let null = std::fs::metadata(root.join("dev/null")).map_err(msg)?;
        check(
            null.rdev() == nix::sys::stat::makedev(1, 3),
            "/dev/null not bound from the host",
        )?;
        let fifo = std::fs::symlink_metadata(root.join("dev/myfifo")).map_err(msg)?;
        check(
            fifo.file_type().is_fifo(),
            "fifo device not made in the user namespace",
        )?;
        pivot_root(&root).map_err(msg)?;
        check(
            Path::new("/locked/probe").exists(),
            "bind content missing after pivot",
        )
    });
}

#[test]
fn cgroup_mount_on_a_unified_host() {
    let tmp = tempfile::tempdir().unwrap();
    let root = rootfs_dir(&tmp);
    in_mount_ns(CloneFlags::empty(), || {
        // Make this namespace look like a pure cgroup v2 host.
        nix::mount::mount(
            Some("cgroup2"),
            "/sys/fs/cgroup",
            Some("cgroup2"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| format!("cgroup2 on /sys/fs/cgroup: {e}"))?;
        let spec = spec_with(vec![mount(
            "cgroup",
            "cgroup",
            "/sys/fs/cgroup",
            &["nosuid", "nodev", "ro"],
        )]);
        for cgroup_ns in [false, true] {
            if cgroup_ns {
                nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).map_err(msg)?;
            }
            // A fresh rootfs each round: the same cgroup2 root cannot be stacked on itself (EBUSY).
            let root = root.join(if cgroup_ns { "ns" } else { "shared" });
            std::fs::create_dir_all(&root).map_err(msg)?;
            tmpfs_on(&root)?;
            let cfg = RootfsConfig {
                spec: &spec,
                rootfs: &root,
                in_user_ns: false,
                cgroup_ns,
                idmapped: None,
            };
            prepare_rootfs(&cfg).map_err(msg)?;
            let cg = root.join("sys/fs/cgroup");
            check(
                magic(&cg)? == nix::sys::statfs::CGROUP2_SUPER_MAGIC,
                format!("not cgroup2 (cgroup_ns={cgroup_ns})"),
            )?;
            check(
                is_ro(&cg)?,
                format!("not read-only (cgroup_ns={cgroup_ns})"),
            )?;
            check(cg.join("cgroup.procs").exists(), "cgroup.procs missing")?;
        }
        Ok(())
    });
}
