//! The pod's namespaces, made without a pause image: a helper forks a
//! child that joins the pod's network namespace, unshares user (with the
//! pod's id mappings), ipc and uts (setting the hostname) and, when the pod
//! shares one PID namespace, forks the pod init (pid 1 there). The helper
//! pins every new namespace by bind-mounting `/proc/<pid>/ns/<type>` onto
//! `<bundle>/ns/<type>`, where containers join them by path.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType};
use serde::{Deserialize, Serialize};

use crate::bundle::BundleConfig;

/// First argument of the pod init process.
pub const POD_INIT_ARG: &str = "__berth_pod_init";

/// Namespace kinds the shim creates and pins, in pin order.
const PINNED: [&str; 5] = ["user", "net", "ipc", "uts", "pid"];

/// What the sandbox task asks for (decoded from its config.json).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxRequest {
    /// The bundle; pins go to `<bundle>/ns/`.
    pub bundle: PathBuf,
    /// Pinned network namespace to join (None: host network, or `net`).
    pub netns: Option<PathBuf>,
    /// New network namespace (owned by the pod's user namespace when there
    /// is one), pinned at `<bundle>/ns/net` with loopback up; the client
    /// runs CNI on that path after Create.
    pub net: bool,
    /// New IPC namespace.
    pub ipc: bool,
    /// New UTS namespace.
    pub uts: bool,
    /// New PID namespace with a pod init.
    pub pid: bool,
    /// New user namespace with these (uid, gid) mappings.
    pub user: Option<(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>)>,
    /// Hostname for the new UTS namespace.
    pub hostname: Option<String>,
}

/// Errors of sandbox namespace handling.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// A syscall failed.
    #[error("{op}: {source}")]
    Sys {
        /// What was attempted.
        op: String,
        /// Errno.
        #[source]
        source: nix::Error,
    },
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The namespace child reported a failure.
    #[error("pod namespace set-up: {0}")]
    Child(String),
    /// A namespace in the spec is not supported for pods.
    #[error("invalid sandbox spec: {0}")]
    Invalid(String),
}

fn sys(op: impl Into<String>) -> impl FnOnce(nix::Error) -> SandboxError {
    let op = op.into();
    move |source| SandboxError::Sys { op, source }
}

impl SandboxRequest {
    /// Reads the pod's namespace wishes from its OCI spec.
    pub fn from_spec(bundle: &Path, spec: &BundleConfig) -> Result<SandboxRequest, SandboxError> {
        let mut req = SandboxRequest {
            bundle: bundle.to_path_buf(),
            hostname: spec.hostname.clone().filter(|h| !h.is_empty()),
            ..Default::default()
        };
        let Some(linux) = &spec.linux else {
            return Ok(req);
        };
        for ns in spec.namespaces() {
            let path = ns.path().clone();
            match (ns.typ(), path) {
                (LinuxNamespaceType::Network, Some(p)) => req.netns = Some(p),
                (LinuxNamespaceType::Network, None) => req.net = true,
                (LinuxNamespaceType::Ipc, None) => req.ipc = true,
                (LinuxNamespaceType::Uts, None) => req.uts = true,
                (LinuxNamespaceType::Pid, None) => req.pid = true,
                (LinuxNamespaceType::User, None) => {
                    req.user = Some((
                        linux.uid_mappings.clone().unwrap_or_default(),
                        linux.gid_mappings.clone().unwrap_or_default(),
                    ))
                }
                (LinuxNamespaceType::Mount | LinuxNamespaceType::Cgroup, _) => {}
                (t, Some(p)) => {
                    return Err(SandboxError::Invalid(format!(
                        "namespace {t:?} with path {} (only network may be joined)",
                        p.display()
                    )))
                }
                (t, None) => {
                    return Err(SandboxError::Invalid(format!(
                        "namespace {t:?} is not supported for pods"
                    )))
                }
            }
        }
        if req.hostname.is_some() && !req.uts {
            req.hostname = None;
        }
        Ok(req)
    }

    /// Whether anything has to be created at all.
    pub fn needs_helper(&self) -> bool {
        self.ipc || self.uts || self.pid || self.net || self.user.is_some()
    }
}

/// `<bundle>/ns`.
pub fn ns_dir(bundle: &Path) -> PathBuf {
    bundle.join("ns")
}

/// Runs in the single-threaded helper: creates and pins the namespaces.
/// Returns the pod init's host pid when a PID namespace was made.
pub fn create_namespaces(req: &SandboxRequest) -> Result<Option<i32>, SandboxError> {
    let dir = ns_dir(&req.bundle);
    std::fs::create_dir_all(&dir).map_err(|source| SandboxError::Io {
        op: "creating",
        path: dir.clone(),
        source,
    })?;
    let netns = match &req.netns {
        Some(p) => Some(std::fs::File::open(p).map_err(|source| SandboxError::Io {
            op: "opening netns",
            path: p.clone(),
            source,
        })?),
        None => None,
    };
    let (to_child_r, to_child_w) = nix::unistd::pipe().map_err(sys("pipe"))?;
    let (from_child_r, from_child_w) = nix::unistd::pipe().map_err(sys("pipe"))?;
    // SAFETY: the helper process is single-threaded, so the child may
    // allocate and use any library function.
    let child = match unsafe { fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(to_child_w);
            drop(from_child_r);
            let code = ns_child(
                req,
                netns.as_ref().map(|f| f.as_fd()),
                to_child_r,
                from_child_w,
            );
            std::process::exit(code);
        }
        ForkResult::Parent { child } => child,
    };
    drop(to_child_r);
    drop(from_child_w);
    let mut to_child = std::fs::File::from(to_child_w);
    let mut from_child = BufReader::new(std::fs::File::from(from_child_r));
    let result = parent_side(req, child, &mut to_child, &mut from_child);
    drop(to_child);
    let _ = nix::sys::wait::waitpid(child, None);
    if result.is_err() {
        unpin(&req.bundle);
    }
    result
}

fn parent_side(
    req: &SandboxRequest,
    child: Pid,
    to_child: &mut std::fs::File,
    from_child: &mut BufReader<std::fs::File>,
) -> Result<Option<i32>, SandboxError> {
    let mut line = String::new();
    let mut read_line = |line: &mut String| -> Result<String, SandboxError> {
        line.clear();
        from_child
            .read_line(line)
            .map_err(|source| SandboxError::Io {
                op: "reading from",
                path: "the namespace child".into(),
                source,
            })?;
        let l = line.trim().to_string();
        match l.strip_prefix("err ") {
            Some(msg) => Err(SandboxError::Child(msg.to_string())),
            None if l.is_empty() => Err(SandboxError::Child("exited without a word".into())),
            None => Ok(l),
        }
    };
    if let Some((uids, gids)) = &req.user {
        read_line(&mut line)?;
        berth_runtime::namespaces::write_id_maps(child.as_raw(), uids, gids)
            .map_err(|e| SandboxError::Child(format!("writing id maps: {e}")))?;
        send(to_child, b"maps\n")?;
    }
    let done = read_line(&mut line)?;
    let init: i32 = done
        .strip_prefix("ok ")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| SandboxError::Child(format!("unexpected message {done:?}")))?;
    let dir = ns_dir(&req.bundle);
    for name in PINNED {
        let wanted = match name {
            "user" => req.user.is_some(),
            "net" => req.net,
            "ipc" => req.ipc,
            "uts" => req.uts,
            _ => req.pid,
        };
        if !wanted {
            continue;
        }
        let pid = if name == "pid" { init } else { child.as_raw() };
        pin(&format!("/proc/{pid}/ns/{name}"), &dir.join(name))?;
    }
    send(to_child, b"pinned\n")?;
    if req.pid {
        record_pod_init(&dir, init)?;
    }
    Ok(req.pid.then_some(init))
}

fn send(f: &mut std::fs::File, msg: &[u8]) -> Result<(), SandboxError> {
    f.write_all(msg).map_err(|source| SandboxError::Io {
        op: "writing to",
        path: "the namespace child".into(),
        source,
    })
}

/// Bind-mounts a namespace file onto `target` (created empty first).
fn pin(source: &str, target: &Path) -> Result<(), SandboxError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o444)
        .open(target)
        .map_err(|source| SandboxError::Io {
            op: "creating pin",
            path: target.to_path_buf(),
            source,
        })?;
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(sys(format!(
        "bind-mounting {source} onto {}",
        target.display()
    )))
}

/// File next to the pins naming the pod init: `<pid> <start time>`, so a
/// `delete` after the shim died can stop it (and not a reused pid).
const POD_INIT_FILE: &str = "pod-init";

fn record_pod_init(dir: &Path, pid: i32) -> Result<(), SandboxError> {
    let start = berth_runtime::state::proc_stat(pid)
        .map(|s| s.start_time)
        .ok_or_else(|| SandboxError::Child(format!("pod init {pid} vanished")))?;
    let path = dir.join(POD_INIT_FILE);
    std::fs::write(&path, format!("{pid} {start}")).map_err(|source| SandboxError::Io {
        op: "writing",
        path,
        source,
    })
}

/// SIGKILLs the pod init recorded under `<bundle>/ns` if it still runs
/// (for the `delete` action after the shim died).
pub fn kill_pod_init(bundle: &Path) {
    let Ok(text) = std::fs::read_to_string(ns_dir(bundle).join(POD_INIT_FILE)) else {
        return;
    };
    let mut it = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(start))) = (it.next(), it.next()) else {
        return;
    };
    let Ok(pid) = i32::try_from(pid) else { return };
    if berth_runtime::state::proc_stat(pid).is_some_and(|s| s.start_time == start) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Unmounts and removes every pin under `<bundle>/ns` (best effort, idempotent).
pub fn unpin(bundle: &Path) {
    let dir = ns_dir(bundle);
    let _ = std::fs::remove_file(dir.join(POD_INIT_FILE));
    for name in PINNED {
        let p = dir.join(name);
        if !p.exists() {
            continue;
        }
        match umount2(&p, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(err) => tracing::warn!(path = %p.display(), %err, "unpinning a namespace"),
        }
        let _ = std::fs::remove_file(&p);
    }
    let _ = std::fs::remove_dir(&dir);
}

/// The forked namespace child. Writes `ok <pod init pid or 0>` or `err <msg>`.
fn ns_child(
    req: &SandboxRequest,
    netns: Option<std::os::fd::BorrowedFd<'_>>,
    to_child: OwnedFd,
    from_child: OwnedFd,
) -> i32 {
    let mut out = std::fs::File::from(from_child);
    let mut input = BufReader::new(std::fs::File::from(to_child));
    let result = (|| -> Result<i32, String> {
        if let Some(fd) = netns {
            // Before the user namespace: joining needs CAP_SYS_ADMIN over
            // the netns's owner, the host user namespace.
            setns(fd, CloneFlags::CLONE_NEWNET).map_err(|e| format!("joining the netns: {e}"))?;
        }
        if req.user.is_some() {
            unshare(CloneFlags::CLONE_NEWUSER).map_err(|e| format!("unshare(user): {e}"))?;
            out.write_all(b"user\n").map_err(|e| e.to_string())?;
            let mut l = String::new();
            input.read_line(&mut l).map_err(|e| e.to_string())?;
            if l.trim() != "maps" {
                return Err("parent did not write the id maps".into());
            }
            // Become root of the new namespace for sethostname and unshare.
            nix::unistd::setresgid(0.into(), 0.into(), 0.into())
                .map_err(|e| format!("setresgid in the pod user namespace: {e}"))?;
            nix::unistd::setresuid(0.into(), 0.into(), 0.into())
                .map_err(|e| format!("setresuid in the pod user namespace: {e}"))?;
        }
        let mut flags = CloneFlags::empty();
        if req.ipc {
            flags |= CloneFlags::CLONE_NEWIPC;
        }
        if req.uts {
            flags |= CloneFlags::CLONE_NEWUTS;
        }
        if req.pid {
            flags |= CloneFlags::CLONE_NEWPID;
        }
        if req.net {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        if !flags.is_empty() {
            unshare(flags).map_err(|e| format!("unshare({flags:?}): {e}"))?;
        }
        if req.net {
            loopback_up().map_err(|e| format!("bringing lo up: {e}"))?;
        }
        if let Some(h) = &req.hostname {
            nix::unistd::sethostname(h).map_err(|e| format!("sethostname({h}): {e}"))?;
        }
        if !req.pid {
            return Ok(0);
        }
        // SAFETY: this process is single-threaded (forked from the helper).
        match unsafe { fork() }.map_err(|e| format!("fork of the pod init: {e}"))? {
            ForkResult::Child => {
                exec_pod_init();
            }
            ForkResult::Parent { child } => Ok(child.as_raw()),
        }
    })();
    let msg = match result {
        Ok(pid) => format!("ok {pid}\n"),
        Err(e) => format!("err {}\n", e.replace('\n', " ")),
    };
    if out.write_all(msg.as_bytes()).is_err() {
        return 1;
    }
    // Stay alive (keeping the namespaces) until the parent pinned them.
    let mut l = String::new();
    let _ = input.read_line(&mut l);
    0
}

/// Sets IFF_UP on `lo` of the current network namespace.
fn loopback_up() -> Result<(), std::io::Error> {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: plain socket(2); the fd is owned right away.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own
    // for the duration of each call.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Pod init side of the fork: plain stdio, then exec the pod init.
fn exec_pod_init() -> ! {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 onto stdin/stdout; the helper's reply pipe on
        // stdout must not be kept open by the long-lived pod init.
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new("/proc/self/exe")
        .arg(POD_INIT_ARG)
        .exec();
    eprintln!("berth-shim: exec of the pod init failed: {err}");
    std::process::exit(127);
}

/// Main of the pod init (pid 1 of the pod's PID namespace): reaps every
/// zombie, exits 0 on SIGTERM/SIGINT. A handler is installed for those
/// signals because a namespace init ignores signals it has no handler for.
pub fn pod_init_main() -> std::process::ExitCode {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    extern "C" fn noop(_: libc::c_int) {}
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        set.add(s);
        let act = SigAction::new(SigHandler::Handler(noop), SaFlags::empty(), SigSet::empty());
        // SAFETY: the handler is a no-op, trivially async-signal-safe.
        if let Err(e) = unsafe { sigaction(s, &act) } {
            eprintln!("berth-shim pod init: sigaction: {e}");
        }
    }
    if let Err(e) = set.thread_block() {
        eprintln!("berth-shim pod init: sigprocmask: {e}");
        return std::process::ExitCode::FAILURE;
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                while let Ok(st) = nix::sys::wait::waitpid(
                    Pid::from_raw(-1),
                    Some(nix::sys::wait::WaitPidFlag::WNOHANG),
                ) {
                    if st == nix::sys::wait::WaitStatus::StillAlive {
                        break;
                    }
                }
            }
            Ok(_) => return std::process::ExitCode::SUCCESS,
            Err(_) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(json: &str) -> BundleConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn request_from_spec() {
        let s = spec(
            r#"{"ociVersion":"1.0.2","hostname":"pod1","linux":{"namespaces":[
            {"type":"network","path":"/run/berth/netns/p"},{"type":"ipc"},{"type":"uts"},
            {"type":"pid"},{"type":"mount"}]}}"#,
        );
        let r = SandboxRequest::from_spec(Path::new("/b"), &s).unwrap();
        assert_eq!(r.netns.as_deref(), Some(Path::new("/run/berth/netns/p")));
        assert!(r.ipc && r.uts && r.pid && r.user.is_none());
        assert_eq!(r.hostname.as_deref(), Some("pod1"));
        assert!(r.needs_helper());
        // host namespaces: nothing to create, hostname ignored without uts.
        let s = spec(r#"{"ociVersion":"1.0.2","hostname":"x","linux":{"namespaces":[]}}"#);
        let r = SandboxRequest::from_spec(Path::new("/b"), &s).unwrap();
        assert!(!r.needs_helper());
        assert_eq!(r.hostname, None);
        // network without a path: the shim makes (and pins) a new one.
        let s = spec(r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"network"}]}}"#);
        let r = SandboxRequest::from_spec(Path::new("/b"), &s).unwrap();
        assert!(r.net && r.netns.is_none() && r.needs_helper());
        // joining an ipc namespace by path is not a pod's business.
        let s =
            spec(r#"{"ociVersion":"1.0.2","linux":{"namespaces":[{"type":"ipc","path":"/x"}]}}"#);
        assert!(SandboxRequest::from_spec(Path::new("/b"), &s).is_err());
    }
}
