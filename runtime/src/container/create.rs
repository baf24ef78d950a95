//! `create` (parent side of the init handshake) and `start`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use oci_spec::runtime::{ContainerState, Spec};

use super::{Container, ContainerError};
use crate::cgroups::CgroupManager;
use crate::hooks::HookStage;
use crate::namespaces::{self, NamespacePlan, ParentNsGuard};
use crate::process::channel::{self, Channel, Msg};
use crate::process::init::{self, hook_state, InitConfig};
use crate::process::{console, sys};
use crate::spec::{self, LoadedSpec};
use crate::state::{self, PersistedState, StateError, Status};
use crate::stored_spec::StoredSpec;

/// Options of `create` (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// Container id.
    pub id: String,
    /// Bundle directory (holds config.json).
    pub bundle: PathBuf,
    /// Runtime root: state goes to `<root>/<id>`.
    pub root: PathBuf,
    /// Unix socket that receives the pty master when process.terminal.
    pub console_socket: Option<PathBuf>,
    /// Where to write the init's host pid.
    pub pid_file: Option<PathBuf>,
    /// Number of extra fds (3..3+n) handed to the container process.
    pub preserve_fds: u32,
    /// Enter the rootfs with MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Do not give the container its own session keyring.
    pub no_new_keyring: bool,
    /// Fds for the init's stdin/stdout/stderr (each >= 3, or equal to its
    /// target); `None` inherits the caller's. For library callers such as
    /// a fork server that must not touch their own stdio.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
}

/// Undoes a half-made container when `create` fails.
struct Cleanup {
    dir: Option<PathBuf>,
    cgroup: Option<CgroupManager>,
    child: Option<Pid>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.child {
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some(cg) = &self.cgroup {
            if let Err(err) = cg.destroy() {
                tracing::warn!(%err, "removing the cgroup of a failed create");
            }
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Container {
    /// Creates the container: its init runs every set-up step and waits on
    /// the exec FIFO. Must be called from a single-threaded process.
    pub fn create(opts: &CreateOptions) -> Result<Container, ContainerError> {
        let loaded = spec::load_bundle(&opts.bundle)?;
        let terminal = loaded
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        match (terminal, &opts.console_socket) {
            (true, None) => {
                return Err(ContainerError::Invalid(
                    "process.terminal is true: --console-socket is required".into(),
                ))
            }
            (false, Some(_)) => {
                return Err(ContainerError::Invalid(
                    "--console-socket given but process.terminal is false".into(),
                ))
            }
            _ => {}
        }
        let dir = state::create_dir(&opts.root, &opts.id)?;
        let mut cleanup = Cleanup {
            dir: Some(dir.clone()),
            cgroup: None,
            child: None,
        };
        let fifo = dir.join(state::EXEC_FIFO);
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o622)).map_err(|source| {
            ContainerError::Sys {
                op: "mkfifo",
                source,
            }
        })?;
        // mkfifo honours the umask; the init may run as any user.
        std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o622)).map_err(
            |source| ContainerError::Io {
                op: "chmod",
                path: fifo.clone(),
                source,
            },
        )?;

        let linux = loaded.spec.linux().as_ref();
        let cg = CgroupManager::new(linux.and_then(|l| l.cgroups_path().as_deref()), &opts.id)
            .map_err(|source| ContainerError::Cgroup {
                id: opts.id.clone(),
                source: Box::new(source),
            })?;
        cg.create(linux.and_then(|l| l.resources().as_ref()))
            .map_err(|source| ContainerError::Cgroup {
                id: opts.id.clone(),
                source: Box::new(source),
            })?;
        cleanup.cgroup = Some(cg.clone());
        tracing::debug!(id = %opts.id, cgroup = %cg.path().display(), "cgroup created");

        let plan = NamespacePlan::from_spec(&loaded.spec);
        if plan.in_user_ns {
            // See rootfs::mount_targets: inside the user namespace the
            // image's directories are not ours to write.
            crate::rootfs::create_mount_targets(&loaded.spec, &loaded.rootfs)?;
        }
        // Before the guard below: making a user namespace for a mapping may
        // fork a helper, which must not land in the container's pid namespace.
        let idmapped = crate::rootfs::PreparedIdmaps::prepare(&loaded.spec, &loaded.bundle)?;
        let join = cg.prepare_join().map_err(|source| ContainerError::Cgroup {
            id: opts.id.clone(),
            source: Box::new(source),
        })?;
        let (parent, child) = channel::pair()?;
        let cfg = InitConfig {
            id: &opts.id,
            spec: &loaded.spec,
            bundle: &loaded.bundle,
            rootfs: &loaded.rootfs,
            plan: &plan,
            fifo: &fifo,
            preserve_fds: opts.preserve_fds,
            no_new_keyring: opts.no_new_keyring,
            no_pivot: opts.no_pivot,
            stdio: opts.stdio,
            idmapped: (!idmapped.is_empty()).then_some(&idmapped),
            cgroup: Some(&join),
        };
        let guard = ParentNsGuard::enter(
            &plan.join_in_parent,
            plan.new_time,
            linux.and_then(|l| l.time_offsets().as_ref()),
        )?;
        let (cloned, in_v2) = clone_init(plan.clone_flags, &join);
        let pid = match cloned {
            Ok(sys::CloneResult::Child) => {
                drop(parent);
                sys::run_child(|| init::run(&cfg, child))
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
        // The child holds its own copies; attached or not, ours are done.
        drop(idmapped);
        cleanup.child = Some(pid);
        tracing::debug!(id = %opts.id, %pid, flags = ?plan.clone_flags, "init cloned");

        if !in_v2 {
            join.add_v2(pid.as_raw())
                .map_err(|source| ContainerError::Cgroup {
                    id: opts.id.clone(),
                    source: Box::new(source),
                })?;
        }
        let pid = handshake(&parent, pid, &loaded, &plan, opts, &mut cleanup)?;
        drop(parent);

        let start_time = state::proc_stat(pid.as_raw())
            .map(|s| s.start_time)
            .ok_or_else(|| ContainerError::ChildDied("init vanished after set-up".into()))?;
        let persisted = PersistedState {
            id: opts.id.clone(),
            pid: pid.as_raw(),
            pid_start_time: start_time,
            bundle: loaded.bundle.clone(),
            rootfs: loaded.rootfs.clone(),
            cgroup_path: cg.path().to_path_buf(),
            cgroup: Some(cg.clone()),
            created: chrono::Utc::now(),
            annotations: loaded.spec.annotations().clone().unwrap_or_default(),
            namespace_paths: namespaces::paths_of(pid.as_raw()),
            paused: false,
            owner: nix::unistd::geteuid().as_raw(),
            spec: StoredSpec::new(&loaded.spec).map_err(|source| StateError::Parse {
                path: dir.join(crate::state::STATE_FILE),
                source,
            })?,
        };
        persisted.save(&dir)?;
        if let Some(pid_file) = &opts.pid_file {
            write_pid_file(pid_file, pid.as_raw())?;
        }
        cleanup.child = None;
        cleanup.cgroup = None;
        cleanup.dir = None;
        Ok(Container {
            root: opts.root.clone(),
            dir: dir.clone(),
            state: persisted,
        })
    }

    /// Releases the init (it execs the user process), then runs poststart hooks.
    pub fn start(&self) -> Result<(), ContainerError> {
        let status = self.status();
        if status != Status::Created {
            return Err(self.bad_status(status, "start"));
        }
        let fifo_path = self.dir.join(state::EXEC_FIFO);
        let fifo = open(
            &fifo_path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| ContainerError::Io {
            op: "opening",
            path: fifo_path.clone(),
            source: source.into(),
        })?;
        wait_fifo_byte(self, &fifo)?;
        std::fs::remove_file(&fifo_path).map_err(|source| ContainerError::Io {
            op: "removing",
            path: fifo_path.clone(),
            source,
        })?;
        // runtime-spec: a failing poststart hook is logged, not fatal.
        self.run_logged_hooks(
            HookStage::Poststart,
            Some(self.state.pid),
            ContainerState::Running,
        );
        Ok(())
    }
}

/// Reads the init's byte from the exec FIFO, then waits for end-of-file:
/// the init keeps the write end open (close-on-exec) through the
/// startContainer hooks until its execve.
fn wait_fifo_byte(c: &Container, fifo: &OwnedFd) -> Result<(), ContainerError> {
    let mut got_byte = false;
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(0) | Err(nix::Error::EINTR) => {
                if !c.state.init_alive() {
                    return Err(ContainerError::ChildDied("init exited before start".into()));
                }
            }
            Ok(_) => {
                let mut b = [0u8; 1];
                match nix::unistd::read(fifo, &mut b) {
                    Ok(1) => got_byte = true,
                    Ok(_) if got_byte => return Ok(()),
                    Ok(_) => {
                        return Err(ContainerError::ChildDied(
                            "init closed the exec fifo without starting".into(),
                        ))
                    }
                    Err(nix::Error::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
                    Err(source) => {
                        return Err(ContainerError::Sys {
                            op: "reading the exec fifo",
                            source,
                        })
                    }
                }
            }
            Err(source) => {
                return Err(ContainerError::Sys {
                    op: "polling the exec fifo",
                    source,
                })
            }
        }
    }
}

/// Parent side of the init handshake (see `process::init`).
/// Returns the init's host pid (a grandchild when the child had to fork
/// into a pid namespace owned by a joined user namespace).
fn handshake(
    chan: &Channel,
    mut pid: Pid,
    loaded: &LoadedSpec,
    plan: &NamespacePlan,
    opts: &CreateOptions,
    cleanup: &mut Cleanup,
) -> Result<Pid, ContainerError> {
    let spec = &loaded.spec;
    let linux = spec.linux().as_ref();
    if plan.new_user {
        namespaces::write_id_maps(
            pid.as_raw(),
            linux
                .and_then(|l| l.uid_mappings().as_deref())
                .unwrap_or_default(),
            linux
                .and_then(|l| l.gid_mappings().as_deref())
                .unwrap_or_default(),
        )?;
    }
    chan.send(&Msg::Go).map_err(|e| child_gone(e, pid))?;
    loop {
        match chan.recv() {
            Ok(Msg::MountsReady) => {
                tracing::debug!(id = %opts.id, "rootfs mounted");
                run_parent_hooks(&opts.id, spec, &loaded.bundle, pid)?;
                chan.send(&Msg::HooksDone).map_err(|e| child_gone(e, pid))?;
            }
            Ok(Msg::Console(fd)) => {
                let sock = opts.console_socket.as_deref().ok_or_else(|| {
                    ContainerError::Invalid("init sent a pty without a console socket".into())
                })?;
                console::send_to_socket(sock, &fd, "")?;
            }
            Ok(Msg::SeccompListener(fd)) => {
                forward_listener(&opts.id, spec, &loaded.bundle, pid, fd)?
            }
            Ok(Msg::InitPid(init)) if plan.fork_after_unshare => {
                let _ = waitpid(pid, None);
                pid = Pid::from_raw(init);
                cleanup.child = Some(pid);
                chan.send(&Msg::Go).map_err(|e| child_gone(e, pid))?;
            }
            Ok(Msg::Ready) => {
                tracing::debug!(id = %opts.id, "init waits on the exec fifo");
                return Ok(pid);
            }
            Ok(Msg::Error(text)) => return Err(ContainerError::Child(text)),
            Ok(other) => {
                return Err(ContainerError::Channel(channel::ChannelError::Unexpected {
                    got: other,
                    expected: "an init message",
                }))
            }
            Err(e) => return Err(child_gone(e, pid)),
        }
    }
}

/// Clones the init straight into the container's cgroup2 directory when
/// there is one; the bool says whether it is there (else the parent moves
/// it). v1 hierarchies are joined by the init itself (`cgroups::join`).
pub(super) fn clone_init(
    flags: nix::sched::CloneFlags,
    join: &crate::cgroups::CgroupJoin,
) -> (Result<sys::CloneResult, nix::Error>, bool) {
    let Some(dir) = join.v2_dir() else {
        return (sys::clone_fork(flags), true);
    };
    match sys::clone_into_cgroup(flags, dir) {
        Err(err) => {
            // Older kernel (no clone3) or a cgroup the kernel refuses at
            // fork time: the classic clone and cgroup.procs write still work.
            tracing::debug!(%err, "clone3(CLONE_INTO_CGROUP) failed; plain clone");
            (sys::clone_fork(flags), false)
        }
        ok => (ok, true),
    }
}

/// Prefers the child's exit status over a bare channel error.
fn child_gone(err: channel::ChannelError, pid: Pid) -> ContainerError {
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(nix::sys::wait::WaitStatus::StillAlive) | Err(_) => ContainerError::Channel(err),
        Ok(st) => ContainerError::ChildDied(format!("{st:?}")),
    }
}

/// prestart (deprecated but still honoured) and createRuntime, in the runtime namespace.
fn run_parent_hooks(id: &str, spec: &Spec, bundle: &Path, pid: Pid) -> Result<(), ContainerError> {
    let Some(hooks) = spec.hooks().as_ref() else {
        return Ok(());
    };
    let st = hook_state(
        id,
        spec,
        bundle,
        Some(pid.as_raw()),
        ContainerState::Creating,
    );
    for (stage, list) in [
        (HookStage::Prestart, hooks.prestart()),
        (HookStage::CreateRuntime, hooks.create_runtime()),
    ] {
        if let Some(list) = list.as_deref().filter(|l| !l.is_empty()) {
            crate::hooks::run_hooks(stage, list, &st).map_err(|source| ContainerError::Hook {
                stage,
                source: Box::new(source),
            })?;
        }
    }
    Ok(())
}

/// Sends a seccomp notify fd to `linux.seccomp.listenerPath` with the
/// container process state, as runtime-spec describes.
fn forward_listener(
    id: &str,
    spec: &Spec,
    bundle: &Path,
    pid: Pid,
    fd: OwnedFd,
) -> Result<(), ContainerError> {
    let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let Some(path) = seccomp.and_then(|s| s.listener_path().as_ref()) else {
        return Err(ContainerError::Invalid(
            "seccomp profile uses SCMP_ACT_NOTIFY but linux.seccomp.listenerPath is not set".into(),
        ));
    };
    let st = hook_state(
        id,
        spec,
        bundle,
        Some(pid.as_raw()),
        ContainerState::Creating,
    );
    let msg = serde_json::json!({
        "ociVersion": spec.version(),
        "fds": ["seccompFd"],
        "pid": pid.as_raw(),
        "metadata": seccomp.and_then(|s| s.listener_metadata().clone()).unwrap_or_default(),
        "state": st,
    });
    let payload = msg.to_string();
    let stream =
        std::os::unix::net::UnixStream::connect(path).map_err(|source| ContainerError::Io {
            op: "connecting to seccomp listener",
            path: path.clone(),
            source,
        })?;
    let fds = [fd.as_raw_fd()];
    nix::sys::socket::sendmsg::<()>(
        stream.as_raw_fd(),
        &[std::io::IoSlice::new(payload.as_bytes())],
        &[nix::sys::socket::ControlMessage::ScmRights(&fds)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .map_err(|source| ContainerError::Sys {
        op: "sending the seccomp listener fd",
        source,
    })?;
    Ok(())
}

/// Writes the pid file atomically (runc writes it the same way).
pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<(), ContainerError> {
    let tmp = path.with_extension("berth-tmp");
    let io = |op, p: &Path| {
        let p = p.to_path_buf();
        move |source| ContainerError::Io {
            op,
            path: p,
            source,
        }
    };
    std::fs::write(&tmp, pid.to_string()).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("renaming", &tmp))?;
    Ok(())
}
