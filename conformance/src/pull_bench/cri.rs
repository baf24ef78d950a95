//! One CRI client for every runtime under test: tonic over a Unix socket,
//! so both daemons see exactly the same requests from the same code.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_proto::cri;
use berth_proto::cri::image_service_client::ImageServiceClient;
use berth_proto::cri::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

/// Errors talking CRI to a daemon.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// An RPC failed.
    #[error("{rpc} {what} on {socket}")]
    Rpc {
        /// The RPC name.
        rpc: &'static str,
        /// Its argument (image name) or empty.
        what: String,
        /// The Unix socket.
        socket: PathBuf,
        /// The gRPC status.
        #[source]
        source: Box<tonic::Status>,
    },
    /// The daemon did not answer in time.
    #[error("{socket} did not answer Version and ImageFsInfo within {waited:?}")]
    NotReady {
        /// The Unix socket.
        socket: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
}

/// CRI image and runtime clients over one channel.
#[derive(Clone)]
pub struct CriClient {
    socket: PathBuf,
    images: ImageServiceClient<Channel>,
    runtime: RuntimeServiceClient<Channel>,
}

impl CriClient {
    /// A lazily connecting channel to `socket` (nothing is dialled yet).
    pub fn new(socket: &Path) -> CriClient {
        let path = socket.to_path_buf();
        // The URI is required by tonic but never dialled: the connector
        // below always opens the Unix socket.
        let endpoint = Endpoint::from_static("http://[::]:50051")
            .connect_timeout(Duration::from_secs(5))
            // Big pulls take long; this only guards against a hung daemon.
            .timeout(Duration::from_secs(900));
        let channel = endpoint.connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }));
        CriClient {
            socket: socket.to_path_buf(),
            images: ImageServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            runtime: RuntimeServiceClient::new(channel),
        }
    }

    fn err(&self, rpc: &'static str, what: &str) -> impl FnOnce(tonic::Status) -> CriError {
        let socket = self.socket.clone();
        let what = what.to_string();
        move |s| CriError::Rpc {
            rpc,
            what,
            socket,
            source: Box::new(s),
        }
    }

    /// `Version`: the runtime's name and version.
    pub async fn version(&mut self) -> Result<cri::VersionResponse, CriError> {
        let e = self.err("Version", "");
        self.runtime
            .version(cri::VersionRequest::default())
            .await
            .map(tonic::Response::into_inner)
            .map_err(e)
    }

    /// `ImageFsInfo`.
    pub async fn image_fs_info(&mut self) -> Result<cri::ImageFsInfoResponse, CriError> {
        let e = self.err("ImageFsInfo", "");
        self.images
            .image_fs_info(cri::ImageFsInfoRequest::default())
            .await
            .map(tonic::Response::into_inner)
            .map_err(e)
    }

    /// Polls Version and ImageFsInfo until both answer or `timeout` passes.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<String, CriError> {
        let start = Instant::now();
        loop {
            let last = match self.version().await {
                Ok(v) => match self.image_fs_info().await {
                    Ok(_) => {
                        return Ok(format!("{} {}", v.runtime_name, v.runtime_version));
                    }
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if start.elapsed() > timeout {
                tracing::warn!(error = %last, "daemon not ready");
                return Err(CriError::NotReady {
                    socket: self.socket.clone(),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `PullImage`; returns the image ref the runtime reports.
    pub async fn pull(&mut self, image: &str) -> Result<String, CriError> {
        let e = self.err("PullImage", image);
        self.images
            .pull_image(cri::PullImageRequest {
                image: Some(spec(image)),
                auth: None,
                sandbox_config: None,
            })
            .await
            .map(|r| r.into_inner().image_ref)
            .map_err(e)
    }

    /// `ImageStatus`: `None` when the runtime does not have the image.
    pub async fn status(&mut self, image: &str) -> Result<Option<cri::Image>, CriError> {
        let e = self.err("ImageStatus", image);
        self.images
            .image_status(cri::ImageStatusRequest {
                image: Some(spec(image)),
                verbose: false,
            })
            .await
            .map(|r| r.into_inner().image)
            .map_err(e)
    }

    /// `RemoveImage` (CRI makes removing an absent image a success).
    pub async fn remove(&mut self, image: &str) -> Result<(), CriError> {
        let e = self.err("RemoveImage", image);
        self.images
            .remove_image(cri::RemoveImageRequest {
                image: Some(spec(image)),
            })
            .await
            .map(|_| ())
            .map_err(e)
    }
}

fn spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.to_string(),
        ..Default::default()
    }
}
