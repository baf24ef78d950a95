//! Process attributes seen from inside: hostname, env, cwd, user, umask,
//! capabilities, noNewPrivileges, rlimits, seccomp.

use serde_json::json;

use crate::support::probe::{cap, cap_mask, caps, kv, status_field};
use crate::support::{Bundle, Container, Finished, Runtime};

fn run(tag: &str, b: Bundle) -> Finished {
    let mut c = Container::new(&Runtime::under_test(), tag, b);
    c.run_to_exit()
}

#[test]
fn hostname_is_set_in_a_new_uts_namespace() {
    let mut b = Bundle::new();
    b.set("/hostname", json!("berth-it-host"));
    b.sh("echo host=$(hostname); echo proc=$(cat /proc/sys/kernel/hostname)");
    let f = run("hostname", b);
    assert_eq!(
        kv(&f.stdout, "host").as_deref(),
        Some("berth-it-host"),
        "{f:?}"
    );
    assert_eq!(
        kv(&f.stdout, "proc").as_deref(),
        Some("berth-it-host"),
        "{f:?}"
    );
    let host = nix::unistd::gethostname().unwrap();
    assert_ne!(
        host.to_str(),
        Some("berth-it-host"),
        "host's hostname changed"
    );
}

/// runtime-spec 1.2 `domainname` (runc 1.1 predates it and ignores the field).
#[test]
fn domainname_is_set() {
    let rt = Runtime::under_test();
    if rt.is_runc() {
        eprintln!("skipped: runc 1.1 does not implement runtime-spec 1.2 domainname");
        return;
    }
    let mut b = Bundle::new();
    b.set("/domainname", json!("it.example"));
    b.sh("echo dom=$(cat /proc/sys/kernel/domainname)");
    let f = run("domain", b);
    assert_eq!(kv(&f.stdout, "dom").as_deref(), Some("it.example"), "{f:?}");
}

#[test]
fn env_and_cwd_are_applied() {
    let mut b = Bundle::new();
    b.rootfs_dir("/work/dir");
    b.set("/process/cwd", json!("/work/dir"));
    b.set(
        "/process/env",
        json!(["PATH=/bin", "FOO=bar baz", "EMPTY=", "TERM=dumb"]),
    );
    b.sh("echo cwd=$(pwd); env; echo end");
    let f = run("envcwd", b);
    assert_eq!(kv(&f.stdout, "cwd").as_deref(), Some("/work/dir"), "{f:?}");
    for want in ["FOO=bar baz", "EMPTY=", "TERM=dumb", "PATH=/bin"] {
        assert!(f.stdout.lines().any(|l| l == want), "missing {want}: {f:?}");
    }
}

#[test]
fn user_uid_gid_additional_gids_and_umask() {
    let mut b = Bundle::new();
    b.set(
        "/process/user",
        json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 0o027}),
    );
    b.sh("cat /proc/self/status; echo id=$(id -u):$(id -g):$(id -G); echo umask=$(umask)");
    let f = run("user", b);
    assert_eq!(
        status_field(&f.stdout, "Uid").unwrap(),
        "1000\t1000\t1000\t1000",
        "{f:?}"
    );
    assert_eq!(
        status_field(&f.stdout, "Gid").unwrap(),
        "1000\t1000\t1000\t1000",
        "{f:?}"
    );
    let mut groups: Vec<u32> = status_field(&f.stdout, "Groups")
        .unwrap()
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    groups.sort();
    assert_eq!(groups, vec![10, 20], "{f:?}");
    assert_eq!(kv(&f.stdout, "umask").as_deref(), Some("0027"), "{f:?}");
}

#[test]
fn root_gets_exactly_the_configured_capabilities() {
    let set = json!(["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    let mut b = Bundle::new();
    b.set("/root/readonly", json!(false));
    b.set(
        "/process/capabilities",
        json!({"bounding": set, "effective": set, "permitted": set, "inheritable": [], "ambient": []}),
    );
    // Owned by another user, mode 0600: reading it needs CAP_DAC_OVERRIDE, which was dropped.
    b.rootfs_file("/secret", "s3cret\n");
    let secret = b.rootfs().join("secret");
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&secret, Some(1000), Some(1000)).unwrap();
    b.rootfs_file("/ownme", "");
    b.sh("cat /proc/self/status; cat /secret 2>&1; echo read=$?; \
         chown 1001:1001 /ownme; echo chown=$?");
    let f = run("capsroot", b);
    let want = caps(&[cap::CHOWN, cap::KILL, cap::NET_BIND_SERVICE]);
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(cap_mask(&f.stdout, key), want, "{key}: {f:?}");
    }
    assert_eq!(cap_mask(&f.stdout, "CapInh"), 0, "{f:?}");
    assert_eq!(cap_mask(&f.stdout, "CapAmb"), 0, "{f:?}");
    assert!(f.stdout.contains("Permission denied"), "{f:?}");
    assert_eq!(kv(&f.stdout, "read").as_deref(), Some("1"), "{f:?}");
    assert_eq!(kv(&f.stdout, "chown").as_deref(), Some("0"), "{f:?}");
}

/// The container must still start although `runc spec`'s ambient set cannot be raised.
#[test]
fn default_spec_capabilities_match_runc_spec() {
    let mut b = Bundle::new();
    b.sh("cat /proc/self/status");
    let f = run("capsdefault", b);
    let want = caps(&[cap::AUDIT_WRITE, cap::KILL, cap::NET_BIND_SERVICE]);
    for key in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(cap_mask(&f.stdout, key), want, "{key}: {f:?}");
    }
    // `runc spec` lists ambient caps that are not inheritable: the kernel refuses
    // to raise them (PR_CAP_AMBIENT_RAISE needs both), and runc carries on.
    assert_eq!(cap_mask(&f.stdout, "CapAmb"), 0, "{f:?}");
    assert_eq!(cap_mask(&f.stdout, "CapInh"), 0, "{f:?}");
    assert_eq!(cap_mask(&f.stdout, "CapEff") & caps(&[cap::SYS_ADMIN]), 0);
}

#[test]
fn non_root_keeps_only_ambient_capabilities() {
    let one = json!(["CAP_NET_BIND_SERVICE"]);
    let mut b = Bundle::new();
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.set(
        "/process/capabilities",
        json!({
            "bounding": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
            "effective": one, "permitted": one, "inheritable": one, "ambient": one
        }),
    );
    b.sh("cat /proc/self/status");
    let f = run("capsamb", b);
    let nbs = caps(&[cap::NET_BIND_SERVICE]);
    assert_eq!(cap_mask(&f.stdout, "CapEff"), nbs, "{f:?}");
    assert_eq!(cap_mask(&f.stdout, "CapPrm"), nbs, "{f:?}");
    assert_eq!(cap_mask(&f.stdout, "CapAmb"), nbs, "{f:?}");
    assert_eq!(cap_mask(&f.stdout, "CapInh"), nbs, "{f:?}");
    assert_eq!(
        cap_mask(&f.stdout, "CapBnd"),
        caps(&[cap::NET_BIND_SERVICE, cap::KILL]),
        "{f:?}"
    );
}

#[test]
fn non_root_without_ambient_has_no_effective_capabilities() {
    let mut b = Bundle::new();
    b.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    b.remove("/process/capabilities/ambient");
    b.sh("cat /proc/self/status");
    let f = run("capsnone", b);
    assert_eq!(cap_mask(&f.stdout, "CapEff"), 0, "{f:?}");
    assert_eq!(cap_mask(&f.stdout, "CapPrm"), 0, "{f:?}");
}

#[test]
fn no_new_privileges_is_set_when_asked() {
    for (nnp, want) in [(true, "1"), (false, "0")] {
        let mut b = Bundle::new();
        b.set("/process/noNewPrivileges", json!(nnp));
        b.sh("cat /proc/self/status");
        let f = run("nnp", b);
        assert_eq!(
            status_field(&f.stdout, "NoNewPrivs").as_deref(),
            Some(want),
            "{f:?}"
        );
    }
}

#[test]
fn rlimits_are_applied() {
    let mut b = Bundle::new();
    b.set(
        "/process/rlimits",
        json!([
            {"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
            {"type": "RLIMIT_NPROC", "soft": 777, "hard": 888}
        ]),
    );
    b.sh("echo soft=$(ulimit -n); echo hard=$(ulimit -Hn); cat /proc/self/limits");
    let f = run("rlimits", b);
    assert_eq!(kv(&f.stdout, "soft").as_deref(), Some("321"), "{f:?}");
    assert_eq!(kv(&f.stdout, "hard").as_deref(), Some("654"), "{f:?}");
    let line = |name: &str| -> Vec<String> {
        let l = f.stdout.lines().find(|l| l.starts_with(name)).unwrap();
        l[name.len()..]
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(line("Max open files")[..2], ["321", "654"], "{f:?}");
    assert_eq!(line("Max core file size")[..2], ["0", "0"], "{f:?}");
    assert_eq!(line("Max processes")[..2], ["777", "888"], "{f:?}");
}

fn seccomp_profile(syscalls: serde_json::Value) -> serde_json::Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": syscalls
    })
}

#[test]
fn seccomp_errno_for_mkdir_makes_mkdir_fail_with_eperm() {
    let script = "mkdir /made 2>&1; echo rc=$?; grep Seccomp: /proc/self/status";
    let mut b = Bundle::new();
    b.set("/root/readonly", json!(false));
    b.set(
        "/linux/seccomp",
        seccomp_profile(json!([
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
        ])),
    );
    b.sh(script);
    let f = run("seccomp", b);
    assert!(f.stdout.contains("Operation not permitted"), "{f:?}");
    assert_eq!(kv(&f.stdout, "rc").as_deref(), Some("1"), "{f:?}");
    assert_eq!(
        status_field(&f.stdout, "Seccomp").as_deref(),
        Some("2"),
        "{f:?}"
    );

    // Control: the same container without the profile can mkdir.
    let mut b = Bundle::new();
    b.set("/root/readonly", json!(false));
    b.sh(script);
    let f = run("noseccomp", b);
    assert_eq!(kv(&f.stdout, "rc").as_deref(), Some("0"), "{f:?}");
    assert_eq!(
        status_field(&f.stdout, "Seccomp").as_deref(),
        Some("0"),
        "{f:?}"
    );
}

#[test]
fn seccomp_argument_conditions_are_honoured() {
    let mut b = Bundle::new();
    b.set(
        "/linux/seccomp",
        seccomp_profile(json!([{
            "names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
            "args": [{"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]
        }])),
    );
    b.sh("kill -0 $$ 2>&1; echo zero=$?; kill -CONT $$ 2>&1; echo cont=$?");
    let f = run("seccompargs", b);
    assert_eq!(kv(&f.stdout, "zero").as_deref(), Some("1"), "{f:?}");
    assert!(f.stdout.contains("Operation not permitted"), "{f:?}");
    assert_eq!(kv(&f.stdout, "cont").as_deref(), Some("0"), "{f:?}");
}

#[test]
fn sysctls_are_written_in_the_containers_namespaces() {
    let mut b = Bundle::new();
    b.set(
        "/linux/sysctl",
        json!({"net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1", "net/ipv4/tcp_syncookies": "0"}),
    );
    b.sh(
        "echo fwd=$(cat /proc/sys/net/ipv4/ip_forward); echo shm=$(cat /proc/sys/kernel/shm_rmid_forced); \
         echo syn=$(cat /proc/sys/net/ipv4/tcp_syncookies)",
    );
    let f = run("sysctl", b);
    assert_eq!(kv(&f.stdout, "fwd").as_deref(), Some("1"), "{f:?}");
    assert_eq!(kv(&f.stdout, "shm").as_deref(), Some("1"), "{f:?}");
    assert_eq!(kv(&f.stdout, "syn").as_deref(), Some("0"), "{f:?}");
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    let host_shm = std::fs::read_to_string("/proc/sys/kernel/shm_rmid_forced").unwrap_or_default();
    assert!(
        host.trim() != "1" || host_shm.trim() != "1",
        "host sysctls were changed"
    );
}

#[test]
fn sysctl_outside_the_containers_namespaces_is_refused() {
    let before = std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap();
    let mut b = Bundle::new();
    b.set("/linux/sysctl", json!({"vm.swappiness": "7"}));
    b.args(&["true"]);
    let mut c = Container::new(&Runtime::under_test(), "sysctlhost", b);
    let out = c.create();
    assert!(!out.success(), "a host-wide sysctl was accepted: {out}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap(),
        before
    );
}

#[test]
fn oom_score_adj_is_applied() {
    let mut b = Bundle::new();
    b.set("/process/oomScoreAdj", json!(345));
    b.sh("echo adj=$(cat /proc/self/oom_score_adj)");
    let f = run("oomadj", b);
    assert_eq!(kv(&f.stdout, "adj").as_deref(), Some("345"), "{f:?}");
}

/// Lowering oom_score_adj needs CAP_SYS_RESOURCE, which some hosts (CI VMs)
/// lack: berth keeps the current value and warns instead of failing.
#[test]
fn negative_oom_score_adj_without_cap_sys_resource_does_not_fail() {
    let rt = Runtime::under_test();
    if rt.is_runc() {
        eprintln!("skipped: berth-specific leniency (runc fails the container)");
        return;
    }
    let current: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut b = Bundle::new();
    b.set("/process/oomScoreAdj", json!(-500));
    b.sh("echo adj=$(cat /proc/self/oom_score_adj)");
    let f = run("oomneg", b);
    let adj: i32 = kv(&f.stdout, "adj").unwrap().parse().unwrap();
    assert!(adj == -500 || adj == current, "{f:?}");
}

/// runtime-spec `linux.personality` (runc implements it from 1.2 only).
#[test]
fn personality_linux32() {
    if Runtime::under_test().is_runc() {
        eprintln!("skipped: runc 1.1 ignores linux.personality");
        return;
    }
    let mut b = Bundle::new();
    b.set("/linux/personality", json!({"domain": "LINUX32"}));
    b.sh("echo arch=$(uname -m)");
    let f = run("pers", b);
    assert_eq!(kv(&f.stdout, "arch").as_deref(), Some("i686"), "{f:?}");
}

#[test]
fn apparmor_profile_without_apparmor_is_a_clear_error() {
    if std::path::Path::new("/sys/kernel/security/apparmor").exists() {
        eprintln!("skipped: AppArmor is enabled on this host");
        return;
    }
    let mut b = Bundle::new();
    b.set("/process/apparmorProfile", json!("berth-it-profile"));
    b.args(&["true"]);
    let mut c = Container::new(&Runtime::under_test(), "apparmor", b);
    let out = c.create();
    assert!(
        !out.success(),
        "an AppArmor profile was silently ignored: {out}"
    );
    assert!(
        out.stderr.to_lowercase().contains("apparmor"),
        "unclear error: {out}"
    );
}

/// A caller that ignores SIGTERM (a shim, a daemon) must not pass that on:
/// a container shell that inherits an ignored SIGTERM never stops on it.
#[test]
fn inherited_ignored_signals_are_reset() {
    let real = Runtime::under_test();
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("runtime-ignoring-term");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ntrap '' TERM INT PIPE\nexec {} \"$@\"\n",
            real.path.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let rt = Runtime { path: wrapper };
    let mut b = Bundle::new();
    // No shell in between: it would set dispositions of its own.
    b.set(
        "/process/args",
        json!(["/bin/grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]),
    );
    let f = Container::new(&rt, "sigreset", b).run_to_exit();
    assert!(f.stdout.contains("SigIgn:\t0000000000000000"), "{f:?}");
    assert!(f.stdout.contains("SigBlk:\t0000000000000000"), "{f:?}");
}
