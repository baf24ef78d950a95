#![allow(clippy::unwrap_used)]
//! Kernel tests: they create real cgroups (root needed), each under a unique
//! top-level name so they can run in parallel, and remove them again.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxHugepageLimitBuilder, LinuxMemoryBuilder, LinuxNetworkBuilder, LinuxPidsBuilder,
    LinuxResources, LinuxResourcesBuilder, LinuxThrottleDeviceBuilder,
};

use super::*;

static SEQ: AtomicU32 = AtomicU32::new(0);

fn is_root() -> bool {
    nix::unistd::geteuid().is_root() && Path::new("/sys/fs/cgroup").exists()
}

/// A cgroup under a unique name, destroyed (and checked gone) on drop.
struct TestCg {
    cg: CgroupManager,
    children: Vec<Child>,
}

impl TestCg {
    fn new(tag: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let name = format!("/berth-cgtest-{}-{n}-{tag}", std::process::id());
        let cg = CgroupManager::new(Some(Path::new(&name)), "unused").unwrap();
        Self {
            cg,
            children: Vec::new(),
        }
    }

    /// Starts `sh -c script` inside the cgroup; the script runs only after
    /// the child has been moved (it first reads a line from stdin).
    fn spawn(&mut self, script: &str) -> i32 {
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("read go; {script}"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        self.cg.add_task(pid).unwrap();
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        self.children.push(child);
        pid
    }
}

impl Drop for TestCg {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.cg.thaw();
        self.cg.destroy().unwrap();
        for d in self.cg.dirs() {
            assert!(!d.exists(), "{} left behind", d.display());
        }
    }
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap()
        .trim()
        .to_owned()
}

fn dir_of(cg: &CgroupManager, controller: &str) -> PathBuf {
    match cg.v1_dir(controller) {
        Some(d) => d.dir.clone(),
        None => cg.unified.clone().unwrap(),
    }
}

fn limits() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .reservation(32i64 << 20)
                .swap(96i64 << 20)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("0")
                .mems("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(32i64).build().unwrap())
        .build()
        .unwrap()
}

#[test]
fn limits_are_written() {
    if !is_root() {
        return;
    }
    let t = TestCg::new("limits");
    t.cg.create(Some(&limits())).unwrap();
    let mem = dir_of(&t.cg, "memory");
    let cpu = dir_of(&t.cg, "cpu");
    let cpuset = dir_of(&t.cg, "cpuset");
    let pids = dir_of(&t.cg, "pids");
    if t.cg.mode() == Mode::V2 {
        assert_eq!(read(&mem, "memory.max"), (64u64 << 20).to_string());
        assert_eq!(read(&mem, "memory.low"), (32u64 << 20).to_string());
        assert_eq!(read(&cpu, "cpu.max"), "50000 100000");
        assert_eq!(read(&cpu, "cpu.weight"), shares_to_weight(512).to_string());
    } else {
        assert_eq!(
            read(&mem, "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            read(&mem, "memory.soft_limit_in_bytes"),
            (32u64 << 20).to_string()
        );
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(
                read(&mem, "memory.memsw.limit_in_bytes"),
                (96u64 << 20).to_string()
            );
        }
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "50000");
        assert_eq!(read(&cpu, "cpu.cfs_period_us"), "100000");
        assert_eq!(read(&cpu, "cpu.shares"), "512");
    }
    assert_eq!(read(&cpuset, "cpuset.cpus"), "0");
    assert_eq!(read(&cpuset, "cpuset.mems"), "0");
    assert_eq!(read(&pids, "pids.max"), "32");

    // update lowers the limit below memsw, which must go in the right order.
    let upd = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(16i64 << 20)
                .swap(16i64 << 20)
                .build()
                .unwrap(),
        )
        .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
        .pids(LinuxPidsBuilder::default().limit(-1i64).build().unwrap())
        .build()
        .unwrap();
    t.cg.update(&upd).unwrap();
    if t.cg.mode() == Mode::V2 {
        assert_eq!(read(&mem, "memory.max"), (16u64 << 20).to_string());
        assert_eq!(read(&cpu, "cpu.max"), "max 100000");
    } else {
        assert_eq!(
            read(&mem, "memory.limit_in_bytes"),
            (16u64 << 20).to_string()
        );
        assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "-1");
    }
    assert_eq!(read(&pids, "pids.max"), "max");
}

#[test]
fn devices_blkio_hugetlb_and_unified() {
    if !is_root() {
        return;
    }
    let mut t = TestCg::new("dev");
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .unwrap();
    let fuse = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(LinuxDeviceType::C)
        .major(10i64)
        .minor(229i64)
        .access("rw")
        .build()
        .unwrap();
    let mut r = LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                    .major(7i64)
                    .minor(0i64)
                    .rate(1_048_576u64)
                    .build()
                    .unwrap()])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let hugetlb = Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    if hugetlb {
        r.set_hugepage_limits(Some(vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(4i64 << 20)
            .build()
            .unwrap()]));
    }
    if t.cg.mode() != Mode::V2 {
        r.set_devices(Some(vec![deny_all, fuse]));
    }
    t.cg.create(Some(&r)).unwrap();
    if let Some(d) = t.cg.v1_dir("devices") {
        let list = read(&d.dir, "devices.list");
        assert!(list.contains("c 10:229 rw"), "{list}");
        assert!(list.contains("c 1:3 rwm"), "{list}");
        assert!(!list.contains("a *:* rwm"), "{list}");
        // The kernel enforces it: a block device is refused, /dev/null is not.
        let out = tempfile::NamedTempFile::new().unwrap();
        let p = out.path().display();
        t.spawn(&format!(
            "head -c1 /dev/loop0 >/dev/null 2>&1; echo $? > {p}; head -c1 /dev/null; echo $? >> {p}"
        ));
        assert!(t.children[0].wait().unwrap().success());
        let codes = std::fs::read_to_string(out.path()).unwrap();
        let codes: Vec<&str> = codes.lines().collect();
        assert_ne!(
            codes[0], "0",
            "/dev/loop0 was readable despite the deny rule"
        );
        assert_eq!(codes[1], "0", "/dev/null was refused");
    }
    if let Some(d) = t.cg.v1_dir("blkio") {
        assert_eq!(
            read(&d.dir, "blkio.throttle.read_bps_device"),
            "7:0 1048576"
        );
    }
    if hugetlb {
        let d = t.cg.v1_dir("hugetlb").map(|d| d.dir.clone());
        match d {
            Some(d) => assert_eq!(
                read(&d, "hugetlb.2MB.limit_in_bytes"),
                (4u64 << 20).to_string()
            ),
            None => {
                // Hybrid hosts: hugetlb lives in the cgroup2 mount.
                let u = t.cg.v2_dir("hugetlb").unwrap();
                assert_eq!(read(u, "hugetlb.2MB.max"), (4u64 << 20).to_string());
            }
        }
    }
    let mut unified = HashMap::new();
    unified.insert("memory.high".to_owned(), "1000000".to_owned());
    let u = LinuxResourcesBuilder::default()
        .unified(unified)
        .build()
        .unwrap();
    let res = t.cg.update(&u);
    if t.cg.mode() == Mode::V2 {
        res.unwrap();
    } else {
        let err = res.unwrap_err();
        assert_eq!(err.to_string(), "unified resources need cgroup v2");
    }
}

#[test]
fn tasks_freeze_stats_and_kill() {
    if !is_root() {
        return;
    }
    let mut t = TestCg::new("tasks");
    t.cg.create(None).unwrap();
    let out = tempfile::NamedTempFile::new().unwrap();
    let script = format!(
        "while :; do echo tick >> {}; i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; done",
        out.path().display()
    );
    let pid = t.spawn(&script);
    let sleeper = t.spawn("exec sleep 100");
    let pids = t.cg.pids().unwrap();
    assert!(pids.contains(&pid) && pids.contains(&sleeper), "{pids:?}");

    let size = || std::fs::metadata(out.path()).unwrap().len();
    let start = Instant::now();
    while size() == 0 && start.elapsed() < Duration::from_secs(5) {
        sleep(Duration::from_millis(10));
    }
    assert!(!t.cg.is_frozen());
    t.cg.freeze().unwrap();
    assert!(t.cg.is_frozen());
    let frozen_size = size();
    sleep(Duration::from_millis(300));
    assert_eq!(size(), frozen_size, "the writer ran while frozen");
    // Signalling a paused container keeps it paused.
    t.cg.kill_all(Signal::SIGCONT).unwrap();
    assert!(t.cg.is_frozen());
    t.cg.thaw().unwrap();
    assert!(!t.cg.is_frozen());
    let start = Instant::now();
    while size() == frozen_size && start.elapsed() < Duration::from_secs(5) {
        sleep(Duration::from_millis(10));
    }
    assert!(size() > frozen_size, "the writer did not resume after thaw");

    // checkBeforeUpdate refuses a limit below the current usage.
    let tiny = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(4096i64)
                .check_before_update(true)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let e = t.cg.update(&tiny).unwrap_err();
    assert!(matches!(e, CgroupError::InvalidResource { .. }), "{e}");

    let stats = t.cg.stats().unwrap();
    assert!(stats.cpu.usage.total > 0, "{stats:?}");
    assert!(stats.memory.usage.usage > 0, "{stats:?}");
    if t.cg.v1_dir("pids").is_some() || t.cg.v2_dir("pids").is_some() {
        assert!(stats.pids.current >= 2, "{stats:?}");
    }
    if t.cg.v1_dir("cpuset").is_some() {
        assert!(!stats.cpuset.cpus.is_empty(), "{stats:?}");
    }
    let json = serde_json::to_value(&stats).unwrap();
    assert!(json["memory"]["usage"]["limit"].as_u64().unwrap() > 0);

    t.cg.kill_all(Signal::SIGKILL).unwrap();
    for c in &mut t.children {
        let st = c.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
    }
    let start = Instant::now();
    while !t.cg.pids().unwrap().is_empty() && start.elapsed() < Duration::from_secs(5) {
        sleep(Duration::from_millis(10));
    }
    assert!(t.cg.pids().unwrap().is_empty());
}

#[test]
fn oom_kill_is_counted_and_notified() {
    if !is_root() {
        return;
    }
    let mut t = TestCg::new("oom");
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(16i64 << 20)
                .swap(16i64 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    t.cg.create(Some(&r)).unwrap();
    assert_eq!(t.cg.oom_kill_count().unwrap(), 0);
    let notifier = t.cg.oom_notifier().unwrap();
    t.spawn("exec dd if=/dev/zero of=/dev/null bs=64M count=1");
    let status = t.children[0].wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "dd was not OOM-killed: {status:?}"
    );
    let mut fds = [PollFd::new(notifier.as_fd(), PollFlags::POLLIN)];
    let ready = poll(&mut fds, PollTimeout::from(5000u16)).unwrap();
    assert_eq!(ready, 1, "OOM notifier did not become readable");
    match notifier.wait().unwrap() {
        OomEvent::Oom { count } => assert!(count >= 1),
        other => panic!("unexpected {other:?}"),
    }
    assert!(t.cg.oom_kill_count().unwrap() >= 1);
}

#[test]
fn nested_cgroups_are_destroyed() {
    if !is_root() {
        return;
    }
    let t = TestCg::new("nested");
    t.cg.create(None).unwrap();
    for d in t.cg.dirs() {
        std::fs::create_dir_all(d.join("sub/deeper")).unwrap();
    }
    t.cg.destroy().unwrap();
    for d in t.cg.dirs() {
        assert!(!d.exists(), "{}", d.display());
    }
    // A second destroy of a missing cgroup is fine (TestCg's drop does it again).
    t.cg.destroy().unwrap();
}

#[test]
fn relative_and_default_paths() {
    if !is_root() {
        return;
    }
    let layout = Layout::detect().unwrap();
    let rel = CgroupManager::with_layout(&layout, Some(Path::new("rel/c1")), "c1").unwrap();
    for (name, d) in &rel.v1 {
        let own = layout.own.get(name).unwrap();
        let expect = d.mount.join(own.strip_prefix("/").unwrap()).join("rel/c1");
        assert_eq!(d.dir, expect);
    }
    let def = CgroupManager::with_layout(&layout, None, "c1").unwrap();
    assert_eq!(def.path(), Path::new("/berth/c1"));
    if let Some(d) = def.v1_dir("memory") {
        assert_eq!(d.dir, d.mount.join("berth/c1"));
    }
    let json = serde_json::to_string(&rel).unwrap();
    let back: CgroupManager = serde_json::from_str(&json).unwrap();
    assert_eq!(back, rel);
    assert!(matches!(
        CgroupManager::new(Some(Path::new("system.slice:berth:c1")), "c1"),
        Err(CgroupError::SystemdPath { .. })
    ));
}

#[test]
fn ebpf_device_program_is_enforced() {
    if !is_root() {
        return;
    }
    let mut t = TestCg::new("bpf");
    t.cg.create(None).unwrap();
    // Needs a cgroup2 directory: pure v2, or a hybrid host whose unified mount owns a controller.
    let Some(u) = t.cg.unified.clone() else {
        return;
    };
    let rules = vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .unwrap(),
        LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(10i64)
            .minor(229i64)
            .access("rw")
            .build()
            .unwrap(),
    ];
    bpf::apply(&u, &rules).unwrap();
    // A second apply (update) replaces the program instead of stacking another.
    bpf::apply(&u, &rules).unwrap();
    let dir = std::fs::File::open(&u).unwrap();
    assert_eq!(bpf::attached_programs(&dir).unwrap().len(), 1);

    let out = tempfile::NamedTempFile::new().unwrap();
    let p = out.path().display();
    t.spawn(&format!(
        "head -c1 /dev/loop0 >/dev/null 2>&1; echo $? > {p}; head -c1 /dev/null; echo $? >> {p}"
    ));
    assert!(t.children[0].wait().unwrap().success());
    let codes = std::fs::read_to_string(out.path()).unwrap();
    let codes: Vec<&str> = codes.lines().collect();
    assert_ne!(
        codes[0], "0",
        "/dev/loop0 was readable despite the eBPF deny"
    );
    assert_eq!(codes[1], "0", "/dev/null was refused by the eBPF program");
}

#[test]
fn v1_extras_and_clear_errors() {
    if !is_root() {
        return;
    }
    let t = TestCg::new("extras");
    t.cg.create(None).unwrap();
    if let Some(d) = t.cg.v1_dir("cpu").map(|d| d.dir.clone()) {
        let r = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .quota(50_000i64)
                    .period(100_000u64)
                    .burst(10_000u64)
                    .realtime_period(1_000_000u64)
                    .realtime_runtime(10_000i64)
                    .build()
                    .unwrap(),
            )
            .memory(
                LinuxMemoryBuilder::default()
                    .swappiness(10u64)
                    .disable_oom_killer(true)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        t.cg.update(&r).unwrap();
        if d.join("cpu.cfs_burst_us").exists() {
            assert_eq!(read(&d, "cpu.cfs_burst_us"), "10000");
        }
        if d.join("cpu.rt_runtime_us").exists() {
            assert_eq!(read(&d, "cpu.rt_period_us"), "1000000");
            assert_eq!(read(&d, "cpu.rt_runtime_us"), "10000");
        }
        let mem = dir_of(&t.cg, "memory");
        assert_eq!(read(&mem, "memory.swappiness"), "10");
        assert!(read(&mem, "memory.oom_control").contains("oom_kill_disable 1"));
    }
    // Controllers this host may lack must fail loudly, not silently.
    if t.cg.v1_dir("net_cls").is_none() {
        let r = LinuxResourcesBuilder::default()
            .network(
                LinuxNetworkBuilder::default()
                    .class_id(0x10001u32)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let e = t.cg.update(&r).unwrap_err();
        assert!(
            matches!(
                e,
                CgroupError::ControllerMissing {
                    controller: "net_cls",
                    ..
                }
            ),
            "{e}"
        );
    }
    if let Some(d) = t.cg.v1_dir("blkio") {
        let weights = ["blkio.weight", "blkio.bfq.weight"];
        if !weights.iter().any(|w| d.dir.join(w).exists()) {
            let r = LinuxResourcesBuilder::default()
                .block_io(
                    LinuxBlockIoBuilder::default()
                        .weight(500u16)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap();
            let e = t.cg.update(&r).unwrap_err();
            assert!(matches!(e, CgroupError::Unsupported(_)), "{e}");
        }
    }
}

/// Runs `v2_inner` in a private mount namespace where cgroup2 is mounted on
/// /sys/fs/cgroup, so the pure-v2 code paths run even on a v1/hybrid host
/// (only the controllers the cgroup2 hierarchy owns are there, e.g. hugetlb).
#[test]
fn pure_v2_layout_in_a_private_mount_namespace() {
    if !is_root() || !Path::new("/usr/bin/unshare").exists() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let script = "mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec \"$0\" --exact \
                  cgroups::tests::v2_inner --ignored --nocapture --test-threads=1";
    let out = Command::new("/usr/bin/unshare")
        .args(["-m", "--propagation", "private", "/bin/sh", "-c", script])
        .arg(&exe)
        .env("BERTH_CG_V2_INNER", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "run inside a mount namespace by pure_v2_layout_in_a_private_mount_namespace"]
fn v2_inner() {
    // Outside the namespace (e.g. `cargo test -- --ignored`) there is nothing to check.
    if std::env::var_os("BERTH_CG_V2_INNER").is_none() {
        return;
    }
    let mut t = TestCg::new("v2");
    assert_eq!(t.cg.mode(), Mode::V2);
    let u = t.cg.unified.clone().unwrap();
    assert!(t.cg.v1.is_empty());

    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .unwrap();
    let owned = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap();
    let has_pids = owned.split_whitespace().any(|c| c == "pids");
    // cgroup.max.descendants is a core file: present whatever the controllers.
    let mut unified = HashMap::new();
    unified.insert("cgroup.max.descendants".to_owned(), "5".to_owned());
    if has_pids {
        unified.insert("pids.max".to_owned(), "50".to_owned());
    }
    let mut r = LinuxResourcesBuilder::default()
        .devices(vec![deny_all])
        .unified(unified)
        .build()
        .unwrap();
    if owned.split_whitespace().any(|c| c == "hugetlb") {
        r.set_hugepage_limits(Some(vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(2i64 << 20)
            .build()
            .unwrap()]));
    }
    t.cg.create(Some(&r)).unwrap();
    assert_eq!(read(&u, "cgroup.max.descendants"), "5");
    if has_pids {
        assert_eq!(read(&u, "pids.max"), "50");
    }
    if r.hugepage_limits().is_some() {
        assert_eq!(read(&u, "hugetlb.2MB.max"), (2u64 << 20).to_string());
    }
    if !owned.split_whitespace().any(|c| c == "memory") {
        let m = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1i64 << 30)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let e = t.cg.update(&m).unwrap_err();
        assert!(matches!(e, CgroupError::ControllerMissing { .. }), "{e}");
    }

    let out = tempfile::NamedTempFile::new().unwrap();
    let p = out.path().display();
    t.spawn(&format!(
        "head -c1 /dev/loop0 >/dev/null 2>&1; echo $? > {p}; head -c1 /dev/null; echo $? >> {p}; \
         i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; exec sleep 100"
    ));
    let start = Instant::now();
    while std::fs::read_to_string(out.path()).unwrap().lines().count() < 2 {
        assert!(start.elapsed() < Duration::from_secs(10));
        sleep(Duration::from_millis(10));
    }
    let codes = std::fs::read_to_string(out.path()).unwrap();
    assert_eq!(codes.lines().collect::<Vec<_>>()[1], "0", "{codes}");
    assert_ne!(
        codes.lines().next().unwrap(),
        "0",
        "/dev/loop0 open was not denied"
    );

    assert_eq!(t.cg.pids().unwrap().len(), 1);
    t.cg.freeze().unwrap();
    assert!(t.cg.is_frozen());
    assert_eq!(read(&u, "cgroup.freeze"), "1");
    t.cg.thaw().unwrap();
    assert!(!t.cg.is_frozen());
    let start = Instant::now();
    while !std::fs::read_to_string(format!("/proc/{}/cmdline", t.children[0].id()))
        .unwrap_or_default()
        .starts_with("sleep")
    {
        assert!(start.elapsed() < Duration::from_secs(10));
        sleep(Duration::from_millis(10));
    }
    let stats = t.cg.stats().unwrap();
    assert!(stats.cpu.usage.total > 0, "{stats:?}");

    t.cg.kill_all(Signal::SIGKILL).unwrap();
    let st = t.children[0].wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&st), Some(9));
}

/// The init's way in (`join.rs`): cloned into the cgroup2 directory, then
/// moving itself into each v1 hierarchy; `pids()` sees it everywhere.
#[test]
fn a_cloned_child_joins_by_itself() {
    use crate::process::sys::{self, CloneResult};
    if !is_root() {
        return;
    }
    let t = TestCg::new("join");
    t.cg.create(None).unwrap();
    let join = t.cg.prepare_join().unwrap();
    let (go_r, go_w) = nix::unistd::pipe().unwrap();
    let flags = nix::sched::CloneFlags::empty();
    let (cloned, in_v2) = match join.v2_dir() {
        Some(dir) => (sys::clone_into_cgroup(flags, dir), true),
        None => (sys::clone_fork(flags), true),
    };
    match cloned.unwrap() {
        CloneResult::Child => {
            // Allocation-free: the test harness is multi-threaded. Our copy
            // of the write end goes first, so the parent's close wakes us.
            drop(go_w);
            let code = match join.join_v1_self() {
                Ok(()) => 0,
                Err(_) => 3,
            };
            let mut b = [0u8; 1];
            let _ = nix::unistd::read(&go_r, &mut b);
            sys::exit_now(code)
        }
        CloneResult::Parent(pid) => {
            assert!(in_v2);
            drop(go_r);
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut seen = Vec::new();
            while Instant::now() < deadline {
                seen =
                    t.cg.dirs()
                        .iter()
                        .map(|d| {
                            read(d, "cgroup.procs")
                                .lines()
                                .any(|l| l == pid.as_raw().to_string())
                        })
                        .collect();
                if seen.iter().all(|s| *s) {
                    break;
                }
                sleep(Duration::from_millis(5));
            }
            drop(go_w);
            let st = nix::sys::wait::waitpid(pid, None).unwrap();
            assert_eq!(st, nix::sys::wait::WaitStatus::Exited(pid, 0));
            assert!(seen.iter().all(|s| *s), "{:?}: {seen:?}", t.cg.dirs());
        }
    }
}
