//! An async WebSocket connection split into a reader and a shareable writer.

use std::marker::PhantomData;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Message, WsError};

/// Which end of the connection we are (decides masking).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepts connections; receives masked frames, sends unmasked ones.
    Server,
    /// Opens connections; sends masked frames.
    Client,
}

/// A WebSocket connection over `IO`, before it is split.
pub struct WebSocket<IO> {
    _io: PhantomData<IO>,
}

impl<IO> WebSocket<IO>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    /// Server end over an upgraded transport.
    pub fn server(_io: IO) -> Self {
        todo!()
    }
    /// Client end over an upgraded transport.
    pub fn client(_io: IO) -> Self {
        todo!()
    }
    /// Splits into a reader and a cloneable writer.
    pub fn split(self) -> (WsReader, WsWriter) {
        todo!()
    }
}

/// The receiving half.
pub struct WsReader {}

impl WsReader {
    /// The next message; `None` once the connection is closed.
    pub async fn recv(&mut self) -> Result<Option<Message>, WsError> {
        todo!()
    }
}

/// The sending half; clones share the connection.
#[derive(Clone)]
pub struct WsWriter {}

impl WsWriter {
    /// Sends one message.
    pub async fn send(&mut self, _m: Message) -> Result<(), WsError> {
        todo!()
    }
    /// Starts the close handshake.
    pub async fn close(&mut self, _code: u16, _reason: &str) -> Result<(), WsError> {
        todo!()
    }
}
