//! The gRPC server on the CRI Unix socket.

use std::future::Future;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_proto::cri::image_service_server::ImageServiceServer;
use berth_proto::cri::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::{info, warn};

use crate::config::Config;
use crate::image_service::CriImageService;
use crate::images::ImageManager;
use crate::network::{default_cache_dir, Network};
use crate::pods::events::{EventsError, EventsServer};
use crate::pods::{PodError, PodManager, PodsConfig};
use crate::runtime_service::CriRuntimeService;
use crate::store::{Store, StoreError};
use crate::streaming::{StreamingError, StreamingServer};

/// Permissions of the socket: owner and group may talk CRI.
const SOCKET_MODE: u32 = 0o660;

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A directory could not be created.
    #[error("creating {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error("opening the image store")]
    Store(#[from] StoreError),
    /// Another daemon answers on the socket.
    #[error("{path} is in use by a running daemon")]
    SocketInUse {
        /// The socket.
        path: PathBuf,
    },
    /// The socket path exists and is not a socket.
    #[error("{path} exists and is not a socket")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Binding or configuring the socket failed.
    #[error("listening on {path}")]
    Bind {
        /// The socket.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("serving gRPC")]
    Serve(#[from] tonic::transport::Error),
    /// The shim Events service could not start.
    #[error("starting the shim events service")]
    Events(#[from] EventsError),
    /// Start-up reconciliation of pods and containers failed.
    #[error("reconciling pods and containers")]
    Reconcile(#[from] PodError),
    /// The streaming server could not start.
    #[error("starting the streaming server")]
    Streaming(#[from] StreamingError),
}

/// A daemon whose store is open and socket bound, ready to serve.
#[derive(Debug)]
pub struct Daemon {
    images: Arc<ImageManager>,
    pods: Arc<PodManager>,
    events: EventsServer,
    listener: UnixListener,
    socket: PathBuf,
    streaming: StreamingServer,
}

impl Daemon {
    /// Creates the directories, opens the store (cleaning leftovers of a
    /// crash), serves the shim events socket, reconciles pods and
    /// containers with their shims, and binds the socket.
    pub async fn bind(config: &Config) -> Result<Daemon, ServerError> {
        for dir in [&config.root, &config.state] {
            std::fs::create_dir_all(dir).map_err(|source| ServerError::Dir {
                path: dir.clone(),
                source,
            })?;
        }
        let root = config.root.clone();
        let (store, _report) = tokio::task::spawn_blocking(move || Store::open(&root))
            .await
            .map_err(|e| ServerError::Bind {
                path: config.root.clone(),
                source: std::io::Error::other(e),
            })??;
        let store = Arc::new(store);
        let images = Arc::new(ImageManager::new(config, store.clone()));
        let socket = config.socket_path();
        // Refuse early when another daemon owns this state dir: starting the
        // events server or reconciling would disturb its shims.
        check_socket_free(&socket).await?;
        let network = Network::new(config.cni.clone(), default_cache_dir(&config.state));
        let pods = Arc::new(PodManager::new(
            PodsConfig::from_config(config),
            store,
            network,
        ));
        let events = EventsServer::start(&pods.config().events_socket()).await?;
        pods.reconcile().await?;
        let streaming = StreamingServer::bind(&config.streaming, pods.clone()).await?;
        let listener = bind_socket(&socket).await?;
        info!(socket = %socket.display(), root = %config.root.display(), "berthd listening");
        Ok(Daemon {
            images,
            pods,
            events,
            listener,
            socket,
            streaming,
        })
    }

    /// The streaming server's URL prefix (`http://127.0.0.1:<port>`).
    pub fn streaming_url(&self) -> &str {
        self.streaming.service().base_url()
    }

    /// The image manager (tests read its counters).
    pub fn images(&self) -> &Arc<ImageManager> {
        &self.images
    }

    /// The pod manager.
    pub fn pods(&self) -> &Arc<PodManager> {
        &self.pods
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Serves until `shutdown` resolves, then finishes running requests and
    /// removes the socket.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServerError> {
        let incoming = UnixListenerStream::new(self.listener);
        let streaming_service = self.streaming.service().clone();
        let runtime =
            CriRuntimeService::new(self.pods.clone()).with_streaming(streaming_service.clone());
        let (stop_streaming, streaming_stopped) = tokio::sync::oneshot::channel::<()>();
        let streaming = tokio::spawn(self.streaming.serve(async {
            let _ = streaming_stopped.await;
        }));
        let result = tonic::transport::Server::builder()
            .add_service(RuntimeServiceServer::new(runtime))
            .add_service(ImageServiceServer::new(CriImageService::new(
                self.images.clone(),
            )))
            .add_service(crate::api::images::server(&self.pods, &self.images))
            .add_service(crate::api::containers::server(
                &self.pods,
                &self.images,
                &streaming_service,
            ))
            .add_service(crate::api::volumes::server(&self.pods, &self.images))
            .add_service(crate::api::system::server(&self.pods, &self.images))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await;
        let _ = stop_streaming.send(());
        if let Err(err) = streaming.await {
            warn!(?err, "streaming server task failed");
        }
        if let Err(err) = std::fs::remove_file(&self.socket) {
            warn!(?err, socket = %self.socket.display(), "cannot remove socket");
        }
        self.events.shutdown().await;
        let events = self.pods.config().events_socket();
        if let Err(err) = std::fs::remove_file(&events) {
            warn!(?err, socket = %events.display(), "cannot remove events socket");
        }
        info!("berthd stopped");
        Ok(result?)
    }
}

/// Fails when a live daemon answers on `path`.
async fn check_socket_free(path: &Path) -> Result<(), ServerError> {
    if tokio::net::UnixStream::connect(path).await.is_ok() {
        return Err(ServerError::SocketInUse {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// Binds `path`: parent created, a stale socket (nobody answering) removed,
/// a live one refused, mode 0660.
async fn bind_socket(path: &Path) -> Result<UnixListener, ServerError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| ServerError::Dir {
            path: parent.to_path_buf(),
            source,
        })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(ServerError::SocketInUse {
                    path: path.to_path_buf(),
                });
            }
            warn!(socket = %path.display(), "removing stale socket");
            std::fs::remove_file(path).map_err(|source| ServerError::Bind {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(_) => {
            return Err(ServerError::NotASocket {
                path: path.to_path_buf(),
            })
        }
        Err(_) => {}
    }
    let bind_err = |source| ServerError::Bind {
        path: path.to_path_buf(),
        source,
    };
    let listener = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
        .map_err(bind_err)?;
    Ok(listener)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stop berthd with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM received, shutting down"),
        _ = int.recv() => info!("SIGINT received, shutting down"),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn socket_is_0660_and_stale_sockets_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/berth.sock");
        let l = bind_socket(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        // A live socket is refused.
        assert!(matches!(
            bind_socket(&path).await,
            Err(ServerError::SocketInUse { .. })
        ));
        drop(l);
        // Now stale: replaced.
        let _l = bind_socket(&path).await.unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            bind_socket(&file).await,
            Err(ServerError::NotASocket { .. })
        ));
    }
}
