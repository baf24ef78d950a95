//! A byte stream carried in binary WebSocket messages.

use super::{WsReader, WsWriter};

/// AsyncRead + AsyncWrite over binary messages.
pub struct WsByteStream {
    _r: WsReader,
    _w: WsWriter,
}

impl WsByteStream {
    /// Wraps both halves of a connection.
    pub fn new(reader: WsReader, writer: WsWriter) -> Self {
        WsByteStream { _r: reader, _w: writer }
    }
}
