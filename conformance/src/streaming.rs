//! Streaming (exec / attach / port-forward) helpers for the end-to-end
//! tests and `bench-streaming`: ask the CRI for a URL, then drive it with
//! `berth_streaming::client` over SPDY or WebSocket, collecting output.

use std::pin::Pin;

use berth_proto::cri;
use berth_streaming::client::{self, ClientError, ExecIo, ExitStatus, Transport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tonic::Status;

use crate::client::Cri;

/// Errors of a streaming session driven by the tests.
#[derive(Debug, thiserror::Error)]
pub enum StreamingTestError {
    /// The CRI call for the URL failed.
    #[error("CRI {rpc} for {id}")]
    Cri {
        /// The RPC.
        rpc: &'static str,
        /// Container or pod id.
        id: String,
        /// The gRPC status.
        #[source]
        source: Status,
    },
    /// The streaming client failed.
    #[error("streaming session at {url}")]
    Client {
        /// The URL.
        url: String,
        /// The client's error.
        #[source]
        source: ClientError,
    },
    /// Collecting output failed.
    #[error("reading the session's {what}")]
    Io {
        /// Which output.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Which streams a session asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Streams {
    /// Send stdin.
    pub stdin: bool,
    /// Receive stdout.
    pub stdout: bool,
    /// Receive stderr.
    pub stderr: bool,
    /// Allocate a terminal.
    pub tty: bool,
}

impl Streams {
    /// stdout and stderr, no stdin, no tty.
    pub const OUTPUT: Streams = Streams {
        stdin: false,
        stdout: true,
        stderr: true,
        tty: false,
    };
    /// stdin, stdout and stderr, no tty.
    pub const ALL: Streams = Streams {
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
}

/// `Exec`: the URL for `cmd` in container `id`.
pub async fn exec_url(
    c: &Cri,
    id: &str,
    cmd: &[&str],
    s: Streams,
) -> Result<String, StreamingTestError> {
    let req = cri::ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty: s.tty,
        stdin: s.stdin,
        stdout: s.stdout,
        stderr: s.stderr,
    };
    let r = c.rt.clone().exec(req).await;
    let r = r.map_err(|source| StreamingTestError::Cri {
        rpc: "Exec",
        id: id.into(),
        source,
    })?;
    Ok(r.into_inner().url)
}

/// `Attach`: the URL for container `id`'s stdio.
pub async fn attach_url(c: &Cri, id: &str, s: Streams) -> Result<String, StreamingTestError> {
    let req = cri::AttachRequest {
        container_id: id.into(),
        stdin: s.stdin,
        tty: s.tty,
        stdout: s.stdout,
        stderr: s.stderr,
    };
    let r = c.rt.clone().attach(req).await;
    let r = r.map_err(|source| StreamingTestError::Cri {
        rpc: "Attach",
        id: id.into(),
        source,
    })?;
    Ok(r.into_inner().url)
}

/// `PortForward`: the URL for `ports` of pod `id`.
pub async fn port_forward_url(
    c: &Cri,
    id: &str,
    ports: &[u16],
) -> Result<String, StreamingTestError> {
    let req = cri::PortForwardRequest {
        pod_sandbox_id: id.into(),
        port: ports.iter().map(|p| i32::from(*p)).collect(),
    };
    let r = c.rt.clone().port_forward(req).await;
    let r = r.map_err(|source| StreamingTestError::Cri {
        rpc: "PortForward",
        id: id.into(),
        source,
    })?;
    Ok(r.into_inner().url)
}

/// What a finished session produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: Vec<u8>,
    /// Everything on stderr.
    pub stderr: Vec<u8>,
}

/// A task collecting everything one output stream received.
type Collector = tokio::task::JoinHandle<Result<Vec<u8>, StreamingTestError>>;

/// A writer for the session plus the task that collects what it receives.
fn collector(what: &'static str) -> (Pin<Box<dyn AsyncWrite + Send>>, Collector) {
    let (w, mut r) = tokio::io::duplex(1 << 16);
    let task = tokio::spawn(async move {
        let mut v = Vec::new();
        r.read_to_end(&mut v)
            .await
            .map_err(|source| StreamingTestError::Io { what, source })?;
        Ok(v)
    });
    (Box::pin(w), task)
}

/// Runs a session at `url` to its end, feeding `stdin` (if any) and
/// collecting stdout/stderr as `s` asks.
pub async fn run_session(
    url: &str,
    transport: Transport,
    s: Streams,
    stdin: Option<Pin<Box<dyn AsyncRead + Send>>>,
) -> Result<Output, StreamingTestError> {
    let (out, out_task) = collector("stdout");
    let (err, err_task) = collector("stderr");
    let io = ExecIo {
        stdin: if s.stdin { stdin } else { None },
        stdout: s.stdout.then_some(out),
        stderr: (s.stderr && !s.tty).then_some(err),
        tty: s.tty,
        ..Default::default()
    };
    let status =
        client::exec(url, transport, io)
            .await
            .map_err(|source| StreamingTestError::Client {
                url: url.into(),
                source,
            })?;
    let join = |r: Result<Result<Vec<u8>, StreamingTestError>, tokio::task::JoinError>, what| {
        r.map_err(|e| StreamingTestError::Io {
            what,
            source: std::io::Error::other(e),
        })?
    };
    Ok(Output {
        status,
        stdout: join(out_task.await, "stdout")?,
        stderr: join(err_task.await, "stderr")?,
    })
}

/// Exec of `cmd` in `id` over `transport`, run to the end.
pub async fn exec(
    c: &Cri,
    id: &str,
    cmd: &[&str],
    transport: Transport,
    s: Streams,
    stdin: Option<Pin<Box<dyn AsyncRead + Send>>>,
) -> Result<Output, StreamingTestError> {
    let url = exec_url(c, id, cmd, s).await?;
    run_session(&url, transport, s, stdin).await
}

/// Number of open file descriptors of `pid` (0 if it is gone).
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}
