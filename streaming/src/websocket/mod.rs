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

/// Errors of the WebSocket framing, connection and channel layers.
#[derive(Debug, thiserror::Error)]
pub enum WsError {
    /// The transport failed.
    #[error("websocket i/o failed")]
    Io(#[source] std::io::Error),
    /// The transport ended in the middle of a frame or fragmented message.
    #[error("websocket connection ended in the middle of a frame or message")]
    UnexpectedEof,
    /// A frame set RSV bits although no extension was negotiated.
    #[error("websocket frame sets reserved bits {0:#05b} without a negotiated extension")]
    ReservedBits(u8),
    /// A frame used a reserved opcode.
    #[error("websocket frame has reserved opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame had FIN clear.
    #[error("websocket {0:?} control frame is fragmented")]
    FragmentedControl(OpCode),
    /// A control frame carried more than 125 bytes.
    #[error("websocket {opcode:?} control frame carries {len} bytes (at most 125)")]
    ControlTooLong {
        /// The control frame's opcode.
        opcode: OpCode,
        /// Its payload length.
        len: u64,
    },
    /// A 64-bit length had its most significant bit set.
    #[error("websocket frame length has its most significant bit set")]
    LengthHighBit,
    /// A frame's payload is over the configured cap.
    #[error("websocket frame of {len} bytes is over the {max} byte limit")]
    FrameTooLarge {
        /// The frame's payload length.
        len: u64,
        /// The cap.
        max: usize,
    },
    /// A reassembled message grew over the configured cap.
    #[error("websocket message is over the {max} byte limit")]
    MessageTooLarge {
        /// The cap.
        max: usize,
    },
    /// A client sent an unmasked frame, or a server a masked one.
    #[error("websocket frame masking is wrong for a frame sent by the {from:?}")]
    BadMasking {
        /// The role of the peer that sent the frame.
        from: Role,
    },
    /// A continuation frame arrived with no message in progress.
    #[error("websocket continuation frame without a message to continue")]
    UnexpectedContinuation,
    /// A new data frame arrived before the fragmented message ended.
    #[error("websocket {0:?} frame inside an unfinished fragmented message")]
    ExpectedContinuation(OpCode),
    /// A text message or close reason was not UTF-8.
    #[error("websocket text is not valid UTF-8")]
    InvalidUtf8(#[source] std::str::Utf8Error),
    /// A close frame's payload was malformed (one byte, or a reserved code).
    #[error("websocket close frame is malformed (code {code:?}, {len} bytes)")]
    BadClose {
        /// The status code, if there were two bytes for it.
        code: Option<u16>,
        /// The payload length.
        len: usize,
    },
    /// A send after this end started the close handshake.
    #[error("websocket connection is closing; cannot send")]
    Closed,
    /// A channel message was empty (no channel byte).
    #[error("k8s channel message is empty")]
    EmptyChannelMessage,
    /// A channel message was a close frame, which carries no channel data.
    #[error("k8s channel message expected, got a close frame")]
    NotChannelMessage,
    /// A base64 channel message did not decode.
    #[error("k8s base64 channel {channel} payload does not decode")]
    Base64 {
        /// The channel the message was for.
        channel: u8,
        /// The decoder's complaint.
        #[source]
        source: base64::DecodeError,
    },
    /// A text message arrived on a byte tunnel.
    #[error("websocket tunnel received a text message; only binary is allowed")]
    TextInTunnel,
}

impl From<WsError> for std::io::Error {
    fn from(e: WsError) -> Self {
        match e {
            WsError::Io(io) => io,
            WsError::UnexpectedEof => std::io::Error::new(std::io::ErrorKind::UnexpectedEof, e),
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}
