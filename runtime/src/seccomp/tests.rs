//! Tests of seccomp compilation and loading; filters are loaded in forked
//! children so the test process itself stays unfiltered.
#![allow(clippy::unwrap_used)]
use super::*;
use crate::caps::tests::in_child;
use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::socket::MsgFlags;
use nix::sys::wait::WaitStatus;
use oci_spec::runtime::State;
use std::os::fd::AsFd;
use std::os::fd::{AsRawFd, FromRawFd};

fn profile(json: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(json).unwrap()
}

fn exited_ok(status: WaitStatus) {
    assert_eq!(status, WaitStatus::Exited(status.pid().unwrap(), 0));
}

#[test]
fn errno_rule_makes_mkdir_fail_with_eperm() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("blocked");
    let prog = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    })))
    .unwrap();
    let status = in_child(|| {
        if prog.load().is_err() {
            return 2;
        }
        match nix::unistd::mkdir(&target, nix::sys::stat::Mode::from_bits_truncate(0o755)) {
            Err(Errno::EPERM) => 0,
            Ok(()) => 3,
            Err(_) => 4,
        }
    });
    exited_ok(status);
    assert!(!dir.path().join("blocked").exists());
}

#[test]
fn load_needs_no_new_privs_or_cap_sys_admin() {
    let json = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
    });
    let first = compile(&profile(json.clone())).unwrap();
    let second = compile(&profile(json)).unwrap();
    let status = in_child(|| {
        // libseccomp must not set no_new_privs behind our back.
        if nix::sys::prctl::get_no_new_privs() != Ok(false) {
            return 2;
        }
        if caps::drop(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_ADMIN,
        )
        .is_err()
        {
            return 3;
        }
        if !matches!(first.load(), Err(SeccompError::Load(_))) {
            return 4;
        }
        if nix::sys::prctl::get_no_new_privs() != Ok(false) {
            return 5;
        }
        if nix::sys::prctl::set_no_new_privs().is_err() {
            return 6;
        }
        match second.load() {
            Ok(None) => 0,
            _ => 7,
        }
    });
    exited_ok(status);
}

#[test]
fn kill_process_action_kills_with_sigsys() {
    let prog = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]
    })))
    .unwrap();
    let status = in_child(|| {
        if prog.load().is_err() {
            return 2;
        }
        nix::unistd::getppid();
        0
    });
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{status:?}"
    );
}

fn raw_kill(pid: i32, sig: i32) -> Result<(), Errno> {
    // SAFETY: kill(2) has no memory-safety preconditions.
    let rc = unsafe { libc::kill(pid, sig) };
    Errno::result(rc).map(drop)
}

#[test]
fn argument_conditions_are_honoured() {
    // kill: two indexes, ANDed. tgkill: index 2 twice, ORed.
    // umask: MASKED_EQ with value = mask, valueTwo = expected bits.
    let status = in_child(|| {
        let me = std::process::id() as u64;
        let prog = compile(&profile(serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EXDEV,
                 "args": [{"index": 0, "value": me, "op": "SCMP_CMP_EQ"},
                          {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]},
                {"names": ["tgkill"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::ENOTTY,
                 "args": [{"index": 2, "value": libc::SIGCONT, "op": "SCMP_CMP_EQ"},
                          {"index": 2, "value": libc::SIGWINCH, "op": "SCMP_CMP_EQ"}]},
                {"names": ["umask"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EDOM,
                 "args": [{"index": 0, "value": 0o7, "valueTwo": 0o2, "op": "SCMP_CMP_MASKED_EQ"}]}
            ]
        })));
        let Ok(prog) = prog else { return 2 };
        if prog.load().is_err() {
            return 3;
        }
        let me = me as i32;
        // AND: both conditions true → errno; one false → allowed.
        if raw_kill(me, 0) != Err(Errno::EXDEV) {
            return 4;
        }
        if raw_kill(me, libc::SIGWINCH).is_err() || raw_kill(1, 0).is_err() {
            return 5;
        }
        // OR over the repeated index 2.
        // SAFETY: tgkill/umask have no memory-safety preconditions.
        let tg = |sig: i32| unsafe { libc::syscall(libc::SYS_tgkill, me, me, sig) };
        if tg(libc::SIGCONT) != -1 || Errno::last() != Errno::ENOTTY {
            return 6;
        }
        if tg(libc::SIGWINCH) != -1 || Errno::last() != Errno::ENOTTY {
            return 7;
        }
        if tg(0) != 0 {
            return 8;
        }
        // SAFETY: as above.
        let um = |m: u32| unsafe { libc::syscall(libc::SYS_umask, m) };
        if um(0o022) != -1 || Errno::last() != Errno::EDOM {
            return 9;
        }
        if um(0o020) < 0 {
            return 10;
        }
        0
    });
    exited_ok(status);
}

#[test]
fn errno_default_action_uses_default_errno_ret() {
    let prog = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::ENOSYS,
        "syscalls": [{"names": ["exit_group", "exit", "getpid", "rt_sigreturn", "getppid_not_a_syscall"],
                      "action": "SCMP_ACT_ALLOW"}]
    })))
    .unwrap();
    let status = in_child(|| {
        if prog.load().is_err() {
            return 2;
        }
        // SAFETY: getppid has no preconditions.
        let rc = unsafe { libc::syscall(libc::SYS_getppid) };
        if rc == -1 && Errno::last() == Errno::ENOSYS {
            0
        } else {
            3
        }
    });
    exited_ok(status);
}

#[test]
fn invalid_profiles_are_refused() {
    // The typed spec refuses unknown actions and architectures at parse time.
    let bad_action = serde_json::json!({"defaultAction": "SCMP_ACT_EXPLODE"});
    assert!(serde_json::from_value::<LinuxSeccomp>(bad_action).is_err());
    let bad_arch = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_VAX"]});
    assert!(serde_json::from_value::<LinuxSeccomp>(bad_arch).is_err());

    let errno = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]
    })));
    assert!(matches!(
        errno,
        Err(SeccompError::ErrnoRange { value: 70000, .. })
    ));
    let idx = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]}]
    })));
    assert!(matches!(idx, Err(SeccompError::ArgIndex { index: 6, .. })));
    let notify_default = compile(&profile(
        serde_json::json!({"defaultAction": "SCMP_ACT_NOTIFY"}),
    ));
    assert!(matches!(notify_default, Err(SeccompError::NotifyDefault)));
    let no_listener = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    })));
    assert!(matches!(
        no_listener,
        Err(SeccompError::NotifyWithoutListener)
    ));
}

#[test]
fn flags_and_unknown_syscalls() {
    let supported = supported_flags();
    assert!(supported.contains(&LinuxSeccompFilterFlag::SeccompFilterFlagTsync));
    let prog = compile(&profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["no_such_syscall_here"], "action": "SCMP_ACT_ERRNO"}]
    })))
    .unwrap();
    assert!(!prog.uses_notify());
    for flag in [
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
    ] {
        let s = profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": [flag]}));
        assert_eq!(compile(&s).is_ok(), supported.contains(&flag), "{flag}");
    }
}

#[test]
fn notify_fd_reaches_the_listener() {
    if !notify_supported() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let s = profile(serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "meta-1",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    let prog = compile(&s).unwrap();
    assert!(prog.uses_notify());
    let state: State = serde_json::from_value(serde_json::json!({
        "ociVersion": "1.2.0", "id": "seccomp-notify-test", "status": "creating",
        "pid": 1234, "bundle": "/b"
    }))
    .unwrap();
    let sock2 = sock.clone();
    let status = in_child(move || {
        let Ok(Some(fd)) = prog.load() else { return 2 };
        let state = state;
        match send_to_listener(&sock2, fd.as_fd(), 1234, Some("meta-1"), &state) {
            Ok(()) => 0,
            Err(_) => 3,
        }
    });
    exited_ok(status);
    let (conn, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; 8192];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .unwrap();
    let mut got_fd = false;
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            for fd in fds {
                got_fd = true;
                // SAFETY: the fd was just received and is owned by nobody else.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    let len = msg.bytes;
    assert!(got_fd);
    let v: serde_json::Value = serde_json::from_slice(&buf[..len]).unwrap();
    assert_eq!(v["fds"], serde_json::json!(["seccompFd"]));
    assert_eq!(v["metadata"], "meta-1");
    assert_eq!(v["pid"], 1234);
    assert_eq!(v["state"]["id"], "seccomp-notify-test");
}
