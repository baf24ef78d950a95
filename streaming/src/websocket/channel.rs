//! The Kubernetes channel framing over WebSocket messages.

use super::{Message, WsError};

/// How channel data is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Binary messages, first byte the channel.
    Binary,
    /// Text messages, first character the channel digit, payload base64.
    Base64,
}

/// The framing a negotiated protocol name implies.
pub fn framing_for(_protocol: &str) -> Framing {
    todo!()
}

/// One channel message.
pub fn encode(_f: Framing, _channel: u8, _data: &[u8]) -> Message {
    todo!()
}

/// Channel number and payload of a message.
pub fn decode(_f: Framing, _m: &Message) -> Result<(u8, Vec<u8>), WsError> {
    todo!()
}
