//! The connection to berthd: one tonic channel over its Unix socket,
//! shared by the CRI and berth.v1 clients.

use std::time::Duration;

use berth_proto::berth::v1::{
    containers_client::ContainersClient, images_client::ImagesClient, system_client::SystemClient,
    volumes_client::VolumesClient,
};
use berth_proto::cri::{
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
};
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::CliError;

/// The default daemon address.
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

/// Largest message accepted (inspect JSON, image lists).
const MAX_MESSAGE: usize = 64 << 20;

/// Clients of every service berthd serves.
#[derive(Clone)]
pub struct Daemon {
    /// CRI RuntimeService.
    pub rt: RuntimeServiceClient<Channel>,
    /// CRI ImageService.
    pub img: ImageServiceClient<Channel>,
    /// berth.v1.Images.
    pub images: ImagesClient<Channel>,
    /// berth.v1.Containers.
    pub containers: ContainersClient<Channel>,
    /// berth.v1.Volumes.
    pub volumes: VolumesClient<Channel>,
    /// berth.v1.System.
    pub system: SystemClient<Channel>,
}

/// The socket path of a `-H` value (`unix:///path` or a bare path).
pub fn socket_path(host: &str) -> Result<String, CliError> {
    if let Some(p) = host.strip_prefix("unix://") {
        if p.starts_with('/') {
            return Ok(p.to_owned());
        }
    } else if host.starts_with('/') {
        return Ok(host.to_owned());
    }
    Err(CliError::Usage(format!(
        "invalid host {host:?}: berthd listens on a Unix socket, use unix:///path/to/berth.sock"
    )))
}

/// Connects to berthd at `host`.
pub async fn connect(host: &str) -> Result<Daemon, CliError> {
    let path = socket_path(host)?;
    let fail = |reason: String| CliError::Connect {
        host: host.to_owned(),
        reason,
    };
    // Dial once first: the socket's own error is what a user can act on.
    tokio::net::UnixStream::connect(&path)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let channel = Endpoint::from_static("http://[::]:50051")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(stream))
            }
        }))
        .await
        .map_err(|e| {
            use std::error::Error;
            let mut reason = e.to_string();
            let mut cur = e.source();
            while let Some(s) = cur {
                reason = s.to_string();
                cur = s.source();
            }
            fail(reason)
        })?;
    Ok(Daemon {
        rt: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
        img: ImageServiceClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
        images: ImagesClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
        containers: ContainersClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
        volumes: VolumesClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
        system: SystemClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        assert_eq!(socket_path("unix:///run/b.sock").unwrap(), "/run/b.sock");
        assert_eq!(socket_path("/run/b.sock").unwrap(), "/run/b.sock");
        assert!(socket_path("tcp://1.2.3.4:2375").is_err());
        assert!(socket_path("unix://rel.sock").is_err());
    }

    #[tokio::test]
    async fn unreachable_daemon_says_how_to_start_it() {
        let dir = tempfile::tempdir().unwrap();
        let host = format!("unix://{}/none.sock", dir.path().display());
        let Err(e) = connect(&host).await else {
            panic!("connected to nothing")
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("Cannot connect to berthd at {host}: ")),
            "{msg}"
        );
        assert!(msg.contains("Is berthd running?"), "{msg}");
    }
}
