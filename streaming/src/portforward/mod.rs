//! Server side of the Kubernetes port-forward protocol.
//!
//! - SPDY (`portforward.k8s.io`, [`spdy::serve`]): per forwarded
//!   connection the client opens an `error` and a `data` stream carrying
//!   the same `requestID` and the target `port`.
//! - The same SPDY session tunnelled in WebSocket binary messages
//!   (`SPDY/3.1+portforward.k8s.io`, [`spdy::serve_tunnel`]).
//! - The kubelet's native WebSocket form ([`websocket::serve`]): ports in
//!   the `port` query parameters, one connection per port on channel pairs
//!   (data `2i`, error `2i+1`), each channel's first message the port as
//!   two little-endian bytes.
//!
//! Every transport yields [`ForwardRequest`]s: the port, a byte stream to
//! connect to it, and an [`ErrorReporter`] for a failure message.

pub mod spdy;
pub mod websocket;

use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// The SPDY subprotocol.
pub const PROTOCOL_V1: &str = "portforward.k8s.io";
/// The WebSocket subprotocol carrying a SPDY session.
pub const TUNNEL_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// Protocols of the kubelet's native WebSocket port-forward.
pub const WEBSOCKET_PROTOCOLS: &[&str] = &[
    "v4.channel.k8s.io",
    "v4.base64.channel.k8s.io",
    "channel.k8s.io",
    "base64.channel.k8s.io",
];
/// Header naming the target port.
pub const PORT_HEADER: &str = "port";
/// Header pairing the data and error streams of one connection.
pub const REQUEST_ID_HEADER: &str = "requestid";

/// Errors of the port-forward server.
#[derive(Debug, thiserror::Error)]
pub enum PortForwardError {
    /// A port value is not a TCP port.
    #[error("invalid port {0:?}")]
    InvalidPort(String),
    /// No port was asked for (WebSocket form).
    #[error("no port given (query parameter `port`)")]
    NoPorts,
    /// The WebSocket transport failed.
    #[error("websocket transport")]
    WebSocket(#[from] crate::websocket::WsError),
}

/// Parses a port header or query value (1..=65535).
pub fn parse_port(s: &str) -> Result<u16, PortForwardError> {
    match s.trim().parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(PortForwardError::InvalidPort(s.to_string())),
    }
}

/// A bidirectional byte stream.
pub trait DataStream: AsyncRead + AsyncWrite + Send {}
impl<T: AsyncRead + AsyncWrite + Send> DataStream for T {}

/// One connection the client wants forwarded.
pub struct ForwardRequest {
    /// The port inside the pod.
    pub port: u16,
    /// The client's bytes (shut it down when the pod side closes).
    pub data: Pin<Box<dyn DataStream>>,
    /// Where a failure is reported.
    pub error: ErrorReporter,
}

/// Sends a failure message for one forwarded connection.
pub struct ErrorReporter(ErrorInner);

enum ErrorInner {
    Spdy(crate::spdy::SpdyStream),
    WebSocket(websocket::ChannelSender),
}

impl ErrorReporter {
    /// Reports `message` (e.g. a refused connection) and closes the error
    /// stream.
    pub async fn report(self, message: &str) {
        use tokio::io::AsyncWriteExt;
        match self.0 {
            ErrorInner::Spdy(mut s) => {
                if let Err(err) = s.write_all(message.as_bytes()).await {
                    tracing::debug!(%err, "writing a port-forward error");
                }
                let _ = s.shutdown().await;
            }
            ErrorInner::WebSocket(s) => s.send(message.as_bytes()).await,
        }
    }

    /// The connection ended without an error: closes the error stream
    /// (client-go waits for its end before finishing the connection).
    pub async fn close(self) {
        use tokio::io::AsyncWriteExt;
        match self.0 {
            ErrorInner::Spdy(mut s) => {
                let _ = s.shutdown().await;
            }
            ErrorInner::WebSocket(_) => {}
        }
    }
}

/// The stream of forward requests of one client connection.
pub struct Forwarder {
    rx: mpsc::Receiver<ForwardRequest>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    /// The next forwarded connection; `None` once the client is gone.
    pub async fn next(&mut self) -> Option<ForwardRequest> {
        self.rx.recv().await
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(parse_port("80").ok(), Some(80));
        assert_eq!(parse_port(" 65535").ok(), Some(65535));
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
        assert!(parse_port("http").is_err());
    }
}
