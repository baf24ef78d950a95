//! Namespaces: new, shared with the host when omitted, joined by path, user
//! namespace id mappings, cgroup namespace.

use std::fs;
use std::os::unix::fs::MetadataExt;

use serde_json::json;

use crate::support::probe::kv;
use crate::support::{Bundle, Container, Runtime};

const NS_PROBE: &str =
    "for n in net ipc uts mnt pid; do echo \"$n=$(readlink /proc/self/ns/$n)\"; done";

fn host_ns(n: &str) -> String {
    fs::read_link(format!("/proc/self/ns/{n}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

#[test]
fn configured_namespaces_are_new_and_omitted_ones_are_the_hosts() {
    let mut b = Bundle::new();
    b.without_namespace("network").without_namespace("ipc");
    b.sh(NS_PROBE);
    let mut c = Container::new(&Runtime::under_test(), "nsnew", b);
    let f = c.run_to_exit();
    for n in ["net", "ipc"] {
        assert_eq!(kv(&f.stdout, n), Some(host_ns(n)), "{n}: {f:?}");
    }
    for n in ["uts", "mnt", "pid"] {
        let got = kv(&f.stdout, n).unwrap_or_default();
        assert!(!got.is_empty() && got != host_ns(n), "{n} not new: {f:?}");
    }
}

#[test]
fn namespaces_are_joined_by_path() {
    let mut a = Bundle::new();
    a.set("/hostname", json!("first"));
    a.args(&["sleep", "1000"]);
    let mut first = Container::new(&Runtime::under_test(), "nsfirst", a);
    first.launch();
    let pid = first.pid();
    let mut b = Bundle::new();
    b.namespace("network", Some(&format!("/proc/{pid}/ns/net")));
    b.namespace("uts", Some(&format!("/proc/{pid}/ns/uts")));
    b.namespace("ipc", Some(&format!("/proc/{pid}/ns/ipc")));
    // A joined uts namespace keeps its hostname: runtimes refuse to set one then.
    b.remove("/hostname");
    b.sh(&format!("{NS_PROBE}; echo host=$(hostname)"));
    let mut second = Container::new(&Runtime::under_test(), "nsjoin", b);
    let f = second.run_to_exit();
    for n in ["net", "uts", "ipc"] {
        let theirs = fs::read_link(format!("/proc/{pid}/ns/{n}")).unwrap();
        assert_eq!(kv(&f.stdout, n).as_deref(), theirs.to_str(), "{n}: {f:?}");
    }
    assert_eq!(kv(&f.stdout, "host").as_deref(), Some("first"), "{f:?}");
    let own = kv(&f.stdout, "mnt").unwrap();
    assert_ne!(
        own,
        fs::read_link(format!("/proc/{pid}/ns/mnt"))
            .unwrap()
            .to_string_lossy()
    );
}

#[test]
fn user_namespace_maps_ids() {
    let shared = tempfile::tempdir().unwrap();
    fs::set_permissions(
        shared.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mut b = Bundle::new();
    b.namespace("user", None);
    b.set(
        "/linux/uidMappings",
        json!([{"containerID": 0, "hostID": 200000, "size": 65536}]),
    );
    b.set(
        "/linux/gidMappings",
        json!([{"containerID": 0, "hostID": 200000, "size": 65536}]),
    );
    b.rootfs_dir("/shared");
    b.mount(
        "/shared",
        "bind",
        shared.path().to_str().unwrap(),
        &["rbind", "rw"],
    );
    b.sh(
        "exec 2>&1; echo uidmap=$(cat /proc/self/uid_map); echo gidmap=$(cat /proc/self/gid_map); \
          echo id=$(id -u):$(id -g); touch /shared/made-by-root; echo touch=$?; \
          echo null=$(echo x > /dev/null && echo ok)",
    );
    let mut c = Container::new(&Runtime::under_test(), "userns", b);
    let f = c.run_to_exit();
    let norm = |s: Option<String>| s.map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "));
    assert_eq!(
        norm(kv(&f.stdout, "uidmap")).as_deref(),
        Some("0 200000 65536"),
        "{f:?}"
    );
    assert_eq!(
        norm(kv(&f.stdout, "gidmap")).as_deref(),
        Some("0 200000 65536"),
        "{f:?}"
    );
    assert_eq!(kv(&f.stdout, "id").as_deref(), Some("0:0"), "{f:?}");
    assert_eq!(kv(&f.stdout, "touch").as_deref(), Some("0"), "{f:?}");
    assert_eq!(kv(&f.stdout, "null").as_deref(), Some("ok"), "{f:?}");
    let made = fs::metadata(shared.path().join("made-by-root")).unwrap();
    assert_eq!(
        (made.uid(), made.gid()),
        (200000, 200000),
        "container root is not host 200000"
    );
}

#[test]
fn cgroup_namespace_hides_the_host_cgroup_path() {
    let mut b = Bundle::new();
    b.namespace("cgroup", None);
    b.sh("cat /proc/self/cgroup");
    let mut c = Container::new(&Runtime::under_test(), "cgns", b);
    let f = c.run_to_exit();
    let lines: Vec<&str> = f.stdout.lines().collect();
    assert!(!lines.is_empty(), "{f:?}");
    for l in lines {
        assert!(
            l.ends_with(":/"),
            "cgroup path visible inside a cgroup namespace: {l}"
        );
    }
}

/// runtime-spec 1.2 time namespace with offsets (runc 1.1 predates it).
#[test]
fn time_namespace_offsets_the_clocks() {
    let rt = Runtime::under_test();
    if rt.is_runc() {
        eprintln!("skipped: runc 1.1 does not implement time namespaces");
        return;
    }
    let year = 365 * 24 * 3600;
    let mut b = Bundle::new();
    b.namespace("time", None);
    b.set(
        "/linux/timeOffsets",
        json!({"monotonic": {"secs": year, "nanosecs": 0}, "boottime": {"secs": year, "nanosecs": 0}}),
    );
    b.sh("echo up=$(cut -d. -f1 /proc/uptime)");
    let mut c = Container::new(&rt, "timens", b);
    let f = c.run_to_exit();
    let up: i64 = kv(&f.stdout, "up").unwrap().parse().unwrap();
    assert!(up >= year, "uptime {up}s not offset by a year: {f:?}");
}
