//! SPDY/3.1 framing, header compression and sessions.
//!
//! Layers, bottom up: [`frame`] (the byte codec, header blocks still
//! compressed), [`header_block`] (the name/value block and its zlib contexts),
//! [`session`] (streams, flow control, PING/GOAWAY/RST over one connection)
//! and [`handshake`] (the HTTP/1.1 upgrade that precedes a session).

mod conn;
pub mod frame;
pub mod handshake;
pub mod header_block;
mod reader;
pub mod session;
mod stream;
mod writer;

#[cfg(test)]
mod go_interop_tests;

pub use conn::CloseReason;
pub use session::{Incoming, Role, SendFlowControl, Session, SessionConfig, SpdyError};
pub use stream::{SpdyReadHalf, SpdyStream, SpdyWriteHalf};

/// Header name/value pairs of a stream; names are lower-case.
pub type Headers = Vec<(String, String)>;
