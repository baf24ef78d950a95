//! The mount table as the container sees it: masked and read-only paths,
//! readonly rootfs, bind/tmpfs mounts with options, /dev, propagation.

use std::fs;
use std::path::Path;

use serde_json::json;

use crate::support::probe::{kv, mount_at, parse_mountinfo, MountEntry};
use crate::support::{Bundle, Container, Finished, Runtime};

fn run(tag: &str, b: Bundle) -> Finished {
    let mut c = Container::new(&Runtime::under_test(), tag, b);
    c.run_to_exit()
}

/// Runs `script` after dumping mountinfo between markers; returns (mounts, rest of stdout).
fn mounts_and(tag: &str, mut b: Bundle, script: &str) -> (Vec<MountEntry>, String, Finished) {
    b.sh(&format!(
        "exec 2>&1; echo BEGIN-MOUNTS; cat /proc/self/mountinfo; echo END-MOUNTS; {script}"
    ));
    let f = run(tag, b);
    let (_, rest) = f.stdout.split_once("BEGIN-MOUNTS\n").expect("no mountinfo");
    let (table, after) = rest.split_once("END-MOUNTS\n").expect("no mountinfo end");
    (parse_mountinfo(table), after.to_owned(), f)
}

#[test]
fn masked_paths_are_masked() {
    let b = Bundle::new();
    let masked: Vec<String> = b.config()["linux"]["maskedPaths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    // Only paths this kernel has can be masked; the others must be skipped silently.
    let present: Vec<&String> = masked.iter().filter(|p| Path::new(p).exists()).collect();
    assert!(!present.is_empty(), "no masked path exists on this host");
    let mut script = String::new();
    for p in &present {
        if Path::new(p).is_dir() {
            script.push_str(&format!("echo \"{p}=dir:$(ls -A {p} | wc -l)\"; "));
        } else {
            script.push_str(&format!("echo \"{p}=file:$(cat {p} | wc -c)\"; "));
        }
    }
    let (mounts, out, f) = mounts_and("masked", b, &script);
    for p in present {
        assert!(
            mount_at(&mounts, p).is_some(),
            "{p} not masked by a mount: {f:?}"
        );
        let got = kv(&out, p).unwrap_or_else(|| panic!("{p} unreadable: {f:?}"));
        assert!(got.ends_with(":0"), "{p} shows content ({got}): {f:?}");
    }
}

#[test]
fn readonly_paths_are_read_only() {
    let b = Bundle::new();
    let (mounts, out, f) = mounts_and(
        "ropaths",
        b,
        "echo x > /proc/sys/kernel/domainname; echo sys=$?; \
         if [ -e /proc/sysrq-trigger ]; then echo h > /proc/sysrq-trigger; echo sysrq=$?; \
         else echo sysrq=absent; fi",
    );
    for p in [
        "/proc/sys",
        "/proc/sysrq-trigger",
        "/proc/irq",
        "/proc/bus",
        "/proc/fs",
    ] {
        if !Path::new(p).exists() {
            continue;
        }
        let m = mount_at(&mounts, p).unwrap_or_else(|| panic!("no mount at {p}: {f:?}"));
        assert!(m.read_only(), "{p} mounted rw: {m:?}");
    }
    assert!(out.contains("Read-only file system"), "{f:?}");
    assert_eq!(kv(&out, "sys").as_deref(), Some("1"), "{f:?}");
    let sysrq = kv(&out, "sysrq");
    assert!(
        matches!(sysrq.as_deref(), Some("1") | Some("absent")),
        "{f:?}"
    );
}

#[test]
fn readonly_rootfs_refuses_writes() {
    let b = Bundle::new();
    let (mounts, out, f) = mounts_and("rootro", b, "touch /x 2>&1; echo touch=$?");
    assert!(mount_at(&mounts, "/").unwrap().read_only(), "{f:?}");
    assert!(out.contains("Read-only file system"), "{f:?}");
    assert_eq!(kv(&out, "touch").as_deref(), Some("1"), "{f:?}");

    let mut b = Bundle::new();
    b.set("/root/readonly", json!(false));
    let (mounts, out, f) = mounts_and("rootrw", b, "touch /x; echo touch=$?; ls /x");
    assert!(!mount_at(&mounts, "/").unwrap().read_only(), "{f:?}");
    assert_eq!(kv(&out, "touch").as_deref(), Some("0"), "{f:?}");
    assert!(out.contains("/x\n"), "{f:?}");
}

#[test]
fn bind_mounts_honour_their_options() {
    let rw = tempfile::tempdir().unwrap();
    let ro = tempfile::tempdir().unwrap();
    fs::write(ro.path().join("inside"), "ro-content\n").unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    fs::write(file.path(), "file-content\n").unwrap();
    let mut b = Bundle::new();
    b.rootfs_dir("/mnt/rw")
        .rootfs_dir("/mnt/ro")
        .rootfs_file("/etc/bound", "");
    b.mount(
        "/mnt/rw",
        "bind",
        rw.path().to_str().unwrap(),
        &["rbind", "rw"],
    );
    b.mount(
        "/mnt/ro",
        "bind",
        ro.path().to_str().unwrap(),
        &["bind", "ro", "nosuid", "nodev"],
    );
    b.mount(
        "/etc/bound",
        "bind",
        file.path().to_str().unwrap(),
        &["bind", "ro"],
    );
    // Destinations missing from the rootfs are created (dir for a dir source).
    b.mount(
        "/new/deep/dir",
        "bind",
        rw.path().to_str().unwrap(),
        &["bind"],
    );
    let (mounts, out, f) = mounts_and(
        "binds",
        b,
        "echo w > /mnt/rw/written; echo rw=$?; \
         echo w > /mnt/ro/written 2>&1; echo ro=$?; cat /mnt/ro/inside; cat /etc/bound; \
         echo deep=$(cat /new/deep/dir/written)",
    );
    assert_eq!(kv(&out, "rw").as_deref(), Some("0"), "{f:?}");
    assert_eq!(
        fs::read_to_string(rw.path().join("written")).unwrap(),
        "w\n"
    );
    assert_eq!(kv(&out, "ro").as_deref(), Some("1"), "{f:?}");
    assert!(!ro.path().join("written").exists());
    assert!(out.contains("ro-content"), "{f:?}");
    assert!(out.contains("file-content"), "{f:?}");
    assert_eq!(kv(&out, "deep").as_deref(), Some("w"), "{f:?}");
    let m = mount_at(&mounts, "/mnt/ro").unwrap();
    assert!(m.read_only(), "{m:?}");
    assert!(
        m.options.contains("nosuid") && m.options.contains("nodev"),
        "{m:?}"
    );
    assert!(!mount_at(&mounts, "/mnt/rw").unwrap().read_only());
    assert!(mount_at(&mounts, "/etc/bound").unwrap().read_only());
}

#[test]
fn tmpfs_mount_options_and_flags() {
    let mut b = Bundle::new();
    b.mount(
        "/scratch",
        "tmpfs",
        "tmpfs",
        &["nosuid", "noexec", "nodev", "mode=1770", "size=2m"],
    );
    let (mounts, out, f) = mounts_and(
        "tmpfs",
        b,
        "echo mode=$(stat -c %a /scratch); cp /bin/busybox /scratch/bb 2>&1; /scratch/bb true 2>&1; echo exec=$?",
    );
    let m = mount_at(&mounts, "/scratch").unwrap_or_else(|| panic!("{f:?}"));
    assert_eq!(m.fstype, "tmpfs");
    for o in ["nosuid", "noexec", "nodev"] {
        assert!(m.options.split(',').any(|x| x == o), "{o} missing: {m:?}");
    }
    assert!(m.super_options.contains("size=2048k"), "{m:?}");
    assert_eq!(kv(&out, "mode").as_deref(), Some("1770"), "{f:?}");
    assert_ne!(
        kv(&out, "exec").as_deref(),
        Some("0"),
        "exec on noexec tmpfs: {f:?}"
    );
}

#[test]
fn dev_has_default_devices_and_symlinks() {
    let b = Bundle::new();
    let (mounts, out, f) = mounts_and(
        "dev",
        b,
        "for d in null zero full random urandom tty; do echo \"$d=$(stat -c '%F %t:%T %a' /dev/$d)\"; done; \
         for l in fd stdin stdout stderr ptmx; do echo \"$l=$(readlink /dev/$l)\"; done; \
         echo z=$(head -c 4 /dev/zero | wc -c); echo x > /dev/full; echo fullw=$?",
    );
    let want = [
        ("null", "character special file 1:3 666"),
        ("zero", "character special file 1:5 666"),
        ("full", "character special file 1:7 666"),
        ("random", "character special file 1:8 666"),
        ("urandom", "character special file 1:9 666"),
        ("tty", "character special file 5:0 666"),
    ];
    for (d, w) in want {
        assert_eq!(kv(&out, d).as_deref(), Some(w), "/dev/{d}: {f:?}");
    }
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    for (l, w) in links {
        assert_eq!(kv(&out, l).as_deref(), Some(w), "/dev/{l}: {f:?}");
    }
    assert_eq!(kv(&out, "z").as_deref(), Some("4"), "{f:?}");
    assert!(out.contains("No space left on device"), "{f:?}");
    for (p, t) in [
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
        ("/proc", "proc"),
        ("/sys", "sysfs"),
    ] {
        let m = mount_at(&mounts, p).unwrap_or_else(|| panic!("no {p}: {f:?}"));
        assert_eq!(m.fstype, t, "{m:?}");
    }
    assert!(mount_at(&mounts, "/sys").unwrap().read_only());
    let pts = mount_at(&mounts, "/dev/pts").unwrap();
    assert!(pts.super_options.contains("ptmxmode=666"), "{pts:?}");
}

#[test]
fn linux_devices_are_created() {
    let mut b = Bundle::new();
    b.set(
        "/linux/devices",
        json!([{"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3,
                "fileMode": 0o640, "uid": 1000, "gid": 1001}]),
    );
    // The owner may write; root would need CAP_DAC_OVERRIDE, which the default set lacks.
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.sh("echo st=$(stat -c '%F %t:%T %a %u %g' /dev/mynull); echo hi > /dev/mynull; echo w=$?");
    let f = run("devices", b);
    assert_eq!(
        kv(&f.stdout, "st").as_deref(),
        Some("character special file 1:3 640 1000 1001"),
        "{f:?}"
    );
    assert_eq!(kv(&f.stdout, "w").as_deref(), Some("0"), "{f:?}");
}

/// Makes a host dir a shared mount point for the duration of a test.
struct SharedMount {
    dir: tempfile::TempDir,
}

impl SharedMount {
    fn new() -> SharedMount {
        use nix::mount::{mount, MsFlags};
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        mount(
            Some(dir.path()),
            dir.path(),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        mount(
            None::<&str>,
            dir.path(),
            None::<&str>,
            MsFlags::MS_SHARED,
            None::<&str>,
        )
        .unwrap();
        SharedMount { dir }
    }

    fn sub(&self) -> std::path::PathBuf {
        self.dir.path().join("sub")
    }

    /// Mounts a tmpfs on `sub` in the host namespace, after the container started.
    fn mount_sub(&self) {
        use nix::mount::{mount, MsFlags};
        mount(
            Some("tmpfs"),
            &self.sub(),
            Some("tmpfs"),
            MsFlags::empty(),
            Some("size=1m"),
        )
        .unwrap();
        fs::write(self.sub().join("late"), "late\n").unwrap();
    }
}

impl Drop for SharedMount {
    fn drop(&mut self) {
        use nix::mount::{umount2, MntFlags};
        let _ = umount2(&self.sub(), MntFlags::MNT_DETACH);
        let _ = umount2(self.dir.path(), MntFlags::MNT_DETACH);
    }
}

/// A host mount made after start reaches a `rslave` bind but not a `rprivate` one.
#[test]
fn bind_mount_propagation_slave_vs_private() {
    for (prop, should_see) in [("rslave", true), ("rprivate", false)] {
        let host = SharedMount::new();
        let mut b = Bundle::new();
        b.rootfs_dir("/mnt/prop");
        b.mount(
            "/mnt/prop",
            "bind",
            host.dir.path().to_str().unwrap(),
            &["rbind", prop],
        );
        b.sh("echo ready; while [ ! -e /tmp/go ] && [ ! -e /mnt/prop/sub/late ]; do sleep 0.05; done; \
              cat /mnt/prop/sub/late 2>&1; echo END");
        // /tmp must be writable for the fallback exit signal.
        b.mount("/tmp", "tmpfs", "tmpfs", &["size=1m"]);
        let mut c = Container::new(&Runtime::under_test(), "prop", b);
        c.launch();
        c.wait_for_stdout("ready");
        host.mount_sub();
        if !should_see {
            std::thread::sleep(std::time::Duration::from_millis(300));
            assert!(c.exec(&["touch", "/tmp/go"]).success());
        }
        c.wait();
        let out = c.stdout();
        assert_eq!(out.contains("late\n"), should_see, "{prop}: {out}");
    }
}
