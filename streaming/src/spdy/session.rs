//! An async SPDY/3.1 session over one connection.

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Headers, SpdyStream};

/// Errors of a SPDY session.
#[derive(Debug, Error)]
pub enum SpdyError {
    /// The session is closed (GOAWAY, connection dropped or `close`).
    #[error("SPDY session closed")]
    Closed,
}

/// A cloneable handle to one SPDY connection.
#[derive(Clone)]
pub struct Session {
    _p: (),
}

/// The streams the peer opens.
pub struct Incoming {
    _p: (),
}

impl Session {
    /// Starts a server-role session (opens even stream ids).
    pub fn server<IO>(io: IO) -> (Session, Incoming)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let _ = io;
        todo!()
    }

    /// Starts a client-role session (opens odd stream ids).
    pub fn client<IO>(io: IO) -> (Session, Incoming)
    where
        IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let _ = io;
        todo!()
    }

    /// Opens a stream and waits for the peer's SYN_REPLY.
    pub async fn open_stream(&self, headers: Headers) -> Result<SpdyStream, SpdyError> {
        let _ = headers;
        todo!()
    }

    /// Sends GOAWAY, flushes and shuts the connection down.
    pub async fn close(&self) {
        todo!()
    }
}

impl Incoming {
    /// The next stream the peer opened; SYN_REPLY is sent on accept. `None` once the session ends.
    pub async fn accept(&mut self) -> Option<SpdyStream> {
        todo!()
    }
}
