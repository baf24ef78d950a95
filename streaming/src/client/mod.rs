//! Clients of the Kubernetes streaming protocols: exec/attach
//! (remote command) and port-forward, over SPDY/3.1 and WebSocket. They are
//! what the end-to-end tests and benchmarks drive berthd with, written from
//! client-go's behaviour (stream order, headers, status decoding).
//!
//! URLs are the ones CRI `Exec`/`Attach`/`PortForward` return; only `http`
//! is spoken (no TLS client here).

pub mod exec;
pub mod portforward;

use tokio::net::TcpStream;

pub use exec::{exec, ExecIo, ExitStatus};
pub use portforward::{PortForwarder, PortStream, WsPortForward};

/// Which transport a client upgrades to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// SPDY/3.1 (what `kubectl` and `crictl` use by default).
    Spdy,
    /// WebSocket (`crictl --transport websocket`).
    WebSocket,
}

/// Errors of the streaming clients.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://host:port/path`.
    #[error("streaming URL {url:?} is not usable: {why}")]
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The TCP connection failed.
    #[error("connecting to the streaming server at {addr}")]
    Connect {
        /// host:port.
        addr: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The SPDY upgrade failed.
    #[error("SPDY upgrade")]
    SpdyHandshake(#[source] crate::spdy::handshake::HandshakeError),
    /// The WebSocket upgrade failed.
    #[error("WebSocket upgrade")]
    WsHandshake(#[source] crate::websocket::HandshakeError),
    /// The SPDY session failed.
    #[error("SPDY session")]
    Spdy(#[source] crate::spdy::SpdyError),
    /// The WebSocket connection failed.
    #[error("WebSocket connection")]
    Ws(#[source] crate::websocket::WsError),
    /// Copying a stream failed.
    #[error("copying the {what} stream")]
    Io {
        /// Which stream.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The server chose a protocol this client does not speak.
    #[error("server negotiated unexpected protocol {0:?}")]
    UnexpectedProtocol(String),
    /// The error stream held something that is not a `metav1.Status`.
    #[error("error stream payload {payload:?} is not a status")]
    BadStatus {
        /// The payload.
        payload: String,
        /// The JSON error.
        #[source]
        source: Option<serde_json::Error>,
    },
    /// The server reported a failure other than an exit code.
    #[error("remote command failed: {0}")]
    Remote(String),
    /// A port-forward stream reported an error, or its setup went wrong.
    #[error("port-forward to port {port}: {message}")]
    PortForward {
        /// The remote port.
        port: u16,
        /// The server's message.
        message: String,
    },
}

/// Where a URL points: the address to dial, the Host header and the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// host:port to connect to.
    pub addr: String,
    /// Host header value.
    pub host: String,
    /// Path and query of the request.
    pub path_and_query: String,
}

impl Target {
    /// Parses an `http://` streaming URL.
    pub fn parse(url: &str) -> Result<Target, ClientError> {
        let bad = |why| ClientError::BadUrl {
            url: url.to_owned(),
            why,
        };
        let uri: http::Uri = url.parse().map_err(|_| bad("not a URI"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(bad("https is not supported by this client")),
            _ => return Err(bad("scheme must be http")),
        }
        let auth = uri.authority().ok_or_else(|| bad("no host"))?;
        let port = auth.port_u16().unwrap_or(80);
        let host = auth.host().to_owned();
        let addr = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        Ok(Target {
            addr,
            host: auth.as_str().to_owned(),
            path_and_query,
        })
    }

    /// Opens a TCP connection to the target.
    pub async fn connect(&self) -> Result<TcpStream, ClientError> {
        let s = TcpStream::connect(&self.addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        // Interactive traffic: small writes must not wait for Nagle.
        let _ = s.set_nodelay(true);
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_streaming_urls() {
        let t = Target::parse("http://127.0.0.1:4321/exec/AbC?x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:4321");
        assert_eq!(t.host, "127.0.0.1:4321");
        assert_eq!(t.path_and_query, "/exec/AbC?x=1");
        let t = Target::parse("http://[::1]:9/pf/x").unwrap();
        assert_eq!(t.addr, "[::1]:9");
        assert!(Target::parse("https://127.0.0.1:1/x").is_err());
        assert!(Target::parse("/exec/x").is_err());
    }
}
