//! RFC 6455 frame encoding and parsing.

use super::WsError;

/// A frame's opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// Continuation of a fragmented message.
    Continuation,
    /// First frame of a text message.
    Text,
    /// First frame of a binary message.
    Binary,
    /// Close control frame.
    Close,
    /// Ping control frame.
    Ping,
    /// Pong control frame.
    Pong,
}

/// One parsed frame, its payload already unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Last fragment of its message.
    pub fin: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// Whether the sender masked the payload.
    pub masked: bool,
    /// The unmasked payload.
    pub payload: Vec<u8>,
}

/// Parses one frame from the front of `buf`.
pub fn parse(_buf: &[u8], _max_payload: usize) -> Result<Option<(Frame, usize)>, WsError> {
    todo!()
}

/// Appends the encoding of one frame to `out`, masked with `mask` if given.
pub fn encode(_fin: bool, _opcode: OpCode, _payload: &[u8], _mask: Option<[u8; 4]>, _out: &mut Vec<u8>) {
    todo!()
}
