//! The shim binary's actions besides serving: `start` (spawn the detached
//! server and print its address) and `delete` (clean up after a dead
//! shim), plus the containerd-shim [`Shim`] glue for the server itself.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use berth_runtime::container::Container;
use chrono::Utc;
use containerd_shim::api::DeleteResponse;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, ExitSignal, Flags, Shim, StartOpts};
use containerd_shim_protos::shim_sync::create_task;
use containerd_shim_protos::ttrpc::Server;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use sha2::{Digest, Sha256};

use crate::events::{timestamp, Publisher};
use crate::exit::ExitRecord;
use crate::reaper::Reaper;
use crate::service::{Service, DEFAULT_RUNTIME_ROOT};
use crate::task_api::TaskApi;
use crate::{rootfs, sandbox};

/// Runtime id this shim registers as.
pub const RUNTIME_ID: &str = "io.containerd.berth.v2";
/// Directory of shim sockets when berthd starts the shim and its socket
/// path is too long to derive one from (see [`socket_address`]).
pub const BERTH_SOCKET_DIR: &str = "/run/berth/s";

/// Errors of the `start` action.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file or directory operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was attempted.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server process could not be spawned.
    #[error("spawning the shim server: {0}")]
    Spawn(#[source] std::io::Error),
    /// The server did not come up.
    #[error("the shim server did not start listening on {0} (see its log)")]
    NotListening(String),
    /// Required flags are missing.
    #[error("missing -{0}")]
    Missing(&'static str),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StartError + 'a {
    move |source| StartError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether the shim was started by containerd rather than berthd: only
/// containerd passes `-publish-binary`, and its socket is `containerd.sock`.
pub fn started_by_containerd(flags: &Flags) -> bool {
    !flags.publish_binary.is_empty()
        || Path::new(&flags.address)
            .file_name()
            .is_some_and(|n| n == "containerd.sock")
}

/// The shim's socket address (`unix:///...`, never abstract).
pub fn socket_address(flags: &Flags) -> String {
    if started_by_containerd(flags) {
        return containerd_shim::socket_address(&flags.address, &flags.namespace, &flags.id);
    }
    let key = Path::new(&flags.address)
        .join(&flags.namespace)
        .join(&flags.id);
    let digest = Sha256::digest(key.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "unix://{}/{hex}",
        berth_socket_dir(&flags.address).display()
    )
}

/// `<berthd state dir>/s` (the directory of berthd's socket), so daemons
/// with different state dirs never share sockets: `/run/berth/s` for the
/// default `/run/berth/berth.sock`. Falls back to /run/berth/s when the
/// socket path would not fit a sockaddr_un.
fn berth_socket_dir(address: &str) -> PathBuf {
    let addr = Path::new(address.trim_start_matches("unix://"));
    match addr.parent() {
        Some(state) if addr.is_absolute() && state.as_os_str().len() + 3 + 64 < 100 => {
            state.join("s")
        }
        _ => PathBuf::from(BERTH_SOCKET_DIR),
    }
}

/// The `start` action: spawns the detached server (new session) unless
/// one already serves this pod, and returns its address once it listens.
pub fn start(flags: &Flags) -> Result<String, StartError> {
    if flags.id.is_empty() {
        return Err(StartError::Missing("id"));
    }
    if flags.namespace.is_empty() {
        return Err(StartError::Missing("namespace"));
    }
    drain_stdin();

    let address = socket_address(flags);
    let path = PathBuf::from(address.trim_start_matches("unix://"));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        if !started_by_containerd(flags) {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err("chmod", dir))?;
        }
    }
    if UnixStream::connect(&path).is_ok() {
        tracing::info!(%address, "a shim already serves this pod");
        write_address_file(&address)?;
        return Ok(address);
    }
    let _ = std::fs::remove_file(&path);

    let exe = std::env::current_exe().map_err(StartError::Spawn)?;
    let log = open_log()?;
    let mut cmd = Command::new(exe);
    cmd.args([
        "-namespace",
        &flags.namespace,
        "-id",
        &flags.id,
        "-address",
        &flags.address,
        "-socket",
        &address,
    ]);
    if !flags.publish_binary.is_empty() {
        cmd.args(["-publish-binary", &flags.publish_binary]);
    }
    if flags.debug {
        cmd.arg("-debug");
    }
    cmd.env("GLIBC_TUNABLES", server_tunables());
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
    // SAFETY: setsid(2) and close_range(2) are async-signal-safe. The
    // server must not share the caller's session (it outlives berthd or
    // containerd), nor keep fds its caller leaked to us (they would reach
    // every helper and container).
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(StartError::Spawn)?;
    // The server replaces its stdout once it listens: EOF means ready.
    if let Some(mut out) = child.stdout.take() {
        let mut sink = Vec::new();
        let _ = out.read_to_end(&mut sink);
    }
    if UnixStream::connect(&path).is_err() {
        return Err(StartError::NotListening(address));
    }
    write_address_file(&address)?;
    Ok(address)
}

/// glibc keeps the stacks of exited threads for reuse (up to 40 MiB), each
/// with its touched pages; the server's threads come and go (exit
/// handlers, surplus ttrpc workers), and an idle shim would keep them all
/// resident. Tunables are read at start-up only, hence the environment;
/// the caller's other tunables are kept.
fn server_tunables() -> String {
    const NO_STACK_CACHE: &str = "glibc.pthread.stack_cache_size=0";
    match std::env::var("GLIBC_TUNABLES") {
        Ok(t) if !t.is_empty() => format!("{t}:{NO_STACK_CACHE}"),
        _ => NO_STACK_CACHE.to_string(),
    }
}

/// containerd passes runtime options on stdin (nothing in them applies to
/// berth-shim); read what is there without ever blocking on a terminal or
/// on a pipe nobody writes to or closes.
fn drain_stdin() {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return;
    }
    let mut buf = [0u8; 4096];
    let mut total = 0usize;
    while total < (1 << 20) {
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(200u16)) {
            Ok(n) if n > 0 => {}
            _ => return,
        }
        match nix::unistd::read(stdin.as_fd(), &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => total += n,
        }
    }
}

/// containerd-shim's server reads `./address` when it shuts down.
fn write_address_file(address: &str) -> Result<(), StartError> {
    let p = Path::new("address");
    std::fs::write(p, address).map_err(io_err("writing", p))
}

/// Where the server logs: containerd's `log` FIFO in the bundle when there
/// is one, else `shim.log` in the working directory (the pod's dir).
fn open_log() -> Result<std::fs::File, StartError> {
    let fifo = Path::new("log");
    if std::fs::metadata(fifo).is_ok_and(|m| m.file_type().is_fifo()) {
        return std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(fifo)
            .map_err(io_err("opening", fifo));
    }
    let file = Path::new("shim.log");
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(file)
        .map_err(io_err("opening", file))
}

/// The `delete` action: removes what a dead shim left for task `id` in the
/// bundle (the working directory): runtime state and cgroup, rootfs mount,
/// namespace pins.
pub fn delete(id: &str, bundle: &Path, root: &Path) -> DeleteResponse {
    match Container::load(root, id) {
        Ok(c) => {
            if let Err(err) = c.kill(Signal::SIGKILL, true) {
                tracing::debug!(%err, "kill before delete");
            }
            if let Err(err) = c.delete(true) {
                tracing::warn!(%err, container_id = %id, "deleting runtime state");
            }
        }
        Err(err) => {
            tracing::debug!(%err, container_id = %id, "no runtime state");
            let _ = Container::remove_leftovers(root, id);
        }
    }
    if let Err(err) = rootfs::unmount_rootfs(bundle) {
        tracing::warn!(%err, "unmounting the rootfs");
    }
    sandbox::kill_pod_init(bundle);
    sandbox::unpin(bundle);
    let (code, at) = match ExitRecord::read(bundle) {
        Some(r) => (
            r.exit_code,
            chrono::DateTime::parse_from_rfc3339(&r.exited_at)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_else(|_| Utc::now()),
        ),
        None => (128 + Signal::SIGKILL as i32, Utc::now()),
    };
    DeleteResponse {
        pid: 0,
        exit_status: u32::try_from(code).unwrap_or(0),
        exited_at: Some(timestamp(at)).into(),
        ..Default::default()
    }
}

/// Errors of the serving shim's set-up.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A required flag or variable is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A system call failed.
    #[error("{op}: {source}")]
    Sys {
        /// What was attempted.
        op: &'static str,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The client's events service cannot be reached.
    #[error(transparent)]
    Events(crate::events::PublishError),
    /// The ttrpc server failed.
    #[error("{op}: {source}")]
    Ttrpc {
        /// What was attempted.
        op: &'static str,
        /// Underlying error.
        #[source]
        source: containerd_shim::Error,
    },
}

/// Method paths of the Task API as containerd 1.6 names them (task v2);
/// the messages are the same as v3's, which berthd and containerd 2 use.
fn task_methods(api: Arc<TaskApi>) -> TaskMethods {
    let mut methods = create_task(api.clone());
    let v2: Vec<_> = create_task(api)
        .into_iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("/containerd.task.v3.Task/")
                .map(|m| (format!("/containerd.task.v2.Task/{m}"), v))
        })
        .collect();
    methods.extend(v2);
    methods
}

type TaskMethods = std::collections::HashMap<
    String,
    Box<dyn containerd_shim_protos::ttrpc::MethodHandler + Send + Sync>,
>;

/// The server mode (`-socket` given, spawned by `start`): serves the Task
/// API (v3 and v2 method names) until Shutdown.
pub fn serve(flags: &Flags) -> Result<(), ServeError> {
    if flags.socket.is_empty() {
        return Err(ServeError::Missing("-socket"));
    }
    let sys = |op| move |source| ServeError::Sys { op, source };
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) only sets a process flag.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(sys("prctl(PR_SET_CHILD_SUBREAPER)")(
            std::io::Error::last_os_error(),
        ));
    }
    // Survive SIGPIPE (a FIFO reader left: the write fails instead) and
    // SIGTERM/SIGINT (the shim outlives its starter's session and ends
    // through Shutdown or SIGKILL) without ever ignoring them.
    crate::signals::reset(&[Signal::SIGPIPE, Signal::SIGTERM, Signal::SIGINT]);
    let ttrpc_address =
        std::env::var("TTRPC_ADDRESS").map_err(|_| ServeError::Missing("TTRPC_ADDRESS"))?;
    let exit = Arc::new(ExitSignal::default());
    let svc = build_service(&flags.namespace, &ttrpc_address, exit.clone())?;
    // SIGTERM/SIGINT end an idle shim (no task left); one with tasks lives on.
    let term_svc = Arc::clone(&svc);
    crate::signals::on_term(move || {
        let idle = term_svc.shutdown(false);
        tracing::info!(idle, "SIGTERM: exiting only when no task is left");
    })
    .map_err(|source| ServeError::Sys {
        op: "installing the SIGTERM handler",
        source,
    })?;
    let path = flags.socket.trim_start_matches("unix://").to_string();
    let _ = std::fs::remove_file(&path);
    let listener =
        std::os::unix::net::UnixListener::bind(&path).map_err(sys("binding the socket"))?;
    let ttrpc_err = |op| {
        move |e: containerd_shim_protos::ttrpc::Error| ServeError::Ttrpc {
            op,
            source: e.into(),
        }
    };
    use std::os::fd::IntoRawFd;
    // Idle workers per connection: ttrpc's defaults keep 3 (up to 5) per
    // connection parked, each a thread with its own touched stack in every
    // shim. Two idle ones still let a long Wait run beside other calls (a
    // new worker is started whenever fewer than one is idle).
    let mut server = Server::new()
        .set_thread_count_min(1)
        .set_thread_count_default(2)
        .set_thread_count_max(3)
        .add_listener(listener.into_raw_fd())
        .map_err(ttrpc_err("adding the listener"))?
        .register_service(task_methods(Arc::new(TaskApi::new(svc))));
    server.start().map_err(ttrpc_err("starting the server"))?;
    // Tell `start` we listen: its pipe on our stdout reaches EOF.
    // SAFETY: dup2 of our own stderr onto our own stdout.
    unsafe {
        libc::dup2(libc::STDERR_FILENO, libc::STDOUT_FILENO);
    }
    tracing::info!(socket = %path, "serving");
    exit.wait();
    tracing::info!("shutting down");
    server.shutdown();
    let _ = std::fs::remove_file(&path);
    Ok(())
}

fn build_service(
    namespace: &str,
    events_address: &str,
    exit: Arc<ExitSignal>,
) -> Result<Arc<Service>, ServeError> {
    let publisher = Publisher::connect(events_address, namespace).map_err(ServeError::Events)?;
    let reaper = Reaper::start().map_err(|source| ServeError::Sys {
        op: "starting the reaper thread",
        source,
    })?;
    Ok(Service::new(
        reaper,
        PathBuf::from(DEFAULT_RUNTIME_ROOT),
        Arc::new(publisher),
        Box::new(move || exit.signal()),
    ))
}

/// containerd-shim glue for the `delete` action (containerd-shim's
/// bootstrap parses it and prints the reply). Serving does not go through
/// it: containerd-shim registers the Task API under its v3 name only,
/// which containerd 1.6 does not speak.
pub struct BerthShim {
    id: String,
    namespace: String,
    exit: Arc<ExitSignal>,
}

/// The shim configuration: own logging, own reaper (the crate's would
/// steal helper exits), subreaper on.
pub fn config() -> Config {
    Config {
        no_setup_logger: true,
        no_reaper: true,
        no_sub_reaper: false,
        ..Default::default()
    }
}

impl Shim for BerthShim {
    type T = TaskApi;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        BerthShim {
            id: args.id.clone(),
            namespace: args.namespace.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    fn start_shim(&mut self, _opts: StartOpts) -> containerd_shim::Result<String> {
        // main() handles `start` itself (plain address reply, own socket dir).
        Err(containerd_shim::Error::InvalidArgument(
            "start is handled before containerd-shim's bootstrap".into(),
        ))
    }

    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        let bundle = std::env::current_dir()
            .map_err(|e| containerd_shim::Error::InvalidArgument(format!("cwd: {e}")))?;
        Ok(delete(&self.id, &bundle, Path::new(DEFAULT_RUNTIME_ROOT)))
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, _publisher: RemotePublisher) -> TaskApi {
        // Only reached if containerd-shim were to serve; `serve` does that.
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        match build_service(&self.namespace, &address, Arc::clone(&self.exit)) {
            Ok(svc) => TaskApi::new(svc),
            Err(err) => {
                tracing::error!(%err, "building the task service");
                std::process::exit(1);
            }
        }
    }
}

/// Prints the start reply.
pub fn print_address(address: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(address.as_bytes())?;
    out.flush()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn flags(address: &str, publish: &str) -> Flags {
        Flags {
            namespace: "berth".into(),
            id: "pod1".into(),
            address: address.into(),
            publish_binary: publish.into(),
            ..Default::default()
        }
    }

    #[test]
    fn socket_dir_depends_on_the_caller() {
        let b = socket_address(&flags("/run/berth/berth.sock", ""));
        assert!(b.starts_with("unix:///run/berth/s/"), "{b}");
        assert_eq!(b.len(), "unix:///run/berth/s/".len() + 64);
        // Another berthd state dir, another socket dir.
        let o = socket_address(&flags("/run/berth-critest/berth.sock", ""));
        assert!(o.starts_with("unix:///run/berth-critest/s/"), "{o}");
        // Too long for a unix socket path: the default dir.
        let deep = format!("/{}/berth.sock", "d".repeat(80));
        assert!(socket_address(&flags(&deep, "")).starts_with("unix:///run/berth/s/"));
        let c = socket_address(&flags(
            "/run/containerd/containerd.sock",
            "/usr/bin/containerd",
        ));
        assert!(c.starts_with("unix:///run/containerd/s/"), "{c}");
        // Unique per pod.
        let mut other = flags("/run/berth/berth.sock", "");
        other.id = "pod2".into();
        assert_ne!(socket_address(&other), b);
    }
}
