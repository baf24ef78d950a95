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
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};
use tracing::debug;

mod listener;
pub use listener::send_to_listener;

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

#[cfg(test)]
mod tests;
