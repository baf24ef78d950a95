//! Resource limits: the values the container sees in its cgroup files, the
//! same values on the host side, and the limits actually enforced.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::probe::{kv, status_field};
use crate::support::runner::proc_cgroup_dirs;
use crate::support::{Bundle, Container, Runtime};

/// `key=$(cat /sys/fs/cgroup/<file>)` for each (key, file).
fn cat_script(files: &[(&str, &str)]) -> String {
    files
        .iter()
        .map(|(k, f)| format!("echo \"{k}=$(cat /sys/fs/cgroup/{f} 2>&1)\"; "))
        .collect()
}

/// The host copy of a cgroup file of `pid` in the hierarchy whose controllers include `ctrl`.
fn host_cgroup_file(pid: i32, ctrl: &str, file: &str) -> String {
    let dir: PathBuf = proc_cgroup_dirs(pid)
        .into_iter()
        .find(|(c, _)| c.split(',').any(|x| x == ctrl))
        .unwrap_or_else(|| panic!("pid {pid} has no {ctrl} cgroup"))
        .1;
    fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
        .trim()
        .to_owned()
}

/// Starts a container that prints `script`'s output then sleeps, and waits for the output.
fn running(tag: &str, mut b: Bundle, script: &str) -> (Container, String) {
    b.sh(&format!(
        "exec 2>&1; {script} echo PROBE-DONE; exec sleep 1000"
    ));
    let mut c = Container::new(&Runtime::under_test(), tag, b);
    c.launch();
    let out = c.wait_for_stdout("PROBE-DONE");
    (c, out)
}

#[test]
fn cpu_quota_period_shares_are_visible() {
    let mut b = Bundle::new();
    b.resource(
        "cpu",
        json!({"quota": 25000, "period": 50000, "shares": 512, "cpus": "0", "mems": "0"}),
    );
    let script = cat_script(&[
        ("quota", "cpu/cpu.cfs_quota_us"),
        ("period", "cpu/cpu.cfs_period_us"),
        ("shares", "cpu/cpu.shares"),
        ("cpus", "cpuset/cpuset.cpus"),
        ("mems", "cpuset/cpuset.mems"),
    ]) + "grep Cpus_allowed_list /proc/self/status;";
    let (c, out) = running("cpu", b, &script);
    for (k, v) in [
        ("quota", "25000"),
        ("period", "50000"),
        ("shares", "512"),
        ("cpus", "0"),
        ("mems", "0"),
    ] {
        assert_eq!(kv(&out, k).as_deref(), Some(v), "{k}: {out}");
    }
    assert_eq!(
        status_field(&out, "Cpus_allowed_list").as_deref(),
        Some("0"),
        "{out}"
    );
    let pid = c.pid();
    assert_eq!(host_cgroup_file(pid, "cpu", "cpu.cfs_quota_us"), "25000");
    assert_eq!(host_cgroup_file(pid, "cpu", "cpu.cfs_period_us"), "50000");
    assert_eq!(host_cgroup_file(pid, "cpu", "cpu.shares"), "512");
    assert_eq!(host_cgroup_file(pid, "cpuset", "cpuset.cpus"), "0");
}

#[test]
fn memory_limit_reservation_swap_are_visible() {
    let mut b = Bundle::new();
    b.resource(
        "memory",
        json!({"limit": 64 << 20, "reservation": 32 << 20, "swap": 128 << 20, "disableOOMKiller": true}),
    );
    let script = cat_script(&[
        ("limit", "memory/memory.limit_in_bytes"),
        ("soft", "memory/memory.soft_limit_in_bytes"),
        ("memsw", "memory/memory.memsw.limit_in_bytes"),
    ]) + "grep oom_kill_disable /sys/fs/cgroup/memory/memory.oom_control;";
    let (c, out) = running("mem", b, &script);
    assert_eq!(kv(&out, "limit").as_deref(), Some("67108864"), "{out}");
    assert_eq!(kv(&out, "soft").as_deref(), Some("33554432"), "{out}");
    assert_eq!(kv(&out, "memsw").as_deref(), Some("134217728"), "{out}");
    assert!(out.contains("oom_kill_disable 1"), "{out}");
    assert_eq!(
        host_cgroup_file(c.pid(), "memory", "memory.limit_in_bytes"),
        "67108864"
    );
}

/// Reads the streaming `events ID` output until `pred` matches a line or the deadline.
fn wait_event(
    path: &std::path::Path,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Option<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let text = fs::read_to_string(path).unwrap_or_default();
        for l in text.lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(l) {
                if pred(&v) {
                    return Some(v);
                }
            }
        }
        sleep(Duration::from_millis(50));
    }
    None
}

/// Kills and reaps an `events` streamer we spawned.
fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn memory_limit_is_enforced_and_events_reports_the_oom() {
    let mut b = Bundle::new();
    b.resource("memory", json!({"limit": 32 << 20}));
    // tail keeps its last lines in memory: newline-free input makes it hold all 256 MiB.
    b.sh(
        "exec 2>&1; head -c 256m /dev/zero | tail -n 1 > /dev/null; echo rc=$?; \
         grep oom_kill /sys/fs/cgroup/memory/memory.oom_control; \
         echo limit=$(cat /sys/fs/cgroup/memory/memory.limit_in_bytes); echo END",
    );
    let mut c = Container::new(&Runtime::under_test(), "oom", b);
    c.create_ok();
    let events_out = c.work().join("events.jsonl");
    let mut cmd = c.command();
    cmd.args(["events", &c.id])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&events_out).unwrap())
        .stderr(fs::File::create(c.work().join("events.err")).unwrap());
    let events = cmd.spawn().unwrap();
    // Let the streamer register its OOM notification before the process runs.
    sleep(Duration::from_millis(500));
    let start = c.start();
    assert!(start.success(), "{start}");
    c.wait();
    let out = c.stdout();
    let oom = wait_event(&events_out, Duration::from_secs(10), |v| v["type"] == "oom");
    let err = fs::read_to_string(c.work().join("events.err")).unwrap_or_default();
    stop(events);
    assert_eq!(kv(&out, "limit").as_deref(), Some("33554432"), "{out}");
    // 137 = killed by SIGKILL (the OOM killer).
    assert_eq!(kv(&out, "rc").as_deref(), Some("137"), "{out}");
    let kills: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no oom_kill counter: {out}"));
    assert!(kills >= 1, "{out}");
    let oom = oom.unwrap_or_else(|| {
        panic!(
            "no {{\"type\":\"oom\"}} event; events printed: {}; stderr: {err}",
            fs::read_to_string(&events_out).unwrap_or_default()
        )
    });
    assert_eq!(oom["id"], c.id.as_str(), "{oom}");
}

#[test]
fn pids_limit_makes_fork_fail() {
    let mut b = Bundle::new();
    b.resource("pids", json!({"limit": 6}));
    b.sh(
        "exec 2>&1; echo max=$(cat /sys/fs/cgroup/pids/pids.max); \
         i=0; while [ $i -lt 12 ]; do sleep 30 & i=$((i+1)); done; echo spawned; kill $(jobs -p) 2>/dev/null; echo END",
    );
    let mut c = Container::new(&Runtime::under_test(), "pids", b);
    let f = c.run_to_exit();
    assert_eq!(kv(&f.stdout, "max").as_deref(), Some("6"), "{f:?}");
    assert!(
        f.stdout.contains("can't fork") || f.stdout.contains("Resource temporarily unavailable"),
        "forking past pids.max succeeded: {f:?}"
    );
}

#[test]
fn devices_not_allowed_cannot_be_opened() {
    let mut b = Bundle::new();
    b.set(
        "/linux/devices",
        json!([
            {"path": "/dev/mymem", "type": "c", "major": 1, "minor": 1, "fileMode": 0o666},
            {"path": "/dev/myzero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666}
        ]),
    );
    b.resource(
        "devices",
        json!([
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rw"}
        ]),
    );
    b.sh("exec 2>&1; head -c 1 /dev/mymem > /dev/null; echo mem=$?; \
          echo zero=$(head -c 3 /dev/myzero | wc -c)");
    let mut c = Container::new(&Runtime::under_test(), "devcg", b);
    let f = c.run_to_exit();
    assert_eq!(kv(&f.stdout, "mem").as_deref(), Some("1"), "{f:?}");
    assert!(f.stdout.contains("Operation not permitted"), "{f:?}");
    assert_eq!(kv(&f.stdout, "zero").as_deref(), Some("3"), "{f:?}");
}

#[test]
fn blkio_throttle_is_written() {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata("/").unwrap().dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    if !PathBuf::from(format!("/sys/dev/block/{major}:{minor}/queue")).exists() {
        eprintln!("skipped: / is not on a whole block device ({major}:{minor})");
        return;
    }
    let mut b = Bundle::new();
    b.resource(
        "blockIO",
        json!({"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": 1048576}]}),
    );
    let script = cat_script(&[("bps", "blkio/blkio.throttle.read_bps_device")]);
    let (_c, out) = running("blkio", b, &script);
    assert_eq!(
        kv(&out, "bps"),
        Some(format!("{major}:{minor} 1048576")),
        "{out}"
    );
}

#[test]
fn absolute_cgroups_path_is_used_and_removed() {
    let mut b = Bundle::new();
    let leaf = format!("/berth-it-abs-{}", crate::support::runner::unique_id("abs"));
    b.set("/linux/cgroupsPath", json!(leaf));
    b.resource("pids", json!({"limit": 50}));
    let (mut c, out) = running("abs", b, "cat /proc/self/cgroup;");
    let line = out.lines().find(|l| l.contains(":pids:")).unwrap();
    assert!(line.ends_with(&format!(":pids:{leaf}")), "{out}");
    let dir = PathBuf::from(format!("/sys/fs/cgroup/pids{leaf}"));
    assert_eq!(
        fs::read_to_string(dir.join("pids.max")).unwrap().trim(),
        "50"
    );
    assert!(c.delete(true).success());
    assert!(!dir.exists(), "{} left behind", dir.display());
}
