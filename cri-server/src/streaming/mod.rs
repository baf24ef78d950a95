//! berthd's streaming server: the HTTP(S) endpoint behind the URLs that
//! Exec, Attach and PortForward return.
//!
//! The RPCs validate the request against the pod manager and park it in
//! the [`tokens::RequestCache`] under a random single-use token; the
//! client then connects to `/exec/<token>`, `/attach/<token>` or
//! `/portforward/<token>` with a SPDY/3.1 or WebSocket upgrade
//! ([`http`]), and the backends ([`exec`], [`attach`], [`portforward`])
//! connect the negotiated streams to the container.

pub mod attach;
pub mod exec;
pub mod http;
pub mod portforward;
pub mod requests;
pub mod tls;
pub mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::info;

use crate::config::StreamingConfig;
use crate::pods::{PodError, PodManager};

/// How long a URL stays valid (the kubelet's request cache uses 1 minute).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Most URLs handed out and not yet used.
pub const MAX_IN_FLIGHT: usize = 1000;
/// How long a client may take to open its streams after the upgrade.
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of the streaming server and of the RPCs that hand out its URLs.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    /// The listen address could not be bound.
    #[error("binding the streaming server on {address}")]
    Bind {
        /// The configured address.
        address: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be loaded.
    #[error("loading TLS {what} from {path}")]
    Tls {
        /// "certificate" or "private key" or "configuration".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The reason.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Too many URLs are waiting to be used.
    #[error("too many streaming requests in flight (at most {MAX_IN_FLIGHT})")]
    TooManyRequests,
    /// The request does not name a usable pod or container.
    #[error(transparent)]
    Pods(#[from] PodError),
}

/// The client's side of a remote-command session, without its reporter.
pub struct ClientStreams {
    /// The client's stdin.
    pub stdin: Option<berth_streaming::remotecommand::StdinReader>,
    /// The client's stdout.
    pub stdout: Option<berth_streaming::remotecommand::OutputWriter>,
    /// The client's stderr.
    pub stderr: Option<berth_streaming::remotecommand::OutputWriter>,
    /// Terminal resizes.
    pub resize: Option<tokio::sync::mpsc::Receiver<berth_streaming::remotecommand::TerminalSize>>,
    /// The client left.
    pub disconnected: berth_streaming::remotecommand::Disconnected,
}

impl ClientStreams {
    /// Separates the streams from the status reporter.
    pub fn split(
        s: berth_streaming::remotecommand::ServerStreams,
    ) -> (
        ClientStreams,
        berth_streaming::remotecommand::StatusReporter,
    ) {
        (
            ClientStreams {
                stdin: s.stdin,
                stdout: s.stdout,
                stderr: s.stderr,
                resize: s.resize,
                disconnected: s.disconnected,
            },
            s.status,
        )
    }
}

/// What the RPC handlers and HTTP handlers share.
#[derive(Debug)]
pub struct StreamingService {
    pods: Arc<PodManager>,
    cache: tokens::RequestCache,
    base_url: String,
    /// Connections without traffic for this long are closed.
    idle_timeout: Option<std::time::Duration>,
}

impl StreamingService {
    /// The pod manager.
    pub fn pods(&self) -> &Arc<PodManager> {
        &self.pods
    }

    /// `http(s)://host:port`, the prefix of every URL handed out.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn url_for(&self, req: requests::StreamRequest) -> Result<String, StreamingError> {
        let kind = req.kind();
        let token = self.cache.insert(req)?;
        Ok(format!("{}/{}/{}", self.base_url, kind, token))
    }
}

/// The bound listener, ready to serve.
pub struct StreamingServer {
    service: Arc<StreamingService>,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    local: SocketAddr,
}

impl std::fmt::Debug for StreamingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingServer")
            .field("local", &self.local)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl StreamingServer {
    /// Binds `config.address` and loads the TLS files when configured.
    pub async fn bind(
        config: &StreamingConfig,
        pods: Arc<PodManager>,
    ) -> Result<StreamingServer, StreamingError> {
        let bind_err = |source| StreamingError::Bind {
            address: config.address.clone(),
            source,
        };
        let tls = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert, key)?),
            _ => None,
        };
        let listener = TcpListener::bind(&config.address).await.map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        let base_url = base_url(local, tls.is_some());
        info!(url = %base_url, "streaming server listening");
        let service = Arc::new(StreamingService {
            pods,
            cache: tokens::RequestCache::new(TOKEN_TTL, MAX_IN_FLIGHT),
            base_url,
            idle_timeout: (config.idle_timeout_secs > 0)
                .then(|| std::time::Duration::from_secs(config.idle_timeout_secs)),
        });
        Ok(StreamingServer {
            service,
            listener,
            tls,
            local,
        })
    }

    /// The shared service (for the RPC handlers).
    pub fn service(&self) -> &Arc<StreamingService> {
        &self.service
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()> + Send) {
        http::serve(self.listener, self.tls, self.service, shutdown).await;
    }
}

/// The URL prefix for a listener: an unspecified bind address (0.0.0.0,
/// ::) is advertised as loopback, the only address known to reach it.
fn base_url(local: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let ip = match local.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
            std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
        }
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
            std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST)
        }
        ip => ip,
    };
    format!("{scheme}://{}", SocketAddr::new(ip, local.port()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let a: SocketAddr = "0.0.0.0:10010".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(base_url(a, false), "http://127.0.0.1:10010");
        let b: SocketAddr = "[::]:1".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(base_url(b, true), "https://[::1]:1");
        let c: SocketAddr = "127.0.0.2:5".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(base_url(c, false), "http://127.0.0.2:5");
    }
}
