//! The same bundle under runc and under the runtime being tested: what the
//! process observes must match (capabilities, mounts, cgroup limits, ids).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::json;

use crate::support::probe::{parse_mountinfo, status_field};
use crate::support::{Bundle, Container, Runtime};

const PROBE: &str = "exec 2>&1; echo BEGIN-STATUS; cat /proc/self/status; echo BEGIN-MOUNTS; \
    cat /proc/self/mountinfo; echo BEGIN-CGROUP; \
    for f in memory/memory.limit_in_bytes memory/memory.soft_limit_in_bytes cpu/cpu.cfs_quota_us \
             cpu/cpu.cfs_period_us cpu/cpu.shares pids/pids.max cpuset/cpuset.cpus; do \
      echo \"$f=$(cat /sys/fs/cgroup/$f)\"; done; \
    echo hostname=$(hostname); echo nofile=$(ulimit -n); echo umask=$(umask); echo cwd=$(pwd); echo END";

fn configure(b: &mut Bundle) {
    b.set("/hostname", json!("cmp-host"));
    b.set(
        "/process/user",
        json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20]}),
    );
    let caps = json!(["CAP_NET_BIND_SERVICE", "CAP_KILL"]);
    b.set(
        "/process/capabilities",
        json!({"bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"], "effective": caps,
               "permitted": caps, "inheritable": caps, "ambient": ["CAP_NET_BIND_SERVICE"]}),
    );
    b.set(
        "/process/rlimits",
        json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}]),
    );
    b.set("/process/cwd", json!("/home/user"));
    b.resource(
        "memory",
        json!({"limit": 80 << 20, "reservation": 40 << 20}),
    );
    b.resource(
        "cpu",
        json!({"quota": 20000, "period": 100000, "shares": 256, "cpus": "0"}),
    );
    b.resource("pids", json!({"limit": 64}));
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}),
    );
    b.mount(
        "/scratch",
        "tmpfs",
        "tmpfs",
        &["nosuid", "nodev", "size=1m"],
    );
    b.sh(PROBE);
}

/// What one runtime's container observed, normalised for comparison.
#[derive(Debug, PartialEq)]
struct Observed {
    status: BTreeMap<String, String>,
    /// (mount point, fs type) -> security flags among ro, nosuid, nodev, noexec (visible mount).
    mounts: BTreeMap<(String, String), BTreeSet<String>>,
    values: BTreeMap<String, String>,
}

fn observe(rt: &Runtime) -> Observed {
    let mut b = Bundle::new();
    configure(&mut b);
    let mut c = Container::new(rt, "cmp", b);
    let f = c.run_to_exit();
    let out = f.stdout;
    assert!(out.contains("END"), "{}: {out}", rt.name());
    let (_, rest) = out.split_once("BEGIN-STATUS\n").unwrap();
    let (status_text, rest) = rest.split_once("BEGIN-MOUNTS\n").unwrap();
    let (mount_text, values_text) = rest.split_once("BEGIN-CGROUP\n").unwrap();
    let keys = [
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "Uid",
        "Gid",
        "Groups",
        "NoNewPrivs",
        "Seccomp",
    ];
    let status = keys
        .iter()
        .map(|k| {
            (
                k.to_string(),
                status_field(status_text, k).unwrap_or_default(),
            )
        })
        .collect();
    let keep = ["ro", "nosuid", "nodev", "noexec"];
    let mounts = parse_mountinfo(mount_text)
        .into_iter()
        .map(|m| {
            let flags = m
                .options
                .split(',')
                .filter(|o| keep.contains(o))
                .map(str::to_owned)
                .collect();
            ((m.mount_point, m.fstype), flags)
        })
        .collect();
    let values = values_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    Observed {
        status,
        mounts,
        values,
    }
}

#[test]
fn same_bundle_same_observations_as_runc() {
    let Some(runc) = Runtime::runc() else {
        eprintln!("skipped: runc is not installed");
        return;
    };
    let theirs = observe(&runc);
    let ours = observe(&Runtime::under_test());
    assert_eq!(
        ours.status, theirs.status,
        "process status differs from runc"
    );
    // Every runc mount must exist with the same type and at least runc's
    // restrictions (extra ro/nosuid/nodev/noexec is hardening, not a difference).
    let mut problems = Vec::new();
    for ((point, fstype), flags) in &theirs.mounts {
        match ours.mounts.get(&(point.clone(), fstype.clone())) {
            None => problems.push(format!("missing: {point} ({fstype}) {flags:?}")),
            Some(f) if !f.is_superset(flags) => problems.push(format!(
                "less strict: {point} ({fstype}) ours {f:?}, runc {flags:?}"
            )),
            Some(_) => {}
        }
    }
    for (point, fstype) in ours.mounts.keys() {
        // runc 1.1 does not expose the hybrid layout's cgroup2 hierarchy; more
        // cgroup hierarchies (read-only, the container's own) are fine.
        let known = theirs.mounts.contains_key(&(point.clone(), fstype.clone()));
        if !known && !point.starts_with("/sys/fs/cgroup/") {
            problems.push(format!("extra: {point} ({fstype})"));
        }
    }
    assert!(
        problems.is_empty(),
        "mount tables differ from runc's:\n{}",
        problems.join("\n")
    );
    assert_eq!(
        ours.values, theirs.values,
        "cgroup limits / process values differ"
    );
    // The comparison is only meaningful if the bundle's settings took effect.
    assert_eq!(theirs.values["pids/pids.max"], "64");
    assert_eq!(theirs.status["CapAmb"], "0000000000000400");
    assert_eq!(theirs.status["Seccomp"], "2");
}
