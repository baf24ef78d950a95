//! Issue point 4: paths resolved inside the root, no host fd leaks into the
//! container, cwd outside the root refused, the runtime binary out of reach.

use std::fs;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::support::probe::{kv, mount_at, parse_mountinfo};
use crate::support::{Bundle, Container, Runtime};

/// Entries of a host directory, sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A host directory the container must never touch, with one sentinel file.
fn victim() -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix("berth-it-victim-")
        .tempdir()
        .unwrap();
    fs::write(d.path().join("sentinel"), "host\n").unwrap();
    d
}

#[test]
fn symlinked_mount_destinations_stay_inside_the_rootfs() {
    let host = victim();
    let hp = host.path().to_str().unwrap().to_owned();
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("from-source"), "src\n").unwrap();
    let b = Bundle::new();
    // Absolute and ../-relative symlinks aimed at the host dir.
    b.rootfs_symlink("/evil", &hp);
    b.rootfs_symlink("/evil2", &format!("../../../../../../../../../..{hp}"));
    let mut b = b;
    b.mount(
        "/evil/sub",
        "bind",
        src.path().to_str().unwrap(),
        &["bind", "ro"],
    );
    b.mount("/evil2/sub2", "tmpfs", "tmpfs", &["size=1m"]);
    // A destination climbing out with `..` is clamped at the root as well.
    b.mount(
        &format!("/../../../../../..{hp}/dotdot"),
        "tmpfs",
        "tmpfs",
        &["size=1m"],
    );
    b.sh(&format!(
        "exec 2>&1; cat /proc/self/mountinfo; echo END-MOUNTS; \
         echo via=$(cat /evil/sub/from-source); echo sentinel=$(cat {hp}/sentinel 2>/dev/null || echo none)"
    ));
    let mut c = Container::new(&Runtime::under_test(), "symlinkdst", b);
    let out = c.create();
    // Refusing would be safe but breaks real images (/var/run -> /run): resolve inside instead.
    assert!(out.success(), "{out}");
    {
        assert!(c.start().success());
        c.wait();
        let s = c.stdout();
        let (table, rest) = s.split_once("END-MOUNTS\n").unwrap();
        let mounts = parse_mountinfo(table);
        // Both mounts landed at <rootfs><host path>/..., i.e. <host path> inside the container.
        assert!(mount_at(&mounts, &format!("{hp}/sub")).is_some(), "{s}");
        assert!(mount_at(&mounts, &format!("{hp}/sub2")).is_some(), "{s}");
        assert!(mount_at(&mounts, &format!("{hp}/dotdot")).is_some(), "{s}");
        assert_eq!(kv(rest, "via").as_deref(), Some("src"), "{s}");
        // The host's sentinel is not visible at that path inside the container.
        assert_eq!(kv(rest, "sentinel").as_deref(), Some("none"), "{s}");
    }
    // Whatever the runtime decided, the host directory is untouched.
    assert_eq!(
        entries(host.path()),
        ["sentinel"],
        "the runtime created paths on the host"
    );
    let host_mounts = crate::support::runner::mounts_containing("self", &hp);
    assert!(host_mounts.is_empty(), "{host_mounts:?}");
}

/// linux.devices paths go through the same in-root resolution as mounts.
#[test]
fn device_paths_through_symlinks_stay_inside_the_rootfs() {
    let host = victim();
    let hp = host.path().to_str().unwrap().to_owned();
    let mut b = Bundle::new();
    b.rootfs_symlink("/evil", &hp);
    b.set(
        "/linux/devices",
        json!([{"path": "/evil/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}]),
    );
    b.sh("echo st=$(stat -c '%F %t:%T' /evil/mynull)");
    let mut c = Container::new(&Runtime::under_test(), "devlink", b);
    let out = c.create();
    if out.success() {
        assert!(c.start().success());
        c.wait();
        assert_eq!(
            kv(&c.stdout(), "st").as_deref(),
            Some("character special file 1:3"),
            "{}",
            c.stdout()
        );
    }
    assert_eq!(
        entries(host.path()),
        ["sentinel"],
        "a device node was created on the host"
    );
}

/// Makes `fd` (opened by the test) appear as `target` in the spawned runtime, without CLOEXEC.
fn leak_fd(cmd: &mut Command, fd: RawFd, target: RawFd) {
    // SAFETY: dup2 is async-signal-safe and only touches the child's fd table.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, target) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// CVE-2024-21626: a cwd of /proc/self/fd/N reaches whatever directory the
/// runtime (or its caller, fd 7 here) had open at that number.
#[test]
fn cwd_through_a_file_descriptor_is_refused() {
    let host = victim();
    let dir = fs::File::open(host.path()).unwrap();
    for n in 3..=9 {
        let mut b = Bundle::new();
        b.set("/root/readonly", json!(false));
        b.set("/process/cwd", json!(format!("/proc/self/fd/{n}")));
        b.sh("touch escaped; echo cwd=$(pwd)");
        let mut c = Container::new(&Runtime::under_test(), "cwdfd", b);
        let out = c.create_with(&[], |cmd| leak_fd(cmd, dir.as_raw_fd(), 7));
        let started = out.success() && c.start().success();
        if started {
            c.wait();
        }
        assert_eq!(
            entries(host.path()),
            ["sentinel"],
            "fd {n}: process ran in a host directory"
        );
        assert!(
            !started,
            "fd {n}: a cwd outside the root was accepted: {}",
            c.stdout()
        );
    }
}

#[test]
fn cwd_symlink_to_a_host_path_resolves_inside_the_root() {
    let host = victim();
    let hp = host.path().to_str().unwrap().to_owned();
    let mut b = Bundle::new();
    b.set("/root/readonly", json!(false));
    b.rootfs_symlink("/work", &hp);
    b.rootfs_dir(&hp);
    b.set("/process/cwd", json!("/work"));
    b.sh("touch escaped; echo cwd=$(pwd -P)");
    let rootfs = b.rootfs();
    let mut c = Container::new(&Runtime::under_test(), "cwdlink", b);
    let out = c.create();
    if out.success() && c.start().success() {
        c.wait();
        assert_eq!(
            kv(&c.stdout(), "cwd").as_deref(),
            Some(hp.as_str()),
            "{}",
            c.stdout()
        );
        assert!(rootfs
            .join(hp.trim_start_matches('/'))
            .join("escaped")
            .exists());
    }
    assert_eq!(
        entries(host.path()),
        ["sentinel"],
        "cwd escaped to the host"
    );
}

/// fds the shell (pid 1) has open, listed by a child so the listing's own fd is not counted.
/// (No pipe or `$(...)`: pid 1 would hold pipe fds itself while `ls` runs.)
const LIST_FDS: &str = "echo FDS-BEGIN; ls /proc/1/fd; echo FDS-END";

/// The fd numbers printed between FDS-BEGIN and FDS-END, sorted.
fn listed_fds(out: &str) -> Vec<u32> {
    let (_, rest) = out
        .split_once("FDS-BEGIN\n")
        .unwrap_or_else(|| panic!("no fd list: {out}"));
    let (list, _) = rest
        .split_once("FDS-END")
        .unwrap_or_else(|| panic!("no fd list end: {out}"));
    let mut v: Vec<u32> = list
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn no_host_fd_leaks_into_the_container() {
    let files: Vec<fs::File> = (0..4).map(|_| tempfile::tempfile().unwrap()).collect();
    let dir = fs::File::open("/").unwrap();
    let mut b = Bundle::new();
    b.sh(&format!("{LIST_FDS}; exec sleep 1000"));
    let mut c = Container::new(&Runtime::under_test(), "fdleak", b);
    let fds: Vec<RawFd> = files
        .iter()
        .map(|f| f.as_raw_fd())
        .chain([dir.as_raw_fd()])
        .collect();
    let out = c.create_with(&[], |cmd| {
        for (i, fd) in fds.iter().enumerate() {
            leak_fd(cmd, *fd, 5 + i as RawFd);
        }
    });
    assert!(out.success(), "{out}");
    assert!(c.start().success());
    let s = c.wait_for_stdout("FDS-END");
    assert_eq!(listed_fds(&s), [0, 1, 2], "{s}");

    // exec started with extra fds: none reach the exec'd process either.
    let mut cmd = c.command();
    cmd.args([
        "exec",
        &c.id,
        "sh",
        "-c",
        "echo FDS-BEGIN; ls /proc/$$/fd; echo FDS-END",
    ]);
    for (i, fd) in fds.iter().enumerate() {
        leak_fd(&mut cmd, *fd, 5 + i as RawFd);
    }
    let out = crate::support::cmd::run(cmd, crate::support::cmd::CMD_TIMEOUT).ok();
    assert_eq!(listed_fds(&out.stdout), [0, 1, 2], "{out}");
}

#[test]
fn preserve_fds_passes_exactly_the_requested_fds() {
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), "preserved-content\n").unwrap();
    let f = fs::File::open(file.path()).unwrap();
    let extra = tempfile::tempfile().unwrap();
    let mut b = Bundle::new();
    b.sh(&format!("{LIST_FDS}; cat <&3"));
    let mut c = Container::new(&Runtime::under_test(), "preserve", b);
    let (f3, f4) = (f.as_raw_fd(), extra.as_raw_fd());
    let out = c.create_with(&["--preserve-fds", "1"], |cmd| {
        leak_fd(cmd, f3, 3);
        leak_fd(cmd, f4, 4);
    });
    assert!(out.success(), "{out}");
    assert!(c.start().success());
    c.wait();
    let s = c.stdout();
    assert_eq!(listed_fds(&s), [0, 1, 2, 3], "{s}");
    assert!(s.contains("preserved-content"), "{s}");
}

#[test]
fn init_exe_is_the_containers_binary() {
    let mut b = Bundle::new();
    b.sh("echo exe=$(readlink /proc/1/exe); echo self=$(readlink /proc/self/exe)");
    let mut c = Container::new(&Runtime::under_test(), "exe", b);
    let f = c.run_to_exit();
    assert_eq!(
        kv(&f.stdout, "exe").as_deref(),
        Some("/bin/busybox"),
        "{f:?}"
    );
    assert_eq!(
        kv(&f.stdout, "self").as_deref(),
        Some("/bin/busybox"),
        "{f:?}"
    );
}

/// Before `start`, pid 1 of the container is still the runtime's own init:
/// a process exec'd into the container must not be able to reach the host
/// runtime binary through /proc/1/exe and later write to it (CVE-2019-5736).
/// Accepted defences: the init is non-dumpable (the link cannot be followed
/// from inside), it runs from a copy (sealed memfd: another inode), or from a
/// read-only mount of the binary (runc 1.1's bind-mount trick: same inode,
/// but any write through that path fails with EROFS).
#[test]
fn runtime_binary_is_unreachable_from_the_container() {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let rt = Runtime::under_test();
    let host = fs::metadata(&rt.path).unwrap();
    let mut b = Bundle::new();
    b.args(&["true"]);
    let mut c = Container::new(&rt, "cve5736", b);
    c.create_ok();
    let out = c.exec_sh(
        "exec 2>&1; echo link=$(readlink /proc/1/exe); \
         echo id=$(stat -L -c '%d:%i' /proc/1/exe || echo denied); \
         if echo x >> /proc/1/exe; then echo write=ok; else echo write=denied; fi",
    );
    assert!(out.success(), "exec into a created container failed: {out}");
    let s = &out.stdout;
    assert_eq!(kv(s, "write").as_deref(), Some("denied"), "{out}");
    let inside = kv(s, "id").unwrap_or_default();
    if inside == "denied" {
        return; // non-dumpable init: nothing to hold on to from inside
    }
    // Reachable from inside: look at what it is from the host.
    let exe = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(format!("/proc/{}/exe", c.pid()))
        .unwrap();
    let meta = exe.metadata().unwrap();
    let same_inode = meta.dev() == host.dev() && meta.ino() == host.ino();
    let ro_mount = nix::sys::statvfs::fstatvfs(&exe)
        .unwrap()
        .flags()
        .contains(nix::sys::statvfs::FsFlags::ST_RDONLY);
    assert!(
        !same_inode || ro_mount,
        "the container can reach the host runtime binary (same inode, writable mount): {out}"
    );
}
