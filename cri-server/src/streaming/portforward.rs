//! Port-forward backend: each forwarded connection is a TCP connection to
//! `localhost:<port>` made inside the pod's network namespace (the
//! host's for hostNetwork pods).
//!
//! A socket keeps the network namespace it was created in, so the connect
//! runs on a short-lived dedicated thread that first joins the pod's netns
//! (setns affects only the calling thread); the connected socket is then
//! handed to tokio. No thread of the async runtime ever changes namespace.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::cri;
use berth_streaming::portforward::{ForwardRequest, Forwarder};
use tracing::debug;

use crate::pods::{PodManager, PodState};

/// How long one connect inside the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors connecting inside a pod.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The pod's netns could not be opened or joined.
    #[error("entering network namespace {path}")]
    Netns {
        /// The netns pin.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Nothing accepted the connection.
    #[error("connecting to localhost:{port}")]
    Connect {
        /// The port.
        port: u16,
        /// The last error (IPv4, then IPv6).
        #[source]
        source: std::io::Error,
    },
    /// The connect thread could not run.
    #[error("connect thread")]
    Thread(#[source] std::io::Error),
}

/// Serves every forwarded connection of one client until it leaves.
pub async fn run(pods: Arc<PodManager>, req: cri::PortForwardRequest, mut forwarder: Forwarder) {
    let pod_id = req.pod_sandbox_id;
    let netns = match pods.load_pod(&pod_id).await {
        Ok(p) if p.rec.state == PodState::Ready => Ok(p.rec.netns),
        Ok(_) => Err(format!("pod sandbox {pod_id} is not ready")),
        Err(e) => Err(crate::error::chain(&e)),
    };
    while let Some(fr) = forwarder.next().await {
        match &netns {
            Ok(ns) => {
                tokio::spawn(forward(ns.clone(), pod_id.clone(), fr));
            }
            Err(msg) => fr.error.report(msg).await,
        }
    }
}

async fn forward(netns: Option<PathBuf>, pod_id: String, fr: ForwardRequest) {
    let ForwardRequest {
        port,
        mut data,
        error,
    } = fr;
    let conn = match connect(netns, port).await {
        Ok(c) => c,
        Err(e) => {
            let msg = format!(
                "failed to connect to localhost:{port} inside namespace of pod {pod_id}: {}",
                crate::error::chain(&e)
            );
            debug!(%msg, "port-forward");
            error.report(&msg).await;
            return;
        }
    };
    let mut conn = conn;
    match tokio::io::copy_bidirectional(&mut data, &mut conn).await {
        Ok((up, down)) => debug!(port, up, down, "port-forward connection done"),
        Err(err) => debug!(port, %err, "port-forward connection ended"),
    }
    error.close().await;
}

/// Connects to localhost:`port` in `netns` (None: the host's).
pub async fn connect(
    netns: Option<PathBuf>,
    port: u16,
) -> Result<tokio::net::TcpStream, ConnectError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pf-connect".into())
        .stack_size(128 * 1024)
        .spawn(move || {
            let _ = tx.send(connect_blocking(netns.as_deref(), port));
        })
        .map_err(ConnectError::Thread)?;
    let stream = rx
        .await
        .map_err(|_| ConnectError::Thread(std::io::Error::other("connect thread vanished")))??;
    stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(stream))
        .map_err(|source| ConnectError::Connect { port, source })
}

/// Runs on a dedicated thread: joins `netns`, then connects.
fn connect_blocking(netns: Option<&Path>, port: u16) -> Result<TcpStream, ConnectError> {
    if let Some(path) = netns {
        let err = |source| ConnectError::Netns {
            path: path.to_path_buf(),
            source,
        };
        let f = std::fs::File::open(path).map_err(err)?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(|e| err(std::io::Error::from(e)))?;
    }
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT)
        .or_else(|_| TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT))
        .map_err(|source| ConnectError::Connect { port, source })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn host_connect_reaches_a_loopback_listener_and_refusal_is_an_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"hi").await.unwrap();
        });
        let mut c = connect(None, port).await.unwrap();
        let mut buf = [0u8; 2];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        accept.await.unwrap();
        // A port nobody listens on (just freed).
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = free.local_addr().unwrap().port();
        drop(free);
        assert!(matches!(
            connect(None, p).await,
            Err(ConnectError::Connect { .. })
        ));
        assert!(matches!(
            connect(Some(PathBuf::from("/nonexistent/netns")), p).await,
            Err(ConnectError::Netns { .. })
        ));
    }
}
