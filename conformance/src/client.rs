//! A CRI v1 client over a Unix socket for the conformance tests and the
//! pod benchmark: the raw tonic clients plus thin helpers that return the
//! gRPC [`Status`] unchanged, so tests can assert on codes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_proto::cri;
use berth_proto::cri::image_service_client::ImageServiceClient;
use berth_proto::cri::runtime_service_client::RuntimeServiceClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};
use tonic::{Code, Status};

/// CRI runtime and image clients sharing one lazily dialled channel.
#[derive(Clone)]
pub struct Cri {
    /// The RuntimeService client (call any RPC directly on a clone).
    pub rt: RuntimeServiceClient<Channel>,
    /// The ImageService client.
    pub img: ImageServiceClient<Channel>,
    socket: PathBuf,
}

impl std::fmt::Debug for Cri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cri").field("socket", &self.socket).finish()
    }
}

impl Cri {
    /// A client for `socket`; nothing is dialled until the first call.
    /// Must be created inside the tokio runtime that uses it.
    pub fn new(socket: &Path) -> Cri {
        let path = socket.to_path_buf();
        // tonic needs a URI; the connector below always dials the socket.
        let channel = Endpoint::from_static("http://[::]:50051")
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }));
        Cri {
            rt: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(64 << 20),
            img: ImageServiceClient::new(channel).max_decoding_message_size(64 << 20),
            socket: socket.to_path_buf(),
        }
    }

    /// The socket this client dials.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `Version`.
    pub async fn version(&self) -> Result<cri::VersionResponse, Status> {
        let req = cri::VersionRequest {
            version: "v1".into(),
        };
        Ok(self.rt.clone().version(req).await?.into_inner())
    }

    /// `Status` (verbose or not).
    pub async fn status(&self, verbose: bool) -> Result<cri::StatusResponse, Status> {
        let req = cri::StatusRequest { verbose };
        Ok(self.rt.clone().status(req).await?.into_inner())
    }

    /// `PullImage`; returns the image ref.
    pub async fn pull(&self, image: &str) -> Result<String, Status> {
        let req = cri::PullImageRequest {
            image: Some(image_spec(image)),
            ..Default::default()
        };
        Ok(self
            .img
            .clone()
            .pull_image(req)
            .await?
            .into_inner()
            .image_ref)
    }

    /// `ImageStatus`: `None` when absent.
    pub async fn image_status(&self, image: &str) -> Result<Option<cri::Image>, Status> {
        let req = cri::ImageStatusRequest {
            image: Some(image_spec(image)),
            verbose: false,
        };
        Ok(self.img.clone().image_status(req).await?.into_inner().image)
    }

    /// `RunPodSandbox`; returns the pod id.
    pub async fn run_pod(&self, config: &cri::PodSandboxConfig) -> Result<String, Status> {
        let req = cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        };
        Ok(self
            .rt
            .clone()
            .run_pod_sandbox(req)
            .await?
            .into_inner()
            .pod_sandbox_id)
    }

    /// `StopPodSandbox`.
    pub async fn stop_pod(&self, id: &str) -> Result<(), Status> {
        let req = cri::StopPodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt.clone().stop_pod_sandbox(req).await.map(drop)
    }

    /// `RemovePodSandbox`.
    pub async fn remove_pod(&self, id: &str) -> Result<(), Status> {
        let req = cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.into(),
        };
        self.rt.clone().remove_pod_sandbox(req).await.map(drop)
    }

    /// `PodSandboxStatus`.
    pub async fn pod_status(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::PodSandboxStatusResponse, Status> {
        let req = cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose,
        };
        Ok(self.rt.clone().pod_sandbox_status(req).await?.into_inner())
    }

    /// `ListPodSandbox`.
    pub async fn list_pods(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>, Status> {
        let req = cri::ListPodSandboxRequest { filter };
        Ok(self
            .rt
            .clone()
            .list_pod_sandbox(req)
            .await?
            .into_inner()
            .items)
    }

    /// `CreateContainer`; returns the container id.
    pub async fn create_container(
        &self,
        pod_id: &str,
        config: &cri::ContainerConfig,
        pod_config: &cri::PodSandboxConfig,
    ) -> Result<String, Status> {
        let req = cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.into(),
            config: Some(config.clone()),
            sandbox_config: Some(pod_config.clone()),
        };
        Ok(self
            .rt
            .clone()
            .create_container(req)
            .await?
            .into_inner()
            .container_id)
    }

    /// `StartContainer`.
    pub async fn start(&self, id: &str) -> Result<(), Status> {
        let req = cri::StartContainerRequest {
            container_id: id.into(),
        };
        self.rt.clone().start_container(req).await.map(drop)
    }

    /// `StopContainer` with a timeout in seconds.
    pub async fn stop(&self, id: &str, timeout: i64) -> Result<(), Status> {
        let req = cri::StopContainerRequest {
            container_id: id.into(),
            timeout,
        };
        self.rt.clone().stop_container(req).await.map(drop)
    }

    /// `RemoveContainer`.
    pub async fn remove(&self, id: &str) -> Result<(), Status> {
        let req = cri::RemoveContainerRequest {
            container_id: id.into(),
        };
        self.rt.clone().remove_container(req).await.map(drop)
    }

    /// `ContainerStatus` (the status message; `NotFound` if missing).
    pub async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus, Status> {
        self.container_status_full(id, false)
            .await?
            .status
            .ok_or_else(|| Status::internal(format!("ContainerStatus of {id}: no status")))
    }

    /// `ContainerStatus` with the info map.
    pub async fn container_status_full(
        &self,
        id: &str,
        verbose: bool,
    ) -> Result<cri::ContainerStatusResponse, Status> {
        let req = cri::ContainerStatusRequest {
            container_id: id.into(),
            verbose,
        };
        Ok(self.rt.clone().container_status(req).await?.into_inner())
    }

    /// `ListContainers`.
    pub async fn list_containers(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>, Status> {
        let req = cri::ListContainersRequest { filter };
        Ok(self
            .rt
            .clone()
            .list_containers(req)
            .await?
            .into_inner()
            .containers)
    }

    /// `ExecSync` with a timeout in seconds (0 = none).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: &[&str],
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse, Status> {
        let req = cri::ExecSyncRequest {
            container_id: id.into(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        };
        Ok(self.rt.clone().exec_sync(req).await?.into_inner())
    }

    /// `ExecSync` that must exit 0; returns stdout as text.
    pub async fn exec_ok(&self, id: &str, cmd: &[&str]) -> Result<String, Status> {
        let r = self.exec_sync(id, cmd, 30).await?;
        if r.exit_code != 0 {
            return Err(Status::unknown(format!(
                "exec {cmd:?} in {id} exited {}: stdout {:?} stderr {:?}",
                r.exit_code,
                String::from_utf8_lossy(&r.stdout),
                String::from_utf8_lossy(&r.stderr)
            )));
        }
        Ok(String::from_utf8_lossy(&r.stdout).into_owned())
    }

    /// Polls `ContainerStatus` until its state is `state` (or `timeout`
    /// passes: then `DeadlineExceeded` with the last state seen).
    pub async fn wait_state(
        &self,
        id: &str,
        state: cri::ContainerState,
        timeout: Duration,
    ) -> Result<cri::ContainerStatus, Status> {
        let start = Instant::now();
        loop {
            let s = self.container_status(id).await?;
            if s.state == state as i32 {
                return Ok(s);
            }
            if start.elapsed() > timeout {
                return Err(Status::deadline_exceeded(format!(
                    "container {id} still in state {:?} (reason {:?}) after {timeout:?}, wanted {state:?}",
                    cri::ContainerState::try_from(s.state),
                    s.reason
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Creates and starts a container in `pod_id`; returns its id.
    pub async fn create_started(
        &self,
        pod_id: &str,
        config: &cri::ContainerConfig,
        pod_config: &cri::PodSandboxConfig,
    ) -> Result<String, Status> {
        let id = self.create_container(pod_id, config, pod_config).await?;
        self.start(&id).await?;
        Ok(id)
    }

    /// Best-effort teardown of a pod (stop + remove, errors ignored but
    /// logged): tests call it at the end so a shared daemon stays tidy.
    pub async fn cleanup_pod(&self, id: &str) {
        if let Err(e) = self.stop_pod(id).await {
            tracing::warn!(pod = id, error = %e, "cleanup: StopPodSandbox");
        }
        if let Err(e) = self.remove_pod(id).await {
            tracing::warn!(pod = id, error = %e, "cleanup: RemovePodSandbox");
        }
    }

    /// Polls `Version` until it answers or `timeout` passes.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<cri::VersionResponse, Status> {
        let start = Instant::now();
        loop {
            match self.version().await {
                Ok(v) => return Ok(v),
                Err(e) if start.elapsed() > timeout => return Err(e),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
}

/// An `ImageSpec` naming `image`.
pub fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}

/// `key=value` pairs as a label/annotation map.
pub fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A container config for `image` running `command` (empty = the image's
/// entrypoint/cmd), logging to `<name>.log` in the pod's log directory.
pub fn container_config(name: &str, image: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(image_spec(image)),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        labels: labels(&[("conformance/container", name)]),
        linux: Some(cri::LinuxContainerConfig {
            resources: None,
            security_context: Some(cri::LinuxContainerSecurityContext {
                // What the kubelet sends for a default pod.
                namespace_options: Some(cri::NamespaceOption {
                    network: cri::NamespaceMode::Pod as i32,
                    pid: cri::NamespaceMode::Container as i32,
                    ipc: cri::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }),
        ..Default::default()
    }
}

/// Copies the pod's namespace options into the container's security
/// context, as the kubelet does (host network, shared PID namespace...).
pub fn match_pod_namespaces(config: &mut cri::ContainerConfig, pod: &cri::PodSandboxConfig) {
    let Some(opts) = pod
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
    else {
        return;
    };
    let linux = config.linux.get_or_insert_with(Default::default);
    let sc = linux.security_context.get_or_insert_with(Default::default);
    sc.namespace_options = Some(opts);
}

/// Whether `result` failed with `code`; on mismatch, a message for the assertion.
pub fn expect_code<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
) -> Result<(), String> {
    match result {
        Err(s) if s.code() == code => Ok(()),
        Err(s) => Err(format!(
            "wanted {code:?}, got {:?}: {}",
            s.code(),
            s.message()
        )),
        Ok(v) => Err(format!("wanted {code:?}, got success: {v:?}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn container_config_names_its_log() {
        let c = container_config("web", "img:1", &["sleep", "1"]);
        assert_eq!(c.log_path, "web.log");
        assert_eq!(c.command, vec!["sleep", "1"]);
        assert_eq!(c.image.unwrap().image, "img:1");
    }

    #[test]
    fn expect_code_distinguishes() {
        assert!(expect_code::<()>(Err(Status::not_found("x")), Code::NotFound).is_ok());
        assert!(expect_code::<()>(Err(Status::internal("x")), Code::NotFound).is_err());
        assert!(expect_code(Ok(1), Code::NotFound).is_err());
    }

    #[tokio::test]
    async fn missing_socket_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cri::new(&dir.path().join("none.sock"));
        let err = c.version().await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{err}");
    }
}
