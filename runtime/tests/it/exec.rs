//! `exec`: joins the init's namespaces and cgroup and gets the same security setup.

use std::fs;

use serde_json::json;

use crate::support::probe::{cap_mask, kv, status_field};
use crate::support::{Bundle, Container, Runtime};

/// A running container whose init printed its /proc/self/status and cgroups.
fn running(tag: &str, mut b: Bundle) -> Container {
    b.sh("cat /proc/self/status; cat /proc/self/cgroup; echo INIT-READY; exec sleep 1000");
    let mut c = Container::new(&Runtime::under_test(), tag, b);
    c.launch();
    c.wait_for_stdout("INIT-READY");
    c
}

#[test]
fn exec_joins_the_pid_namespace_and_cgroup() {
    let mut b = Bundle::new();
    b.set("/hostname", json!("exec-host"));
    let c = running("execns", b);
    let out = c
        .exec_sh(
            "echo cmd=$(tr '\\0' ' ' < /proc/1/cmdline); \
             echo pids=$(ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' '); \
             echo host=$(hostname); echo SELF; cat /proc/self/cgroup; echo ONE; cat /proc/1/cgroup",
        )
        .ok();
    let s = &out.stdout;
    assert_eq!(kv(s, "cmd").as_deref(), Some("sleep 1000"), "{out}");
    let pids: Vec<u32> = kv(s, "pids")
        .unwrap()
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(pids.contains(&1), "{out}");
    assert!(pids.len() <= 6, "exec sees the host's pids: {pids:?}");
    assert_eq!(kv(s, "host").as_deref(), Some("exec-host"), "{out}");
    let (_, rest) = s.split_once("SELF\n").unwrap();
    let (own, one) = rest.split_once("ONE\n").unwrap();
    assert_eq!(own, one, "exec process in another cgroup: {out}");
    let init_cgroups: String = c
        .stdout()
        .lines()
        .filter(|l| l.contains(":/"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(own, init_cgroups, "{out}");
}

#[test]
fn exec_returns_the_process_exit_code() {
    let c = running("execrc", Bundle::new());
    let out = c.exec_sh("echo out; echo err >&2; exit 5");
    assert_eq!(out.code(), Some(5), "{out}");
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err"), "{out}");
}

#[test]
fn exec_gets_the_containers_security_setup() {
    let mut b = Bundle::new();
    let set = json!(["CAP_CHOWN", "CAP_KILL"]);
    b.set(
        "/process/capabilities",
        json!({"bounding": set, "effective": set, "permitted": set}),
    );
    b.set(
        "/linux/seccomp",
        json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}),
    );
    b.mount("/tmp", "tmpfs", "tmpfs", &["size=1m"]);
    let c = running("execsec", b);
    let init = c.stdout();
    let out = c.exec_sh("exec 2>&1; cat /proc/self/status; mkdir /tmp/d; echo mk=$?");
    let s = &out.stdout;
    for key in ["CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb"] {
        assert_eq!(cap_mask(s, key), cap_mask(&init, key), "{key}: {out}");
    }
    for key in ["NoNewPrivs", "Seccomp", "Uid", "Gid"] {
        assert_eq!(
            status_field(s, key),
            status_field(&init, key),
            "{key}: {out}"
        );
    }
    assert!(s.contains("Operation not permitted"), "{out}");
    assert_eq!(kv(s, "mk").as_deref(), Some("1"), "{out}");
}

#[test]
fn exec_with_process_json() {
    let b = Bundle::new();
    b.rootfs_dir("/home/user/w");
    let c = running("execp", b);
    let process = json!({
        "terminal": false,
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [20]},
        "args": ["sh", "-c", "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); echo cwd=$(pwd); echo v=$V"],
        "env": ["PATH=/bin", "V=from-json"],
        "cwd": "/home/user/w",
        "capabilities": {"bounding": [], "effective": [], "permitted": []},
        "noNewPrivileges": true
    });
    let p = c.work().join("process.json");
    fs::write(&p, process.to_string()).unwrap();
    let out = c
        .cmd(&["exec", "--process", p.to_str().unwrap(), &c.id])
        .ok();
    let s = &out.stdout;
    assert!(s.contains("uid=1000 gid=1000 groups="), "{out}");
    let groups = s.split("groups=").nth(1).unwrap().lines().next().unwrap();
    let mut g: Vec<&str> = groups.split_whitespace().collect();
    g.sort();
    assert!(
        g.contains(&"20") && g.contains(&"1000") && g.len() <= 2,
        "{out}"
    );
    assert_eq!(kv(s, "cwd").as_deref(), Some("/home/user/w"), "{out}");
    assert_eq!(kv(s, "v").as_deref(), Some("from-json"), "{out}");
}

#[test]
fn exec_into_a_stopped_container_fails() {
    let mut b = Bundle::new();
    b.args(&["true"]);
    let mut c = Container::new(&Runtime::under_test(), "execstop", b);
    c.run_to_exit();
    c.wait_status("stopped");
    let out = c.exec(&["true"]);
    assert!(!out.success(), "{out}");
}
