//! berth's `RuntimeDefault` seccomp profile: deny with EPERM by default,
//! allow the syscalls ordinary programs use, and allow the privileged ones
//! only when the container holds the capability that guards them in the
//! kernel anyway — the same policy as containerd's and Docker's default
//! profiles, written here as berth's own table.
//!
//! Targets kernels >= 4.8 (where seccomp runs after ptrace decisions, so
//! `ptrace` itself cannot be used to bypass the filter).

use std::collections::HashSet;

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

use super::SpecBuildError;

/// EPERM: what denied syscalls return, so programs see a plain refusal.
const EPERM: u32 = 1;
/// ENOSYS for clone3: glibc then falls back to clone, whose flags can be
/// checked (clone3 passes them in memory, out of the filter's reach).
const ENOSYS: u32 = 38;

/// Syscalls every container may make.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep",
    "clock_nanosleep_time64", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
    "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
    "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate",
    "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat",
    "fcntl", "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv",
    "futex_wake", "futimesat", "get_robust_list", "get_thread_area", "getcpu", "getcwd",
    "getdents", "getdents64", "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32",
    "getgroups", "getgroups32", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid",
    "getppid", "getpriority", "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32",
    "getrlimit", "getrusage", "getsid", "getsockname", "getsockopt", "gettid", "gettimeofday",
    "getuid", "getuid32", "getxattr", "getxattrat", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "io_cancel", "io_destroy", "io_getevents",
    "io_pgetevents", "io_pgetevents_time64", "io_setup", "io_submit", "ioctl", "ioprio_get",
    "ioprio_set", "ipc", "kill", "landlock_add_rule", "landlock_create_ruleset",
    "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link", "linkat", "listen",
    "listmount", "listxattr", "listxattrat", "llistxattr", "_llseek", "lremovexattr", "lseek",
    "lsetxattr", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr", "lstat", "lstat64",
    "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore",
    "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2",
    "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
    "mq_timedreceive_time64", "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap",
    "mseal", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap",
    "name_to_handle_at", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2",
    "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "process_vm_readv", "process_vm_writev", "pselect6",
    "pselect6_time64", "ptrace", "pwrite64", "pwritev", "pwritev2", "read", "readahead",
    "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64",
    "recvmsg", "remap_file_pages", "removexattr", "removexattrat", "rename", "renameat",
    "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending",
    "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait",
    "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_get_priority_max",
    "sched_get_priority_min", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64",
    "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
    "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "set_robust_list",
    "set_thread_area", "set_tid_address", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32",
    "setgid", "setgid32", "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority",
    "setregid", "setregid32", "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid",
    "setreuid32", "setrlimit", "setsid", "setsockopt", "setuid", "setuid32", "setxattr",
    "setxattrat", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd",
    "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat",
    "stat64", "statfs", "statfs64", "statmount", "statx", "symlink", "symlinkat", "sync",
    "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
    "timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask",
    "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat", "utimensat_time64", "utimes",
    "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
];

/// Architecture-specific syscalls every container may make, by Rust's
/// `target_arch` name.
const ALLOWED_BY_ARCH: &[(&str, &[&str])] = &[
    ("x86_64", &["arch_prctl", "modify_ldt"]),
    ("x86", &["modify_ldt"]),
    (
        "aarch64",
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "breakpoint",
            "cacheflush",
            "set_tls",
            "sync_file_range2",
        ],
    ),
    (
        "arm",
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "breakpoint",
            "cacheflush",
            "set_tls",
            "sync_file_range2",
        ],
    ),
    ("powerpc64", &["swapcontext", "sync_file_range2"]),
    (
        "s390x",
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
    ("riscv64", &["riscv_flush_icache", "riscv_hwprobe"]),
];

/// Address families `socket(2)` refuses: AF_ALG (38, the kernel crypto API)
/// and AF_VSOCK (40, host↔guest sockets).
const AF_ALG: u64 = 38;
/// See [`AF_ALG`].
const AF_VSOCK: u64 = 40;

/// Syscalls allowed only with the capability the kernel checks for them.
const BY_CAPABILITY: &[(Capability, &[&str])] = &[
    (Capability::DacReadSearch, &["open_by_handle_at"]),
    (
        Capability::SysAdmin,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (Capability::SysBoot, &["reboot"]),
    (Capability::SysChroot, &["chroot"]),
    (
        Capability::SysModule,
        &["delete_module", "finit_module", "init_module"],
    ),
    (Capability::SysPacct, &["acct"]),
    (
        Capability::SysPtrace,
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    (Capability::SysRawio, &["ioperm", "iopl"]),
    (
        Capability::SysTime,
        &["clock_settime", "clock_settime64", "settimeofday", "stime"],
    ),
    (Capability::SysTtyConfig, &["vhangup"]),
    (
        Capability::SysNice,
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    (Capability::Syslog, &["syslog"]),
    (Capability::Bpf, &["bpf"]),
    (Capability::Perfmon, &["perf_event_open"]),
];

/// Namespace-creating clone flags: CLONE_NEWNS | NEWCGROUP | NEWUTS |
/// NEWIPC | NEWUSER | NEWPID | NEWNET, refused in `clone` without
/// CAP_SYS_ADMIN (CLONE_NEWTIME shares its bit with the exit signal in
/// `clone`, so only `clone3`/`unshare` can ask for it, both refused then).
const CLONE_NS_FLAGS: u64 = 0x7E02_0000;

/// personality(2) values that are harmless: PER_LINUX, UNAME26,
/// PER_LINUX32, PER_LINUX32|UNAME26 and the query value 0xffffffff.
const PERSONALITY_VALUES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

fn rule(names: &[&str], action: LinuxSeccompAction, errno: Option<u32>) -> LinuxSyscall {
    let mut s = LinuxSyscall::default();
    s.set_names(names.iter().map(|n| n.to_string()).collect());
    s.set_action(action);
    s.set_errno_ret(errno);
    s.set_args(None);
    s
}

fn arg(
    index: usize,
    value: u64,
    value_two: Option<u64>,
    op: LinuxSeccompOperator,
) -> Result<LinuxSeccompArg, SpecBuildError> {
    let mut b = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    if let Some(v) = value_two {
        b = b.value_two(v);
    }
    b.build().map_err(|source| SpecBuildError::Build {
        what: "seccomp argument condition",
        source,
    })
}

fn host_architectures() -> Vec<Arch> {
    match std::env::consts::ARCH {
        "x86_64" => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        "x86" => vec![Arch::ScmpArchX86],
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        "arm" => vec![Arch::ScmpArchArm],
        "riscv64" => vec![Arch::ScmpArchRiscv64],
        "powerpc64" => vec![Arch::ScmpArchPpc64le],
        "s390x" => vec![Arch::ScmpArchS390x, Arch::ScmpArchS390],
        _ => Vec::new(),
    }
}

/// The `RuntimeDefault` profile for a container whose bounding set is
/// `caps` (rules for capabilities it lacks are left out).
pub fn runtime_default_profile(caps: &HashSet<Capability>) -> Result<LinuxSeccomp, SpecBuildError> {
    let allow = LinuxSeccompAction::ScmpActAllow;
    let mut syscalls = vec![rule(ALLOWED, allow, None)];
    for (arch, names) in ALLOWED_BY_ARCH {
        if *arch == std::env::consts::ARCH {
            syscalls.push(rule(names, allow, None));
        }
    }
    // Every family but AF_ALG and AF_VSOCK, as three ranges (one rule each:
    // conditions within one rule are ANDed).
    for (value, op) in [
        (AF_ALG, LinuxSeccompOperator::ScmpCmpLt),
        (AF_ALG + 1, LinuxSeccompOperator::ScmpCmpEq),
        (AF_VSOCK, LinuxSeccompOperator::ScmpCmpGt),
    ] {
        let mut socket = rule(&["socket"], allow, None);
        socket.set_args(Some(vec![arg(0, value, None, op)?]));
        syscalls.push(socket);
    }
    let mut personality = rule(&["personality"], allow, None);
    personality.set_args(Some(
        PERSONALITY_VALUES
            .iter()
            .map(|v| arg(0, *v, None, LinuxSeccompOperator::ScmpCmpEq))
            .collect::<Result<_, _>>()?,
    ));
    syscalls.push(personality);

    let mut gated: Vec<&str> = BY_CAPABILITY
        .iter()
        .filter(|(cap, _)| caps.contains(cap))
        .flat_map(|(_, names)| names.iter().copied())
        .collect();
    gated.sort_unstable();
    gated.dedup();
    if !gated.is_empty() {
        syscalls.push(rule(&gated, allow, None));
    }
    if !caps.contains(&Capability::SysAdmin) {
        // s390 passes the stack first and the flags second.
        let flags_index = if std::env::consts::ARCH == "s390x" {
            1
        } else {
            0
        };
        let mut clone = rule(&["clone"], allow, None);
        clone.set_args(Some(vec![arg(
            flags_index,
            CLONE_NS_FLAGS,
            Some(0),
            LinuxSeccompOperator::ScmpCmpMaskedEq,
        )?]));
        syscalls.push(clone);
        syscalls.push(rule(
            &["clone3"],
            LinuxSeccompAction::ScmpActErrno,
            Some(ENOSYS),
        ));
    }

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(EPERM));
    profile.set_architectures(Some(host_architectures()));
    profile.set_flags(None);
    profile.set_listener_path(None);
    profile.set_listener_metadata(None);
    profile.set_syscalls(Some(syscalls));
    Ok(profile)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn allowed(p: &LinuxSeccomp, name: &str) -> Vec<LinuxSyscall> {
        p.syscalls()
            .clone()
            .unwrap()
            .into_iter()
            .filter(|r| r.action() == LinuxSeccompAction::ScmpActAllow)
            .filter(|r| r.names().iter().any(|n| n == name))
            .collect()
    }

    #[test]
    fn capability_gated_rules_follow_the_bounding_set() {
        let none = runtime_default_profile(&HashSet::new()).unwrap();
        assert_eq!(none.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(none.default_errno_ret(), Some(EPERM));
        assert_eq!(allowed(&none, "read").len(), 1);
        assert!(allowed(&none, "mount").is_empty());
        assert!(allowed(&none, "chroot").is_empty());
        // clone only without namespace flags.
        let clone = allowed(&none, "clone");
        assert_eq!(clone.len(), 1);
        assert!(clone[0].args().is_some());

        let admin: HashSet<_> = [Capability::SysAdmin, Capability::SysChroot].into();
        let p = runtime_default_profile(&admin).unwrap();
        assert_eq!(allowed(&p, "mount").len(), 1);
        assert_eq!(allowed(&p, "chroot").len(), 1);
        let clone = allowed(&p, "clone");
        assert_eq!(clone.len(), 1);
        assert!(
            clone[0].args().is_none(),
            "unrestricted clone with SYS_ADMIN"
        );
    }

    #[test]
    fn containerd_parity_points() {
        let none = runtime_default_profile(&HashSet::new()).unwrap();
        // Allowed for everyone on kernels >= 4.8 (and in the general list).
        for name in [
            "ptrace",
            "process_vm_readv",
            "name_to_handle_at",
            "statmount",
        ] {
            assert!(!allowed(&none, name).is_empty(), "{name}");
        }
        // socket: three conditional rules, none unconditional.
        let socket = allowed(&none, "socket");
        assert_eq!(socket.len(), 3);
        assert!(socket.iter().all(|r| r.args().is_some()));
        // Without CAP_SYS_ADMIN clone masks the namespace flags only.
        let clone = allowed(&none, "clone");
        assert_eq!(clone[0].args().clone().unwrap()[0].value(), 0x7E02_0000);
        let clone3: Vec<_> = none
            .syscalls()
            .clone()
            .unwrap()
            .into_iter()
            .filter(|r| r.names().iter().any(|n| n == "clone3"))
            .collect();
        assert_eq!(clone3[0].errno_ret(), Some(ENOSYS));
        if std::env::consts::ARCH == "x86_64" {
            assert!(!allowed(&none, "arch_prctl").is_empty());
        }
    }

    /// The hostile case for socket families: AF_ALG and AF_VSOCK are
    /// refused with EPERM while AF_UNIX works. Needs root to load a filter
    /// without no_new_privs; the filter lives only on a scratch thread.
    #[test]
    fn default_profile_refuses_af_alg_for_real() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let profile = runtime_default_profile(&HashSet::new()).unwrap();
        let results = std::thread::spawn(move || {
            berth_runtime::seccomp::compile(&profile)
                .unwrap()
                .load()
                .unwrap();
            // SAFETY: plain socket(2) calls; every returned fd is closed below.
            let open = |family: i32| unsafe { libc::socket(family, libc::SOCK_STREAM, 0) };
            let mut out = Vec::new();
            for family in [libc::AF_UNIX, libc::AF_ALG, libc::AF_VSOCK] {
                let fd = open(family);
                let errno = std::io::Error::last_os_error().raw_os_error();
                if fd >= 0 {
                    // SAFETY: `fd` was just returned by socket(2) and is owned here.
                    unsafe { libc::close(fd) };
                }
                out.push((fd >= 0, errno));
            }
            out
        })
        .join()
        .unwrap();
        assert!(results[0].0, "AF_UNIX must work");
        assert_eq!(results[1], (false, Some(libc::EPERM)), "AF_ALG");
        assert_eq!(results[2], (false, Some(libc::EPERM)), "AF_VSOCK");
    }

    #[test]
    fn default_profile_compiles_with_libseccomp() {
        for caps in [
            HashSet::new(),
            [Capability::SysAdmin, Capability::SysPtrace]
                .into_iter()
                .collect(),
        ] {
            let p = runtime_default_profile(&caps).unwrap();
            let prog = berth_runtime::seccomp::compile(&p).unwrap();
            assert!(!prog.uses_notify());
        }
    }

    /// The hostile case: under the default profile without CAP_SYS_ADMIN,
    /// `unshare` is refused while ordinary programs run. Needs root (to load
    /// a filter without no_new_privs and to unshare as the control) and
    /// busybox; the filter lives only on a scratch thread and its children.
    #[test]
    fn default_profile_refuses_unshare_for_real() {
        use std::os::unix::fs::MetadataExt;
        let root = std::fs::metadata("/proc/self")
            .map(|m| m.uid() == 0)
            .unwrap_or(false);
        let busybox = std::path::Path::new("/bin/busybox");
        if !root || !busybox.exists() {
            eprintln!("skipped: needs root and /bin/busybox");
            return;
        }
        let run = move |args: &[&str]| {
            std::process::Command::new(busybox)
                .args(args)
                .status()
                .unwrap()
                .success()
        };
        assert!(
            run(&["unshare", "-u", "true"]),
            "control: unshare works unfiltered"
        );
        let profile = runtime_default_profile(&HashSet::new()).unwrap();
        let (plain, unshare) = std::thread::spawn(move || {
            berth_runtime::seccomp::compile(&profile)
                .unwrap()
                .load()
                .unwrap();
            (run(&["true"]), run(&["unshare", "-u", "true"]))
        })
        .join()
        .unwrap();
        assert!(plain, "busybox true must run under the default profile");
        assert!(!unshare, "unshare must be refused without CAP_SYS_ADMIN");
    }
}
