//! The HTTP/1.1 upgrade to SPDY/3.1 and `X-Stream-Protocol-Version` negotiation.

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Incoming, Session};

/// Errors of the upgrade handshake.
#[derive(Debug, Error)]
pub enum HandshakeError {
    /// No protocol the client offers is supported.
    #[error("no supported protocol among {offered:?}")]
    NoCommonProtocol { offered: Vec<String> },
}

/// Server side: checks the upgrade headers and picks a protocol from `supported` (in preference order).
pub fn negotiate(req: &http::HeaderMap, supported: &[&str]) -> Result<String, HandshakeError> {
    let _ = (req, supported);
    todo!()
}

/// The headers of the 101 Switching Protocols response.
pub fn response_headers(chosen: &str) -> http::HeaderMap {
    let _ = chosen;
    todo!()
}

/// Client side: sends the upgrade request over `io`, reads the 101 and starts a client session.
pub async fn client_upgrade<IO>(
    io: IO,
    method: &str,
    host: &str,
    path_and_query: &str,
    protocols: &[&str],
) -> Result<(Session, Incoming, String), HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let _ = (io, method, host, path_and_query, protocols);
    todo!()
}
