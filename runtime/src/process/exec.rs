//! The child side of `exec`: join every namespace of the running container
//! (pid/time were entered by the parent before the clone), optionally open
//! a terminal, then the same security set-up as the init and `execve`.
//!
//! The parent waits for `Go` to be consumed after it put the child into the
//! container's cgroup; success is the channel reaching end-of-file (the
//! close-on-exec socket went away with the exec).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use oci_spec::runtime::{LinuxNamespaceType, LinuxPersonality, LinuxSeccomp, Process};

use super::channel::{Channel, Msg};
use super::setup::{self, Finalize};
use super::{console, sys, InitError};

/// What an exec child needs; built by the parent before the clone.
#[derive(Debug)]
pub struct ExecConfig<'a> {
    /// The process to run.
    pub process: &'a Process,
    /// The container's seccomp profile.
    pub seccomp: Option<&'a LinuxSeccomp>,
    /// The container's personality.
    pub personality: Option<&'a LinuxPersonality>,
    /// Namespace files of the container init to join (not pid/time).
    pub join: &'a [(LinuxNamespaceType, PathBuf)],
    /// Extra fds (from 3 up) to pass on.
    pub preserve_fds: u32,
    /// Fds to install as stdin/stdout/stderr (default: inherited).
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
    /// The container's cgroups, joined by the child itself (v1 `tasks`).
    pub cgroup: Option<&'a crate::cgroups::CgroupJoin>,
}

/// Runs the exec child; never returns.
pub fn run(cfg: &ExecConfig<'_>, chan: Channel) -> ! {
    let err = match exec(cfg, &chan) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let text = super::error_chain(&err);
    if chan.send(&Msg::Error(text.clone())).is_err() {
        eprintln!("berth-runtime exec: {text}");
    }
    sys::exit_now(1)
}

fn exec(cfg: &ExecConfig<'_>, chan: &Channel) -> Result<std::convert::Infallible, InitError> {
    // CVE-2019-5736: see process::init — never enter the container dumpable.
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| InitError::sys("prctl(PR_SET_DUMPABLE)", e))?;
    chan.expect(|m| matches!(m, Msg::Go), "Go")?;
    // Still single-threaded, so moving our one thread moves the process
    // (and skips the kernel's global lock a cgroup.procs write takes).
    if let Some(cg) = cfg.cgroup {
        cg.join_v1_self()
            .map_err(|e| InitError::Cgroup(Box::new(e)))?;
    }
    super::init::join_namespaces(cfg.join)?;
    if cfg.process.terminal().unwrap_or(false) {
        nix::unistd::setsid().map_err(|e| InitError::sys("setsid", e))?;
        let size = cfg
            .process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        let pty = console::open_pty(size)?;
        console::attach_slave(&pty.slave)?;
        chan.send(&Msg::Console(pty.master))?;
    }
    if let Some(p) = cfg.personality {
        crate::personality::apply(p)?;
    }
    // Library callers hand the process its stdio as fds (ExecOptions.stdio),
    // installed only now so the set-up's own log lines stay out of the
    // container's output (a terminal already has the pty as stdio).
    if let (Some(fds), false) = (cfg.stdio, cfg.process.terminal().unwrap_or(false)) {
        sys::install_stdio(fds).map_err(|e| InitError::sys("installing stdio", e))?;
    }
    let fin = Finalize {
        process: cfg.process,
        seccomp: cfg.seccomp,
        preserve_fds: cfg.preserve_fds,
    };
    let mut send_listener = |fd: OwnedFd| -> Result<(), InitError> {
        chan.send(&Msg::SeccompListener(fd))?;
        Ok(())
    };
    let pending = setup::before_exec(&fin, &mut send_listener)?;
    setup::exec(&fin, pending, &mut send_listener)
}
