//! Server side of the Kubernetes remote-command protocol (exec and attach)
//! over SPDY/3.1 ([`spdy`]) and WebSocket ([`websocket`]).
//!
//! Both transports end in the same [`ServerStreams`]: optional stdin
//! reader, stdout/stderr writers, terminal resizes, a way to learn that the
//! client went away, and a [`StatusReporter`] that sends the command's
//! result on the error stream and closes the connection.

pub mod resize;
pub mod spdy;
pub mod status;
pub mod websocket;

use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, watch};

pub use resize::TerminalSize;
pub use status::CommandResult;

/// `channel.k8s.io`: the first protocol; error stream carries text.
pub const PROTOCOL_V1: &str = "channel.k8s.io";
/// `v2.channel.k8s.io`: fixed stream handling; error stream carries text.
pub const PROTOCOL_V2: &str = "v2.channel.k8s.io";
/// `v3.channel.k8s.io`: adds the resize stream.
pub const PROTOCOL_V3: &str = "v3.channel.k8s.io";
/// `v4.channel.k8s.io`: the error stream carries a metav1.Status (exit codes).
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";
/// `v5.channel.k8s.io`: adds the WebSocket close-channel signal.
pub const PROTOCOL_V5: &str = "v5.channel.k8s.io";
/// `base64.channel.k8s.io`: WebSocket v1 with base64 text frames.
pub const PROTOCOL_BASE64_V1: &str = "base64.channel.k8s.io";
/// `v4.base64.channel.k8s.io`: WebSocket v4 with base64 text frames.
pub const PROTOCOL_BASE64_V4: &str = "v4.base64.channel.k8s.io";

/// Protocols offered over SPDY, most preferred first.
pub const SPDY_PROTOCOLS: &[&str] = &[
    PROTOCOL_V5,
    PROTOCOL_V4,
    PROTOCOL_V3,
    PROTOCOL_V2,
    PROTOCOL_V1,
];

/// Protocols offered over WebSocket, most preferred first.
pub const WEBSOCKET_PROTOCOLS: &[&str] = &[
    PROTOCOL_V5,
    PROTOCOL_V4,
    PROTOCOL_BASE64_V4,
    PROTOCOL_V1,
    PROTOCOL_BASE64_V1,
];

/// The `streamType` header (SPDY) naming a stream's role.
pub const STREAM_TYPE_HEADER: &str = "streamtype";

/// The boxed stdin the backend reads.
pub type StdinReader = Pin<Box<dyn AsyncRead + Send>>;
/// A boxed output the backend writes (shut it down when the output ends).
pub type OutputWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// Errors of the remote-command server.
#[derive(Debug, thiserror::Error)]
pub enum RemoteCommandError {
    /// The negotiated protocol is not one this server speaks.
    #[error("unsupported remote-command protocol {0:?}")]
    UnsupportedProtocol(String),
    /// The client did not open the expected streams in time.
    #[error("timed out waiting for the client's streams (have {have:?}, want {want:?})")]
    StreamTimeout {
        /// Stream types received.
        have: Vec<String>,
        /// Stream types expected.
        want: Vec<String>,
    },
    /// The connection ended while streams were being set up.
    #[error("the client closed the connection while opening streams")]
    ClosedEarly,
    /// Writing the final status failed.
    #[error("writing the {what}")]
    Io {
        /// What was written.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The WebSocket transport failed.
    #[error("websocket transport")]
    WebSocket(#[from] crate::websocket::WsError),
}

/// Protocol generations, in the order features were added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    /// `channel.k8s.io` (and base64 / unnamed over WebSocket).
    V1,
    /// `v2.channel.k8s.io`.
    V2,
    /// `v3.channel.k8s.io`: resize stream.
    V3,
    /// `v4.channel.k8s.io`: status JSON on the error stream.
    V4,
    /// `v5.channel.k8s.io`: close signal.
    V5,
}

impl Version {
    /// The generation of a negotiated protocol name.
    pub fn of(protocol: &str) -> Result<Version, RemoteCommandError> {
        Ok(match protocol {
            "" | PROTOCOL_V1 | PROTOCOL_BASE64_V1 => Version::V1,
            PROTOCOL_V2 => Version::V2,
            PROTOCOL_V3 => Version::V3,
            PROTOCOL_V4 | PROTOCOL_BASE64_V4 => Version::V4,
            PROTOCOL_V5 => Version::V5,
            other => return Err(RemoteCommandError::UnsupportedProtocol(other.to_string())),
        })
    }

    /// Whether the error stream carries a metav1.Status.
    pub fn has_status(self) -> bool {
        self >= Version::V4
    }

    /// Whether a tty session has a resize stream.
    pub fn has_resize(self) -> bool {
        self >= Version::V3
    }
}

/// Which streams the request asked for (from the CRI Exec/Attach request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamOptions {
    /// The client sends stdin.
    pub stdin: bool,
    /// The client wants stdout.
    pub stdout: bool,
    /// The client wants stderr (never together with tty).
    pub stderr: bool,
    /// A terminal: stderr is merged into stdout, resizes arrive.
    pub tty: bool,
}

/// A client-disconnect signal (cloneable).
#[derive(Debug, Clone)]
pub struct Disconnected(watch::Receiver<bool>);

impl Disconnected {
    /// A signal and its trigger.
    pub(crate) fn channel() -> (watch::Sender<bool>, Disconnected) {
        let (tx, rx) = watch::channel(false);
        (tx, Disconnected(rx))
    }

    /// Resolves once the client's connection has ended.
    pub async fn wait(&mut self) {
        // An error means the sender is gone: the transport task ended.
        let _ = self.0.wait_for(|gone| *gone).await;
    }

    /// Whether the client is gone already.
    pub fn is_gone(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }
}

/// The streams of one remote-command session, transport-neutral.
pub struct ServerStreams {
    /// The negotiated protocol.
    pub protocol: String,
    /// What the client reads from the command's stdin (None: no stdin).
    pub stdin: Option<StdinReader>,
    /// Where the command's stdout goes.
    pub stdout: Option<OutputWriter>,
    /// Where the command's stderr goes (None for a tty).
    pub stderr: Option<OutputWriter>,
    /// Terminal size changes (tty sessions on v3+).
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    /// Resolves when the client disconnects.
    pub disconnected: Disconnected,
    /// Sends the result and closes the connection.
    pub status: StatusReporter,
}

/// Sends the command's result on the error stream and ends the session.
pub struct StatusReporter {
    version: Version,
    inner: ReporterInner,
}

enum ReporterInner {
    Spdy(spdy::SpdyReporter),
    WebSocket(websocket::WsReporter),
}

impl StatusReporter {
    /// Reports `result` and closes the connection. Shut the output writers
    /// down first: on WebSocket the report waits for their pending data.
    pub async fn finish(self, result: CommandResult) -> Result<(), RemoteCommandError> {
        let payload = status::encode(self.version, &result);
        match self.inner {
            ReporterInner::Spdy(r) => r.finish(payload).await,
            ReporterInner::WebSocket(r) => r.finish(payload).await,
        }
    }
}

/// Stream types a session with `opts` on `version` must open.
pub fn expected_streams(opts: StreamOptions, version: Version) -> Vec<&'static str> {
    let mut want = vec!["error"];
    if opts.stdin {
        want.push("stdin");
    }
    if opts.stdout {
        want.push("stdout");
    }
    if opts.stderr && !opts.tty {
        want.push("stderr");
    }
    if opts.tty && version.has_resize() {
        want.push("resize");
    }
    want
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn versions_and_expected_streams() {
        assert_eq!(Version::of("").ok(), Some(Version::V1));
        assert_eq!(Version::of(PROTOCOL_BASE64_V4).ok(), Some(Version::V4));
        assert!(Version::of("v9.channel.k8s.io").is_err());
        assert!(Version::V4.has_status() && !Version::V3.has_status());
        let tty = StreamOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: true,
        };
        assert_eq!(
            expected_streams(tty, Version::V4),
            vec!["error", "stdin", "stdout", "resize"]
        );
        assert_eq!(
            expected_streams(tty, Version::V2),
            vec!["error", "stdin", "stdout"]
        );
        let plain = StreamOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        assert_eq!(
            expected_streams(plain, Version::V5),
            vec!["error", "stdout", "stderr"]
        );
    }
}
