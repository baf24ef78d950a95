//! The container init: what the cloned child does, in order, until it
//! blocks on the exec FIFO and finally execs the user process.
//!
//! Handshake with the parent (see `channel::Msg`):
//! 1. child waits for `Go` (parent wrote uid/gid maps), then joins its v1
//!    cgroups itself (`cgroups::join`);
//! 2. child mounts the rootfs and sends `MountsReady`; the parent runs the
//!    prestart and createRuntime hooks and answers `HooksDone`;
//! 3. child finishes set-up (pty master sent as `Console`), sends `Ready`
//!    and blocks opening the exec FIFO until `start` opens it for reading.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use oci_spec::runtime::{ContainerState, Hook, LinuxNamespaceType, Spec};

use super::channel::{Channel, Msg};
use super::setup::{self, Finalize};
use super::{console, sys, InitError};
use crate::hooks::HookStage;
use crate::namespaces::{self, NamespacePlan};

/// Everything the init child needs; built by the parent before the clone.
#[derive(Debug)]
pub struct InitConfig<'a> {
    /// Container id.
    pub id: &'a str,
    /// The validated spec.
    pub spec: &'a Spec,
    /// Absolute bundle path.
    pub bundle: &'a Path,
    /// Absolute host rootfs path.
    pub rootfs: &'a Path,
    /// How namespaces are entered.
    pub plan: &'a NamespacePlan,
    /// Host path of the exec FIFO.
    pub fifo: &'a Path,
    /// Extra fds (from 3 up) to pass to the process.
    pub preserve_fds: u32,
    /// Do not create a new session keyring.
    pub no_new_keyring: bool,
    /// Enter the rootfs with MS_MOVE + chroot instead of pivot_root.
    pub no_pivot: bool,
    /// Fds to install as stdin/stdout/stderr (default: inherited).
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
    /// Id-mapped bind trees made by the parent before the clone (the init,
    /// once in its user namespace, may not make them; it only attaches them).
    pub idmapped: Option<&'a crate::rootfs::PreparedIdmaps>,
    /// The container's cgroups, joined by the init itself right after `Go`
    /// (v1; cgroup2 is joined at clone time or by the parent).
    pub cgroup: Option<&'a crate::cgroups::CgroupJoin>,
}

/// Runs the init sequence in the cloned child; never returns.
pub fn run(cfg: &InitConfig<'_>, chan: Channel) -> ! {
    let mut chan = Some(chan);
    let err = match init(cfg, &mut chan) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let text = super::error_chain(&err);
    let reported = chan
        .as_ref()
        .is_some_and(|c| c.send(&Msg::Error(text.clone())).is_ok());
    if !reported {
        // The parent is gone (we are past `Ready`): stderr is all we have.
        tracing::error!(container_id = cfg.id, err = %text, "container init failed");
        eprintln!("berth-runtime init: {text}");
    }
    sys::exit_now(1)
}

fn init(
    cfg: &InitConfig<'_>,
    chan_slot: &mut Option<Channel>,
) -> Result<std::convert::Infallible, InitError> {
    // CVE-2019-5736: until execve this process *is* the host runtime binary.
    // Marking it non-dumpable before it enters any container namespace means
    // processes in the container cannot open /proc/<init>/exe (or ptrace it)
    // to overwrite the host binary. execve of the user process resets it.
    nix::sys::prctl::set_dumpable(false)
        .map_err(|e| InitError::sys("prctl(PR_SET_DUMPABLE)", e))?;
    // Die with `create` while it still supervises us.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| InitError::sys("prctl(PR_SET_PDEATHSIG)", e))?;
    let chan = chan_slot
        .as_ref()
        .ok_or_else(|| InitError::Invalid("init channel missing".into()))?;
    chan.expect(|m| matches!(m, Msg::Go), "Go")?;
    // Still single-threaded, so moving our one thread moves the process.
    if let Some(cg) = cfg.cgroup {
        cg.join_v1_self()
            .map_err(|e| InitError::Cgroup(Box::new(e)))?;
    }

    let plan = cfg.plan;
    if plan.new_user {
        become_root()?;
    }
    enter_namespaces(plan)?;
    if plan.fork_after_unshare {
        // The new pid namespace only applies to children: the real init is
        // a grandchild; we report its host pid and leave.
        match sys::clone_fork(nix::sched::CloneFlags::empty())
            .map_err(|e| InitError::sys("fork into the new pid namespace", e))?
        {
            sys::CloneResult::Parent(pid) => {
                chan.send(&Msg::InitPid(pid.as_raw()))?;
                sys::exit_now(0)
            }
            // No pdeathsig: our parent is the intermediate, which exits now;
            // the channel reaching EOF tells us if `create` dies.
            sys::CloneResult::Child => chan.expect(|m| matches!(m, Msg::Go), "Go")?,
        }
    }
    // /proc is still the host's here, so /proc/self names our host pid,
    // which hooks must see (getpid() answers 1 in a new pid namespace).
    let host_pid = std::fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str().and_then(|s| s.parse::<i32>().ok()));

    // Opened before any mount changes; re-opened for writing via
    // /proc/self/fd once we are in the container (the host path is gone).
    let fifo = open(cfg.fifo, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
        InitError::Io {
            op: "opening",
            path: cfg.fifo.to_path_buf(),
            source: e.into(),
        }
    })?;
    nix::unistd::setsid().map_err(|e| InitError::sys("setsid", e))?;
    set_names(cfg.spec, plan)?;

    crate::rootfs::prepare_rootfs(&crate::rootfs::RootfsConfig {
        spec: cfg.spec,
        rootfs: cfg.rootfs,
        in_user_ns: plan.in_user_ns,
        cgroup_ns: plan.cgroup_ns,
        idmapped: cfg.idmapped,
    })?;
    chan.send(&Msg::MountsReady)?;
    chan.expect(|m| matches!(m, Msg::HooksDone), "HooksDone")?;
    let hooks = cfg.spec.hooks().as_ref();
    run_hooks(
        cfg,
        host_pid,
        HookStage::CreateContainer,
        hooks.and_then(|h| h.create_container().as_deref()),
        ContainerState::Creating,
    )?;

    if cfg.no_pivot {
        crate::rootfs::move_root(cfg.rootfs)?;
    } else {
        crate::rootfs::pivot_root(cfg.rootfs)?;
    }
    let process = cfg
        .spec
        .process()
        .as_ref()
        .ok_or_else(|| InitError::Invalid("process is required".into()))?;
    if process.terminal().unwrap_or(false) {
        let size = process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        let pty = console::open_pty(size)?;
        crate::rootfs::bind_console(Path::new("/"), &pty.slave_path)?;
        console::attach_slave(&pty.slave)?;
        chan.send(&Msg::Console(pty.master))?;
    }
    // Before finish_rootfs: readonlyPaths usually covers /proc/sys.
    if let Some(sysctl) = cfg.spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) {
        crate::sysctl::apply(sysctl)?;
    }
    crate::rootfs::finish_rootfs(cfg.spec)?;
    if !cfg.no_new_keyring {
        join_keyring(cfg.id)?;
    }
    if let Some(p) = cfg
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.personality().as_ref())
    {
        crate::personality::apply(p)?;
    }

    // Library callers hand the process its stdio as fds (CreateOptions.stdio),
    // installed only now so the set-up's own log lines stay out of the
    // container's output (a terminal already has the pty as stdio).
    if let (Some(fds), false) = (cfg.stdio, process.terminal().unwrap_or(false)) {
        sys::install_stdio(fds).map_err(|e| InitError::sys("installing stdio", e))?;
    }
    let fin = Finalize {
        process,
        seccomp: cfg.spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()),
        preserve_fds: cfg.preserve_fds,
    };
    let mut send_listener = |fd: OwnedFd| -> Result<(), InitError> {
        chan.send(&Msg::SeccompListener(fd))?;
        Ok(())
    };
    let pending = setup::before_exec(&fin, &mut send_listener)?;

    // From here on `create` has returned and we outlive it.
    nix::sys::prctl::set_pdeathsig(None)
        .map_err(|e| InitError::sys("prctl(PR_SET_PDEATHSIG)", e))?;
    chan.send(&Msg::Ready)?;
    *chan_slot = None;
    // Kept open (close-on-exec) so `start` sees end-of-file exactly when
    // the user process has been exec'd, and runs poststart only then.
    let _started = wait_for_start(&fifo)?;
    drop(fifo);
    run_hooks(
        cfg,
        host_pid,
        HookStage::StartContainer,
        hooks.and_then(|h| h.start_container().as_deref()),
        ContainerState::Created,
    )?;
    // The parent is gone: listener fds from a deferred (noNewPrivileges)
    // filter cannot be delivered any more.
    let mut late_listener = |_fd: OwnedFd| -> Result<(), InitError> {
        Err(InitError::Invalid(
            "seccomp notify with noNewPrivileges is not supported".into(),
        ))
    };
    setup::exec(&fin, pending, &mut late_listener)
}

/// After the uid/gid maps are written, become root of the new user namespace.
fn become_root() -> Result<(), InitError> {
    let (u, g) = (Uid::from_raw(0), Gid::from_raw(0));
    nix::unistd::setresgid(g, g, g)
        .map_err(|e| InitError::sys("setresgid(0) in user namespace", e))?;
    nix::unistd::setresuid(u, u, u)
        .map_err(|e| InitError::sys("setresuid(0) in user namespace", e))?;
    Ok(())
}

/// Joins the namespaces at `paths` (user first, after those it does not
/// own — see `namespaces::order_joins`), becoming root of a joined user
/// namespace right after entering it. Shared by the init and `exec` children.
pub(super) fn join_namespaces(paths: &[(LinuxNamespaceType, PathBuf)]) -> Result<(), InitError> {
    // Open every file first: after setns(mnt) the paths would resolve in
    // the other mount namespace.
    let joins = paths
        .iter()
        .filter(|(t, p)| !namespaces::is_current(*t, p))
        .map(|(t, p)| namespaces::open_ns(*t, p))
        .collect::<Result<Vec<_>, _>>()?;
    for ns in &namespaces::order_joins(joins) {
        namespaces::join(ns)?;
        if ns.typ == LinuxNamespaceType::User {
            become_root()?;
        }
    }
    Ok(())
}

/// Joins namespaces by path (user first) and unshares the rest.
fn enter_namespaces(plan: &NamespacePlan) -> Result<(), InitError> {
    join_namespaces(&plan.join_in_child)?;
    namespaces::unshare(plan.unshare_flags)?;
    Ok(())
}

fn set_names(spec: &Spec, plan: &NamespacePlan) -> Result<(), InitError> {
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if !plan.new_uts {
            tracing::debug!("hostname set in a joined uts namespace");
        }
        nix::unistd::sethostname(h).map_err(|e| InitError::sys("sethostname", e))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        let c = CString::new(d).map_err(|_| InitError::Invalid("NUL in domainname".into()))?;
        sys::set_domainname(&c).map_err(|e| InitError::sys("setdomainname", e))?;
    }
    Ok(())
}

fn join_keyring(id: &str) -> Result<(), InitError> {
    let name = CString::new(format!("_ses.{id}"))
        .map_err(|_| InitError::Invalid("NUL in container id".into()))?;
    match sys::join_session_keyring(&name) {
        Ok(()) => Ok(()),
        // Kernels without keyrings (or seccomp'ed hosts) run fine without one.
        Err(nix::Error::ENOSYS) => Ok(()),
        Err(e) => Err(InitError::sys("joining a session keyring", e)),
    }
}

/// Blocks until `start` opens the FIFO for reading, then tells it we go on;
/// returns the write end, which the exec closes.
fn wait_for_start(fifo: &OwnedFd) -> Result<OwnedFd, InitError> {
    let path = PathBuf::from(format!("/proc/self/fd/{}", fifo.as_raw_fd()));
    let w = open(&path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(|e| {
        InitError::Io {
            op: "opening exec fifo",
            path: path.clone(),
            source: e.into(),
        }
    })?;
    nix::unistd::write(&w, b"0").map_err(|e| InitError::sys("writing the exec fifo", e))?;
    Ok(w)
}

fn run_hooks(
    cfg: &InitConfig<'_>,
    host_pid: Option<i32>,
    stage: HookStage,
    hooks: Option<&[Hook]>,
    status: ContainerState,
) -> Result<(), InitError> {
    let Some(hooks) = hooks.filter(|h| !h.is_empty()) else {
        return Ok(());
    };
    let state = hook_state(cfg.id, cfg.spec, cfg.bundle, host_pid, status);
    crate::hooks::run_hooks(stage, hooks, &state)?;
    Ok(())
}

/// The runtime-spec state handed to hooks on stdin.
pub fn hook_state(
    id: &str,
    spec: &Spec,
    bundle: &Path,
    pid: Option<i32>,
    status: ContainerState,
) -> oci_spec::runtime::State {
    hook_state_of(
        id,
        spec.version(),
        spec.annotations().clone(),
        bundle,
        pid,
        status,
    )
}

/// [`hook_state`] from the spec's version and annotations only.
pub fn hook_state_of(
    id: &str,
    version: &str,
    annotations: Option<std::collections::HashMap<String, String>>,
    bundle: &Path,
    pid: Option<i32>,
    status: ContainerState,
) -> oci_spec::runtime::State {
    let mut st = oci_spec::runtime::State::default();
    st.set_version(version.to_string());
    st.set_id(id.to_string());
    st.set_status(status);
    st.set_pid(pid);
    st.set_bundle(bundle.to_path_buf());
    st.set_annotations(annotations);
    st
}
