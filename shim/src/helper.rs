//! Short-lived single-threaded helpers: the shim runs `berth-shim-helper
//! __berth_helper` (installed beside the shim) for every operation that
//! clones a process with the berth-runtime library, because the library's
//! clone(2) child allocates and must not be forked from the multi-threaded
//! ttrpc server, and so that the long-lived server does not map the
//! container-creation code. The request goes in as JSON on the helper's stdin, the reply
//! comes back as JSON on its stdout, and the container's stdio are the
//! helper's fds 3, 4 and 5. The helper exits once the process it made is
//! running; that process is then reparented to the shim (a subreaper).

use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use berth_runtime::container::{Container, ContainerError, CreateOptions, ExecOptions};
use oci_spec::runtime::Process;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::reaper::Reaper;
use crate::sandbox::{self, SandboxRequest};

/// First argument that turns the binary into a helper.
pub const HELPER_ARG: &str = "__berth_helper";

/// File name of the helper binary, looked up beside the shim's own.
pub const HELPER_BINARY: &str = "berth-shim-helper";

/// Fds the container's stdin/stdout/stderr sit on in the helper.
const STDIO_FDS: [i32; 3] = [3, 4, 5];

/// What a helper is asked to do.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// `Container::create` (the init then waits for `start`).
    Create {
        /// Container id.
        id: String,
        /// Bundle directory.
        bundle: PathBuf,
        /// berth-runtime state root.
        root: PathBuf,
        /// Receives the pty master when the process has a terminal.
        console_socket: Option<PathBuf>,
    },
    /// `Container::exec`.
    Exec {
        /// Container id.
        id: String,
        /// berth-runtime state root.
        root: PathBuf,
        /// The process to run: its runtime-spec JSON, parsed here in the
        /// helper (the long-lived server does not link the full parser).
        process: Box<RawValue>,
        /// Whether it gets a terminal (overrides the spec's).
        terminal: bool,
        /// Receives the pty master when the process has a terminal.
        console_socket: Option<PathBuf>,
    },
    /// Create and pin the pod's namespaces.
    Sandbox(SandboxRequest),
}

/// Why a helper failed, so the shim can pick a status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailKind {
    /// The request itself is wrong (bad spec, bad option).
    Invalid,
    /// The target is in the wrong state (not running, ...).
    Precondition,
    /// Anything else.
    Internal,
}

/// A helper's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// Success: the host pid of the process made (0: none).
    Pid(i32),
    /// Failure with a message.
    Failed {
        /// Category.
        kind: FailKind,
        /// Human-readable error chain.
        message: String,
    },
}

/// Errors of running a helper (not the helper's own failure, see [`Reply`]).
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// Spawning the helper binary failed.
    #[error("spawning {}: {source} (install {HELPER_BINARY} beside berth-shim)", path.display())]
    Spawn {
        /// The helper binary.
        path: PathBuf,
        /// Errno.
        #[source]
        source: std::io::Error,
    },
    /// Duplicating a stdio fd for the helper failed.
    #[error("duplicating stdio fd {fd} for the helper: {source}")]
    Dup {
        /// The fd.
        fd: i32,
        /// Errno.
        #[source]
        source: nix::Error,
    },
    /// Talking to the helper over its stdin/stdout failed.
    #[error("helper i/o: {0}")]
    Io(#[source] std::io::Error),
    /// The helper's reply was not JSON (it crashed: exit code given).
    #[error("helper exited with code {code} without a valid reply ({reply:?})")]
    NoReply {
        /// Helper exit code.
        code: i32,
        /// What it printed.
        reply: String,
    },
    /// Encoding the request.
    #[error("encoding the helper request: {0}")]
    Encode(#[source] serde_json::Error),
}

/// Runs one helper and returns its reply. `stdio` become the container's
/// stdin/stdout/stderr (helper fds 3, 4, 5); `None` gives it /dev/null.
pub fn run(
    reaper: &Reaper,
    req: &Request,
    stdio: Option<[BorrowedFd<'_>; 3]>,
) -> Result<Reply, HelperError> {
    let payload = serde_json::to_vec(req).map_err(HelperError::Encode)?;
    // Copies above the target range so the dup2 calls cannot clobber
    // each other in the child.
    let mut high: Vec<OwnedFd> = Vec::new();
    if let Some(fds) = stdio {
        for fd in fds {
            high.push(dup_high(fd)?);
        }
    }
    let raw: Vec<i32> = high.iter().map(AsRawFd::as_raw_fd).collect();
    let path = binary();
    let mut cmd = Command::new(&path);
    cmd.arg(HELPER_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if !raw.is_empty() {
        let raw = raw.clone();
        // SAFETY: the closure only calls dup2(2), which is async-signal-safe,
        // between fork and exec; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                for (src, dst) in raw.iter().zip(STDIO_FDS) {
                    if libc::dup2(*src, dst) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let since = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|source| HelperError::Spawn { path, source })?;
    reaper.child_spawned();
    drop(high);
    let pid = i32::try_from(child.id()).unwrap_or(i32::MAX);
    let io_result = (|| {
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(&payload)?;
        }
        // One line, not EOF: the process the helper cloned inherits the
        // write end and keeps it until its own execve.
        let mut out = String::new();
        if let Some(stdout) = child.stdout.take() {
            std::io::BufReader::new(stdout).read_line(&mut out)?;
        }
        Ok(out)
    })();
    // A reply is the helper's last act: its exit is left to the reaper
    // (create does not wait for the helper's teardown). Without one, its
    // exit code is what explains the failure.
    if let Ok(Ok(reply)) = io_result
        .as_ref()
        .map(|out| serde_json::from_str::<Reply>(out.trim()))
    {
        reaper.on_exit(pid, since, Box::new(|_| {}));
        return Ok(reply);
    }
    // Never child.wait(): the reaper owns every waitpid.
    let code = reaper.wait(pid, since);
    let out = io_result.map_err(HelperError::Io)?;
    serde_json::from_str(out.trim()).map_err(|_| HelperError::NoReply { code, reply: out })
}

/// `berth-shim-helper` in the directory of the running shim's executable
/// (symlinks such as `containerd-shim-berth-v2` resolved).
pub fn binary() -> PathBuf {
    static PATH: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join(HELPER_BINARY)))
            .unwrap_or_else(|| PathBuf::from(HELPER_BINARY))
    })
    .clone()
}

fn dup_high(fd: BorrowedFd<'_>) -> Result<OwnedFd, HelperError> {
    let raw =
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10)).map_err(|source| {
            HelperError::Dup {
                fd: fd.as_raw_fd(),
                source,
            }
        })?;
    // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor nobody else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) })
}

/// Entry point of the helper process (`berth-shim __berth_helper`).
pub fn main() -> std::process::ExitCode {
    let mut input = String::new();
    let reply = match std::io::stdin().read_to_string(&mut input) {
        Err(e) => Reply::Failed {
            kind: FailKind::Internal,
            message: format!("reading the request: {e}"),
        },
        Ok(_) => match serde_json::from_str::<Request>(&input) {
            Ok(req) => handle(req),
            Err(e) => Reply::Failed {
                kind: FailKind::Invalid,
                message: format!("decoding the request: {e}"),
            },
        },
    };
    let mut text = serde_json::to_string(&reply).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    let mut stdout = std::io::stdout();
    if stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

fn has_stdio() -> bool {
    STDIO_FDS
        .iter()
        .all(|fd| nix::fcntl::fcntl(fd_ref(*fd), nix::fcntl::FcntlArg::F_GETFD).is_ok())
}

fn fd_ref(fd: i32) -> BorrowedFd<'static> {
    // SAFETY: only used for F_GETFD probes of fds 3-5, which the helper
    // never closes while the probe runs (the helper is single-threaded).
    unsafe { BorrowedFd::borrow_raw(fd) }
}

fn handle(req: Request) -> Reply {
    let stdio = has_stdio().then_some(STDIO_FDS);
    tracing::debug!(?stdio, "helper stdio");
    match req {
        Request::Create {
            id,
            bundle,
            root,
            console_socket,
        } => {
            let opts = CreateOptions {
                id,
                bundle,
                root,
                console_socket,
                stdio,
                ..Default::default()
            };
            match Container::create(&opts) {
                Ok(c) => Reply::Pid(c.pid()),
                Err(e) => failed(&e),
            }
        }
        Request::Exec {
            id,
            root,
            process,
            terminal,
            console_socket,
        } => {
            let mut process: Process = match serde_json::from_str(process.get()) {
                Ok(p) => p,
                Err(e) => {
                    return Reply::Failed {
                        kind: FailKind::Invalid,
                        message: format!("{id}: process spec: {e}"),
                    }
                }
            };
            process.set_terminal(Some(terminal));
            let c = match Container::load(&root, &id) {
                Ok(c) => c,
                Err(e) => return failed(&e),
            };
            let opts = ExecOptions {
                process,
                console_socket,
                pid_file: None,
                preserve_fds: 0,
                stdio,
            };
            match c.exec(&opts) {
                Ok(p) => Reply::Pid(p.pid),
                Err(e) => failed(&e),
            }
        }
        Request::Sandbox(req) => match sandbox::create_namespaces(&req) {
            Ok(pid) => Reply::Pid(pid.unwrap_or(0)),
            Err(e) => Reply::Failed {
                kind: FailKind::Internal,
                message: error_chain(&e),
            },
        },
    }
}

fn failed(e: &ContainerError) -> Reply {
    let kind = match e {
        ContainerError::BadStatus { .. } | ContainerError::NotRunning { .. } => {
            FailKind::Precondition
        }
        ContainerError::Invalid(_) | ContainerError::Spec(_) => FailKind::Invalid,
        _ => FailKind::Internal,
    };
    Reply::Failed {
        kind,
        message: error_chain(e),
    }
}

/// `err: source: source...` on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let text = src.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = src.source();
    }
    s
}
