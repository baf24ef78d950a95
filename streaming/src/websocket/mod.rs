//! WebSocket (RFC 6455) framing, handshake and connection, and the
//! Kubernetes channel protocols carried over it.

pub mod channel;
pub mod conn;
pub mod frame;
pub mod handshake;
pub mod tunnel;

pub use conn::{Role, WebSocket, WsReader, WsWriter};
pub use frame::{Frame, OpCode};
pub use handshake::HandshakeError;

/// One complete WebSocket message as the application sees it (ping and pong
/// are answered inside the connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A binary message.
    Binary(Vec<u8>),
    /// A text message (always valid UTF-8).
    Text(String),
    /// The peer's close frame: status code and reason, if it sent one.
    Close(Option<(u16, String)>),
}

/// Errors of the WebSocket framing and connection layer.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The transport failed.
    #[error("websocket i/o failed")]
    Io(#[source] std::io::Error),
}
