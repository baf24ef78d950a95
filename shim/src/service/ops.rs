//! Operations on existing tasks: state, wait, kill, delete, pids, stats,
//! update, log reopen, stdio, shutdown.

use std::sync::PoisonError;
use std::time::{Duration, Instant};

use berth_runtime::container::{Container, ContainerError};
use chrono::Utc;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::{
    proc_of, runtime_err, task, task_mut, Exit, Kind, ProcRef, ProcState, ProcStatus, Service,
    Task, TaskError,
};
use crate::events::Event;
use crate::{rootfs, sandbox};

impl Service {
    /// State of a process.
    pub fn state(&self, r: ProcRef<'_>) -> Result<ProcState, TaskError> {
        let inner = self.lock();
        let t = task(&inner, r.id)?;
        let p = proc_of(t, r)?;
        Ok(ProcState {
            pid: p.pid,
            status: p.status,
            exit: p.exit,
            bundle: t.bundle.clone(),
            stdio: p.stdio.clone(),
            terminal: p.terminal,
        })
    }

    /// Blocks until the process exited.
    pub fn wait(&self, r: ProcRef<'_>) -> Result<Exit, TaskError> {
        let mut inner = self.lock();
        loop {
            let t = task(&inner, r.id)?;
            let p = proc_of(t, r)?;
            if let Some(e) = p.exit {
                return Ok(e);
            }
            inner = self
                .changed
                .wait(inner)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Sends a signal.
    pub fn kill(&self, r: ProcRef<'_>, signal: u32, all: bool) -> Result<(), TaskError> {
        let sig = i32::try_from(signal)
            .ok()
            .and_then(|s| Signal::try_from(s).ok())
            .ok_or_else(|| TaskError::Invalid(format!("invalid signal {signal}")))?;
        let mut inner = self.lock();
        let t = task_mut(&mut inner, r.id)?;
        if !r.exec_id.is_empty() {
            let p = proc_of(t, r)?;
            if p.status != ProcStatus::Running {
                return Err(TaskError::NotFound(format!(
                    "{}/{}: process already finished",
                    r.id, r.exec_id
                )));
            }
            return signal_pid(p.pid, sig, r);
        }
        match t.kind {
            Kind::Sandbox { pod_init: true } => {
                if t.init.status == ProcStatus::Stopped {
                    return Err(TaskError::NotFound(format!(
                        "{}: process already finished",
                        r.id
                    )));
                }
                signal_pid(t.init.pid, sig, r)
            }
            Kind::Sandbox { pod_init: false } => {
                // The "process" is the shim: stopping signals end it like
                // a pause process would (0 on TERM/INT, 137 on KILL).
                let code = match sig {
                    Signal::SIGKILL => 128 + Signal::SIGKILL as i32,
                    Signal::SIGTERM | Signal::SIGINT => 0,
                    _ => return Ok(()),
                };
                if t.init.exit.is_none() {
                    let exit = Exit {
                        code,
                        at: Utc::now(),
                    };
                    t.init.exit = Some(exit);
                    t.init.status = ProcStatus::Stopped;
                    let pid = t.init.pid;
                    drop(inner);
                    self.changed.notify_all();
                    self.events.publish(Event::Exit {
                        id: r.id.to_string(),
                        exec_id: String::new(),
                        pid,
                        code,
                        at: exit.at,
                    });
                }
                Ok(())
            }
            Kind::Container { .. } => {
                if t.init.status == ProcStatus::Stopped && !all {
                    return Err(TaskError::NotFound(format!(
                        "{}: process already finished",
                        r.id
                    )));
                }
                drop(inner);
                let c = Container::load(&self.root, r.id).map_err(runtime_err(r.id))?;
                c.kill(sig, all).map_err(runtime_err(r.id))
            }
        }
    }

    /// Deletes an exec or a task; returns (pid, exit).
    pub fn delete(&self, r: ProcRef<'_>) -> Result<(i32, Exit), TaskError> {
        if !r.exec_id.is_empty() {
            let mut inner = self.lock();
            let t = task_mut(&mut inner, r.id)?;
            let p = proc_of(t, r)?;
            if p.status == ProcStatus::Running || p.starting {
                return Err(TaskError::Precondition(format!(
                    "{}/{}: cannot delete a running process",
                    r.id, r.exec_id
                )));
            }
            let (pid, exit) = (
                p.pid,
                p.exit.unwrap_or(Exit {
                    code: 0,
                    at: Utc::now(),
                }),
            );
            t.execs.remove(r.exec_id);
            return Ok((pid, exit));
        }
        let (bundle, kind_sandbox, mounted, status, pid) = {
            let inner = self.lock();
            let t = task(&inner, r.id)?;
            if matches!(t.init.status, ProcStatus::Running | ProcStatus::Paused) {
                return Err(TaskError::Precondition(format!(
                    "{}: cannot delete a running task",
                    r.id
                )));
            }
            let (sandbox, mounted) = match t.kind {
                Kind::Sandbox { pod_init } => {
                    if pod_init && t.init.status == ProcStatus::Created {
                        // Never started: its pod init must not outlive it.
                        let _ = nix::sys::signal::kill(Pid::from_raw(t.init.pid), Signal::SIGKILL);
                    }
                    (true, false)
                }
                Kind::Container { rootfs_mounted, .. } => (false, rootfs_mounted),
            };
            (
                t.bundle.clone(),
                sandbox,
                mounted,
                t.init.status,
                t.init.pid,
            )
        };
        if kind_sandbox {
            sandbox::unpin(&bundle);
        } else {
            match Container::load(&self.root, r.id) {
                Ok(c) => c.delete(false).map_err(runtime_err(r.id))?,
                Err(ContainerError::State(err)) => {
                    tracing::debug!(%err, container_id = %r.id, "no runtime state to delete")
                }
                Err(e) => return Err(runtime_err(r.id)(e)),
            }
            if mounted {
                rootfs::unmount_rootfs(&bundle).map_err(|source| TaskError::Rootfs {
                    id: r.id.to_string(),
                    source,
                })?;
            }
        }
        let mut exit = None;
        if status == ProcStatus::Created && !kind_sandbox {
            // The runtime killed the waiting init; give its exit a moment.
            let deadline = Instant::now() + Duration::from_secs(2);
            let mut inner = self.lock();
            loop {
                exit = inner.tasks.get(r.id).and_then(|t| t.init.exit);
                let left = deadline.saturating_duration_since(Instant::now());
                if exit.is_some() || left.is_zero() {
                    break;
                }
                inner = self
                    .changed
                    .wait_timeout(inner, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        let mut inner = self.lock();
        let removed = inner.tasks.remove(r.id);
        let empty = inner.tasks.is_empty();
        drop(inner);
        let exit = exit
            .or_else(|| removed.as_ref().and_then(|t| t.init.exit))
            .unwrap_or(Exit {
                code: 128 + Signal::SIGKILL as i32,
                at: Utc::now(),
            });
        self.changed.notify_all();
        self.events.publish(Event::Delete {
            id: r.id.to_string(),
            pid,
            code: exit.code,
            at: exit.at,
        });
        if empty {
            tracing::debug!("last task deleted");
        }
        Ok((pid, exit))
    }

    /// Freezes (`pause`) or thaws a running container.
    pub fn set_paused(&self, id: &str, pause: bool) -> Result<(), TaskError> {
        self.container_only(id, if pause { "pause" } else { "resume" })?;
        let mut c = Container::load(&self.root, id).map_err(runtime_err(id))?;
        if pause {
            c.pause().map_err(runtime_err(id))?;
        } else {
            c.resume().map_err(runtime_err(id))?;
        }
        let mut inner = self.lock();
        if let Some(t) = inner.tasks.get_mut(id) {
            if t.init.status != ProcStatus::Stopped {
                t.init.status = if pause {
                    ProcStatus::Paused
                } else {
                    ProcStatus::Running
                };
            }
        }
        Ok(())
    }

    /// Pids of a task (every process of its cgroup, or the pod init).
    pub fn pids(&self, id: &str) -> Result<Vec<i32>, TaskError> {
        let (sandbox, pid, status) = {
            let inner = self.lock();
            let t = task(&inner, id)?;
            (
                matches!(t.kind, Kind::Sandbox { .. }),
                t.init.pid,
                t.init.status,
            )
        };
        if sandbox {
            return Ok(if status == ProcStatus::Stopped {
                Vec::new()
            } else {
                vec![pid]
            });
        }
        let c = Container::load(&self.root, id).map_err(runtime_err(id))?;
        c.ps().map_err(runtime_err(id))
    }

    /// cgroup statistics of a container task.
    pub fn stats(&self, id: &str) -> Result<berth_runtime::cgroups::CgroupStats, TaskError> {
        self.container_only(id, "stats")?;
        let c = Container::load(&self.root, id).map_err(runtime_err(id))?;
        c.stats().map_err(runtime_err(id))
    }

    /// New resource limits for a container.
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<(), TaskError> {
        self.container_only(id, "update")?;
        let mut c = Container::load(&self.root, id).map_err(runtime_err(id))?;
        c.update(resources).map_err(runtime_err(id))
    }

    /// ReopenContainerLog: reopens the CRI log of a running container.
    pub fn reopen_log(&self, id: &str) -> Result<(), TaskError> {
        let inner = self.lock();
        let t = task(&inner, id)?;
        if t.init.status != ProcStatus::Running {
            return Err(TaskError::Precondition(format!(
                "{id}: container is not running"
            )));
        }
        t.init.io.reopen_log().map_err(|source| TaskError::Stdio {
            id: id.to_string(),
            source,
        })
    }

    /// CloseIO: closes the process' stdin.
    pub fn close_stdin(&self, r: ProcRef<'_>) -> Result<(), TaskError> {
        let inner = self.lock();
        let t = task(&inner, r.id)?;
        proc_of(t, r)?.io.close_stdin();
        Ok(())
    }

    /// ResizePty (a no-op for a process without a terminal, as in
    /// containerd's shim).
    pub fn resize_pty(&self, r: ProcRef<'_>, width: u32, height: u32) -> Result<(), TaskError> {
        let inner = self.lock();
        let t = task(&inner, r.id)?;
        let w = u16::try_from(width).unwrap_or(u16::MAX);
        let h = u16::try_from(height).unwrap_or(u16::MAX);
        proc_of(t, r)?
            .io
            .resize(w, h)
            .map_err(|e| TaskError::Precondition(format!("{} {}: {e}", r.id, r.exec_id)))
    }

    /// The task's init pid.
    pub fn task_pid(&self, id: &str) -> Result<i32, TaskError> {
        let inner = self.lock();
        Ok(task(&inner, id)?.init.pid)
    }

    /// Shutdown: the shim exits when no task is left (else the request is
    /// ignored); with `now` it first kills and removes every task.
    pub fn shutdown(&self, now: bool) -> bool {
        let empty = self.lock().tasks.is_empty();
        if !empty && now {
            self.remove_all();
        }
        if empty || now {
            (self.exit_requested)();
        }
        empty
    }

    /// Kills and removes every task (containers, pod init, pins, mounts).
    fn remove_all(&self) {
        let tasks: Vec<(String, Task)> = self.lock().tasks.drain().collect();
        for (id, t) in tasks {
            match t.kind {
                Kind::Container { rootfs_mounted, .. } => {
                    if let Ok(c) = Container::load(&self.root, &id) {
                        if let Err(err) = c.delete(true) {
                            tracing::warn!(%err, container_id = %id, "forced delete");
                        }
                    }
                    if rootfs_mounted {
                        if let Err(err) = rootfs::unmount_rootfs(&t.bundle) {
                            tracing::warn!(%err, container_id = %id, "unmounting the rootfs");
                        }
                    }
                }
                Kind::Sandbox { pod_init } => {
                    if pod_init && t.init.status != ProcStatus::Stopped {
                        let _ = nix::sys::signal::kill(Pid::from_raw(t.init.pid), Signal::SIGKILL);
                    }
                    sandbox::unpin(&t.bundle);
                }
            }
        }
        self.changed.notify_all();
    }

    fn container_only(&self, id: &str, op: &str) -> Result<(), TaskError> {
        let inner = self.lock();
        match task(&inner, id)?.kind {
            Kind::Container { .. } => Ok(()),
            Kind::Sandbox { .. } => Err(TaskError::Precondition(format!(
                "{id}: {op} is for container tasks (the sandbox has no cgroup of its own)"
            ))),
        }
    }
}

fn signal_pid(pid: i32, sig: Signal, r: ProcRef<'_>) -> Result<(), TaskError> {
    match nix::sys::signal::kill(Pid::from_raw(pid), sig) {
        Ok(()) => Ok(()),
        Err(nix::Error::ESRCH) => Err(TaskError::NotFound(format!(
            "{} {}: process already finished",
            r.id, r.exec_id
        ))),
        Err(e) => Err(TaskError::Precondition(format!(
            "{} {}: kill({pid}, {sig}): {e}",
            r.id, r.exec_id
        ))),
    }
}
