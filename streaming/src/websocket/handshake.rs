//! The HTTP/1.1 upgrade handshake, server and client sides.

use tokio::io::{AsyncRead, AsyncWrite};

use super::WebSocket;

/// Errors of the opening handshake.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The transport failed.
    #[error("websocket handshake i/o failed")]
    Io(#[source] std::io::Error),
}

/// Checks a WebSocket upgrade request and picks its sub-protocol among `supported`.
pub fn negotiate(_req: &http::HeaderMap, _supported: &[&str]) -> Result<String, HandshakeError> {
    todo!()
}

/// The headers of the 101 response to `req` (accept key, chosen protocol).
pub fn response_headers(_req: &http::HeaderMap, _chosen: &str) -> Result<http::HeaderMap, HandshakeError> {
    todo!()
}

/// Sends a WebSocket upgrade request over `io` and reads the 101 response.
pub async fn client_upgrade<IO>(
    _io: IO,
    _host: &str,
    _path_and_query: &str,
    _protocols: &[&str],
) -> Result<(WebSocket<IO>, String), HandshakeError>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    todo!()
}
