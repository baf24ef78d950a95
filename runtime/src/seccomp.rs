//! `linux.seccomp` through libseccomp: the OCI profile is compiled into a
//! filter context in the runtime (so errors surface before the container
//! runs anything) and loaded as late as possible in the container init, right
//! before `execve`.
//!
//! Semantics follow the runtime-spec and runc where the spec is silent:
//! - a syscall name unknown to this libseccomp/kernel is skipped (debug log),
//!   so one profile serves several kernels;
//! - several `args` on one rule are ANDed; if an argument index repeats, the
//!   rule is split into one rule per condition (ORed), because libseccomp
//!   cannot AND two conditions on the same argument;
//! - a rule whose action equals the default action is dropped (libseccomp
//!   refuses such rules and they change nothing);
//! - `errnoRet` defaults to EPERM for `SCMP_ACT_ERRNO` and `SCMP_ACT_TRACE`.
//!
//! Not done: runc's BPF patching that turns "syscall newer than the profile"
//! into `-ENOSYS` instead of the default action.

use std::fmt;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use oci_spec::runtime::{
    Arch, ContainerProcessStateBuilder, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSeccompFilterFlag, LinuxSeccompOperator, State, SECCOMP_FD_NAME,
};
use tracing::debug;

/// libseccomp's own error type.
type LibError = libseccomp::error::SeccompError;

/// Errors from compiling, loading or handing over a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The filter context could not be created.
    #[error("failed to create a seccomp filter with default action {action}")]
    Create {
        /// The default action.
        action: String,
        /// The underlying error.
        #[source]
        source: LibError,
    },
    /// An architecture is not supported by the installed libseccomp.
    #[error("seccomp architecture {arch} is not supported by libseccomp {version}")]
    Arch {
        /// The OCI name.
        arch: String,
        /// The libseccomp version.
        version: String,
        /// The underlying error.
        #[source]
        source: LibError,
    },
    /// An `errnoRet` outside the 16 bits the kernel keeps.
    #[error("errnoRet {value} for {what} is out of range (0..=65535)")]
    ErrnoRange {
        /// Which rule.
        what: String,
        /// The requested value.
        value: u32,
    },
    /// `SCMP_ACT_NOTIFY` as default action would trap every syscall of the
    /// init, including the ones handing the listener fd over.
    #[error("SCMP_ACT_NOTIFY cannot be the seccomp default action")]
    NotifyDefault,
    /// `SCMP_ACT_NOTIFY` needs libseccomp API level 6.
    #[error("SCMP_ACT_NOTIFY is not supported by libseccomp {version} (API level {api}, need 6)")]
    NotifyUnsupported {
        /// The libseccomp version.
        version: String,
        /// The API level the library reports.
        api: u32,
    },
    /// The spec uses `SCMP_ACT_NOTIFY` without a listener to receive the fd.
    #[error("seccomp uses SCMP_ACT_NOTIFY but linux.seccomp.listenerPath is not set")]
    NotifyWithoutListener,
    /// A syscall argument index beyond the six the kernel passes.
    #[error("seccomp argument index {index} of syscall {syscall} is out of range (0..=5)")]
    ArgIndex {
        /// The syscall name.
        syscall: String,
        /// The requested index.
        index: usize,
    },
    /// libseccomp refused a rule.
    #[error("failed to add the seccomp rule {action} for syscall {syscall}")]
    AddRule {
        /// The syscall name.
        syscall: String,
        /// The rule's action.
        action: String,
        /// The underlying error.
        #[source]
        source: LibError,
    },
    /// A filter flag this libseccomp or kernel lacks.
    #[error("seccomp flag {flag} is not supported by this kernel or libseccomp {version}")]
    FlagUnsupported {
        /// The OCI flag name.
        flag: String,
        /// The libseccomp version.
        version: String,
        /// The underlying error.
        #[source]
        source: LibError,
    },
    /// Setting a filter attribute libseccomp always supports failed.
    #[error("failed to set seccomp filter attribute {attr}")]
    Attr {
        /// The attribute.
        attr: &'static str,
        /// The underlying error.
        #[source]
        source: LibError,
    },
    /// `seccomp_load` failed.
    #[error("failed to load the seccomp filter (the process needs no_new_privs or CAP_SYS_ADMIN)")]
    Load(#[source] LibError),
    /// The listener fd could not be obtained after loading.
    #[error("failed to get the seccomp notify fd")]
    NotifyFd(#[source] LibError),
    /// Duplicating the listener fd failed.
    #[error("failed to duplicate the seccomp notify fd")]
    DupNotifyFd(#[source] nix::Error),
    /// The container process state could not be built or serialised.
    #[error("failed to serialise the seccomp container process state")]
    ProcessState(#[source] serde_json::Error),
    /// The listener socket could not be reached.
    #[error("failed to connect to the seccomp listener {path}")]
    ListenerConnect {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Sending the state and fd to the listener failed.
    #[error("failed to send the seccomp notify fd to the listener {path}")]
    ListenerSend {
        /// The socket path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: nix::Error,
    },
}

/// A compiled seccomp filter, ready to be loaded.
pub struct SeccompProgram {
    ctx: ScmpFilterContext,
    uses_notify: bool,
}

impl fmt::Debug for SeccompProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeccompProgram")
            .field("uses_notify", &self.uses_notify)
            .finish_non_exhaustive()
    }
}

fn lib_version() -> String {
    libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Maps an OCI action to libseccomp's, with `errnoRet` (EPERM by default).
fn to_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    what: &str,
) -> Result<ScmpAction, SeccompError> {
    let ret = match errno_ret {
        Some(v) if v > u32::from(u16::MAX) => {
            return Err(SeccompError::ErrnoRange {
                what: what.to_string(),
                value: v,
            })
        }
        // The range check above makes the narrowing exact.
        Some(v) => v as u16,
        None => libc::EPERM as u16,
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(i32::from(ret)),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(ret),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

/// Maps an OCI architecture to libseccomp's.
pub fn to_arch(arch: Arch) -> ScmpArch {
    match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    }
}

fn to_compare(syscall: &str, arg: &LinuxSeccompArg) -> Result<ScmpArgCompare, SeccompError> {
    let index = arg.index();
    if index > 5 {
        return Err(SeccompError::ArgIndex {
            syscall: syscall.to_string(),
            index,
        });
    }
    // Checked above: 0..=5 fits any integer type.
    let idx = index as u32;
    let value = arg.value();
    let cmp = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpArgCompare::new(idx, ScmpCompareOp::NotEqual, value),
        LinuxSeccompOperator::ScmpCmpLt => ScmpArgCompare::new(idx, ScmpCompareOp::Less, value),
        LinuxSeccompOperator::ScmpCmpLe => {
            ScmpArgCompare::new(idx, ScmpCompareOp::LessOrEqual, value)
        }
        LinuxSeccompOperator::ScmpCmpEq => ScmpArgCompare::new(idx, ScmpCompareOp::Equal, value),
        LinuxSeccompOperator::ScmpCmpGe => {
            ScmpArgCompare::new(idx, ScmpCompareOp::GreaterEqual, value)
        }
        LinuxSeccompOperator::ScmpCmpGt => ScmpArgCompare::new(idx, ScmpCompareOp::Greater, value),
        // runtime-spec: `value` is the mask, `valueTwo` the value compared
        // with the masked argument.
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpArgCompare::new(
            idx,
            ScmpCompareOp::MaskedEqual(value),
            arg.value_two().unwrap_or(0),
        ),
    };
    Ok(cmp)
}

/// Groups a rule's conditions into the rules to add: one rule with all
/// conditions (AND) when every index is distinct, else one rule per condition.
fn condition_groups(
    syscall: &str,
    args: &[LinuxSeccompArg],
) -> Result<Vec<Vec<ScmpArgCompare>>, SeccompError> {
    let conds = args
        .iter()
        .map(|a| to_compare(syscall, a))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = [false; 6];
    let repeated = args
        .iter()
        .any(|a| std::mem::replace(&mut seen[a.index()], true));
    Ok(if repeated {
        conds.into_iter().map(|c| vec![c]).collect()
    } else {
        vec![conds]
    })
}

fn set_flag(ctx: &mut ScmpFilterContext, flag: LinuxSeccompFilterFlag) -> Result<(), SeccompError> {
    let res = match flag {
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx.set_ctl_log(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true),
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => ctx.set_ctl_waitkill(true),
    };
    res.map(|_| ())
        .map_err(|source| SeccompError::FlagUnsupported {
            flag: flag.to_string(),
            version: lib_version(),
            source,
        })
}

/// The flags this kernel and libseccomp accept, probed on a scratch filter
/// (libseccomp asks the kernel for LOG and SPEC_ALLOW).
pub fn supported_flags() -> Vec<LinuxSeccompFilterFlag> {
    let all = [
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
    ];
    all.into_iter()
        .filter(|f| {
            ScmpFilterContext::new(ScmpAction::Allow)
                .map(|mut ctx| set_flag(&mut ctx, *f).is_ok())
                .unwrap_or(false)
        })
        .collect()
}

/// Whether libseccomp supports `SCMP_ACT_NOTIFY` here.
pub fn notify_supported() -> bool {
    libseccomp::get_api() >= 6
}

/// Compiles an OCI seccomp profile into a filter (nothing is loaded yet).
pub fn compile(s: &LinuxSeccomp) -> Result<SeccompProgram, SeccompError> {
    let default_action = s.default_action();
    if default_action == LinuxSeccompAction::ScmpActNotify {
        return Err(SeccompError::NotifyDefault);
    }
    let default = to_action(default_action, s.default_errno_ret(), "defaultAction")?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|source| SeccompError::Create {
        action: default_action.to_string(),
        source,
    })?;
    // no_new_privs is the init's decision (process.noNewPrivileges); without
    // it the load relies on CAP_SYS_ADMIN, as in runc.
    ctx.set_ctl_nnp(false)
        .map_err(|source| SeccompError::Attr {
            attr: "SCMP_FLTATR_CTL_NNP",
            source,
        })?;
    for arch in s.architectures().iter().flatten() {
        let a = to_arch(*arch);
        let present = ctx.is_arch_present(a).unwrap_or(false);
        if !present {
            ctx.add_arch(a).map_err(|source| SeccompError::Arch {
                arch: arch.to_string(),
                version: lib_version(),
                source,
            })?;
        }
    }
    for flag in s.flags().iter().flatten() {
        set_flag(&mut ctx, *flag)?;
    }

    let mut uses_notify = false;
    for rule in s.syscalls().iter().flatten() {
        let what = format!("syscalls {:?}", rule.names());
        let action = to_action(rule.action(), rule.errno_ret(), &what)?;
        if action == default {
            debug!(syscalls = ?rule.names(), "seccomp rule equals the default action; skipped");
            continue;
        }
        if action == ScmpAction::Notify {
            if !notify_supported() {
                return Err(SeccompError::NotifyUnsupported {
                    version: lib_version(),
                    api: libseccomp::get_api(),
                });
            }
            uses_notify = true;
        }
        for name in rule.names() {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                debug!(syscall = %name, "syscall unknown to libseccomp on this system; rule skipped");
                continue;
            };
            let groups = condition_groups(name, rule.args().as_deref().unwrap_or(&[]))?;
            for conds in groups {
                ctx.add_rule_conditional(action, syscall, &conds)
                    .map_err(|source| SeccompError::AddRule {
                        syscall: name.clone(),
                        action: rule.action().to_string(),
                        source,
                    })?;
            }
        }
    }
    if uses_notify && s.listener_path().is_none() {
        return Err(SeccompError::NotifyWithoutListener);
    }
    Ok(SeccompProgram { ctx, uses_notify })
}

impl SeccompProgram {
    /// Whether the filter has `SCMP_ACT_NOTIFY` rules (then `load` returns the
    /// listener fd).
    pub fn uses_notify(&self) -> bool {
        self.uses_notify
    }

    /// Loads the filter into the calling thread (all threads with TSYNC).
    /// Needs no_new_privs or `CAP_SYS_ADMIN`. Returns the notify listener fd,
    /// close-on-exec, when the filter uses `SCMP_ACT_NOTIFY`.
    pub fn load(self) -> Result<Option<OwnedFd>, SeccompError> {
        self.ctx.load().map_err(SeccompError::Load)?;
        if !self.uses_notify {
            return Ok(None);
        }
        let raw = self.ctx.get_notify_fd().map_err(SeccompError::NotifyFd)?;
        // libseccomp keeps ownership of its fd (and may close it on release),
        // so hand out an independent duplicate.
        let dup = dup_cloexec(raw).map_err(SeccompError::DupNotifyFd)?;
        Ok(Some(dup))
    }
}

fn dup_cloexec(raw: i32) -> nix::Result<OwnedFd> {
    // SAFETY: `raw` is libseccomp's open listener fd; it stays open for the
    // duration of this call because `self.ctx` is alive in the caller.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    let new = nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: `new` is a freshly duplicated fd nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Sends the seccomp notify fd to the agent at `listener_path`, as the
/// runtime-spec describes: a `ContainerProcessState` JSON (with
/// `fds: ["seccompFd"]`, the container pid as seen by the runtime and the
/// spec's `listenerMetadata`) in one message, the fd in `SCM_RIGHTS`.
pub fn send_to_listener(
    listener_path: &Path,
    notify_fd: BorrowedFd<'_>,
    pid: i32,
    metadata: Option<&str>,
    state: &State,
) -> Result<(), SeccompError> {
    let mut builder = ContainerProcessStateBuilder::default()
        .version(state.version().clone())
        .fds(vec![SECCOMP_FD_NAME.to_string()])
        .pid(pid)
        .state(state.clone());
    if let Some(m) = metadata {
        builder = builder.metadata(m.to_string());
    }
    let body = builder
        .build()
        .map_err(|e| SeccompError::ProcessState(serde::ser::Error::custom(e)))
        .and_then(|s| serde_json::to_vec(&s).map_err(SeccompError::ProcessState))?;
    let stream =
        UnixStream::connect(listener_path).map_err(|source| SeccompError::ListenerConnect {
            path: listener_path.to_path_buf(),
            source,
        })?;
    let fds = [notify_fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(&body)];
    sendmsg::<()>(stream.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).map_err(|source| {
        SeccompError::ListenerSend {
            path: listener_path.to_path_buf(),
            source,
        }
    })?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::caps::tests::in_child;
    use nix::errno::Errno;
    use nix::sys::signal::Signal;
    use nix::sys::wait::WaitStatus;
    use std::os::fd::AsFd;

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
            let s =
                profile(serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": [flag]}));
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
}
