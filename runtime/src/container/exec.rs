//! `exec`: a new process inside a running container, in all of its
//! namespaces and its cgroup, with the same security set-up as the init.

use std::path::PathBuf;

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Process};

use super::create::write_pid_file;
use super::{Container, ContainerError};
use crate::namespaces::{self, ParentNsGuard, JOIN_ORDER};
use crate::process::channel::{self, ChannelError, Msg};
use crate::process::exec::{self as exec_child, ExecConfig};
use crate::process::{console, sys};
use crate::state::Status;

/// Options of `exec` (runc's flags; the process is fully built by the caller).
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// The process to run (args, env, cwd, user, caps, terminal, ...).
    pub process: Process,
    /// Receives the pty master when `process.terminal`.
    pub console_socket: Option<PathBuf>,
    /// Where to write the new process' host pid.
    pub pid_file: Option<PathBuf>,
    /// Number of extra fds (3..3+n) handed to the process.
    pub preserve_fds: u32,
    /// Fds for the process' stdin/stdout/stderr (each >= 3, or equal to its
    /// target); `None` inherits the caller's.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
}

/// A process started by `exec`; the caller is its parent.
#[derive(Debug, Clone, Copy)]
pub struct ExecProcess {
    /// Host pid.
    pub pid: i32,
}

impl ExecProcess {
    /// Waits for the process; exit code, or 128+signal like a shell.
    pub fn wait(&self) -> Result<i32, ContainerError> {
        wait_exit_code(self.pid)
    }
}

/// Waits for child `pid`; exit code, or 128+signal.
pub fn wait_exit_code(pid: i32) -> Result<i32, ContainerError> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(128 + sig as i32),
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(source) => {
                return Err(ContainerError::Sys {
                    op: "waitpid",
                    source,
                })
            }
        }
    }
}

impl Container {
    /// Starts `opts.process` inside the container and returns once it has
    /// exec'd (or fails with the child's error). Single-threaded callers only.
    pub fn exec(&self, opts: &ExecOptions) -> Result<ExecProcess, ContainerError> {
        let status = self.status();
        if !matches!(status, Status::Created | Status::Running) {
            return Err(self.bad_status(status, "exec"));
        }
        crate::spec::validate_process(&opts.process)?;
        let terminal = opts.process.terminal().unwrap_or(false);
        if terminal && opts.console_socket.is_none() {
            return Err(ContainerError::Invalid(
                "--tty needs --console-socket".into(),
            ));
        }
        let init = self.state.pid;
        let mut in_parent = Vec::new();
        let mut in_child = Vec::new();
        for typ in JOIN_ORDER {
            let path = PathBuf::from(format!("/proc/{init}/ns/{}", namespaces::proc_name(typ)));
            if !path.exists() {
                continue;
            }
            match typ {
                LinuxNamespaceType::Pid | LinuxNamespaceType::Time => in_parent.push((typ, path)),
                _ => in_child.push((typ, path)),
            }
        }
        let join = self.cgroup()?.prepare_join().map_err(|e| self.cg_err(e))?;
        let spec = self.spec()?;
        let linux = spec.linux().as_ref();
        let cfg = ExecConfig {
            process: &opts.process,
            seccomp: linux.and_then(|l| l.seccomp().as_ref()),
            personality: linux.and_then(|l| l.personality().as_ref()),
            join: &in_child,
            preserve_fds: opts.preserve_fds,
            stdio: opts.stdio,
            cgroup: Some(&join),
        };
        let (parent, child) = channel::pair()?;
        // The init may have died while we opened things: re-check pid reuse.
        if !self.state.init_alive() {
            return Err(self.bad_status(Status::Stopped, "exec"));
        }
        let guard = ParentNsGuard::enter(&in_parent, false, None)?;
        let (cloned, in_v2) = super::create::clone_init(nix::sched::CloneFlags::empty(), &join);
        let pid = match cloned {
            Ok(sys::CloneResult::Child) => {
                drop(parent);
                sys::run_child(|| exec_child::run(&cfg, child))
            }
            Ok(sys::CloneResult::Parent(pid)) => pid,
            Err(source) => {
                return Err(ContainerError::Sys {
                    op: "clone",
                    source,
                })
            }
        };
        drop(guard);
        drop(child);
        let fail = |e: ContainerError| {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = waitpid(pid, None);
            e
        };
        if !in_v2 {
            join.add_v2(pid.as_raw())
                .map_err(|e| fail(self.cg_err(e)))?;
        }
        parent.send(&Msg::Go).map_err(|e| fail(e.into()))?;
        loop {
            match parent.recv() {
                Ok(Msg::Console(fd)) => {
                    let sock = opts.console_socket.as_deref().ok_or_else(|| {
                        fail(ContainerError::Invalid(
                            "unexpected pty from exec child".into(),
                        ))
                    })?;
                    console::send_to_socket(sock, &fd, "").map_err(|e| fail(e.into()))?;
                }
                Ok(Msg::SeccompListener(_)) => {
                    return Err(fail(ContainerError::Invalid(
                        "seccomp notify is not supported for exec processes".into(),
                    )))
                }
                Ok(Msg::Error(text)) => {
                    let _ = waitpid(pid, None);
                    return Err(ContainerError::Child(text));
                }
                Ok(other) => {
                    return Err(fail(ContainerError::Channel(ChannelError::Unexpected {
                        got: other,
                        expected: "an exec message",
                    })))
                }
                // The close-on-exec channel closed: execve succeeded.
                Err(ChannelError::Closed) => break,
                Err(e) => return Err(fail(e.into())),
            }
        }
        if let Some(pid_file) = &opts.pid_file {
            write_pid_file(pid_file, pid.as_raw())?;
        }
        Ok(ExecProcess { pid: pid.as_raw() })
    }
}
