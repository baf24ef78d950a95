//! CRI RuntimeService: handlers decode the request, call [`PodManager`]
//! and map the result. Exec, Attach and PortForward hand out URLs of the
//! streaming server ([`crate::streaming`]); without one they answer
//! `Unimplemented`.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::cri;
use berth_proto::cri::runtime_service_server::RuntimeService;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::{info_span, Instrument};

use crate::error::Error;
use crate::pods::convert;
use crate::pods::PodManager;
use crate::streaming::StreamingService;

/// The runtime name reported by `Version`.
pub const RUNTIME_NAME: &str = "berth";
/// The CRI API version served.
pub const RUNTIME_API_VERSION: &str = "v1";

/// What berth's runtime handler supports, as `Status` advertises it.
/// Recursive read-only mounts work (`rro`: mount_setattr with AT_RECURSIVE
/// in berth-runtime; critest's four specs pass). Pod user namespaces work:
/// the shim makes and pins the pod's user namespace with the kubelet's
/// mappings, and berth-runtime joins the host-owned pod netns before it.
pub const HANDLER_FEATURES: cri::RuntimeHandlerFeatures = cri::RuntimeHandlerFeatures {
    recursive_read_only_mounts: true,
    user_namespaces: true,
};

/// The tonic service.
#[derive(Debug, Clone)]
pub struct CriRuntimeService {
    pods: Arc<PodManager>,
    streaming: Option<Arc<StreamingService>>,
}

impl CriRuntimeService {
    /// A service over `pods` (no streaming server).
    pub fn new(pods: Arc<PodManager>) -> Self {
        CriRuntimeService {
            pods,
            streaming: None,
        }
    }

    /// Serves Exec, Attach and PortForward through `streaming`.
    pub fn with_streaming(mut self, streaming: Arc<StreamingService>) -> Self {
        self.streaming = Some(streaming);
        self
    }

    fn streaming(&self, rpc: &'static str) -> Result<&StreamingService, Status> {
        self.streaming.as_deref().ok_or_else(|| unimplemented(rpc))
    }
}

fn unimplemented(rpc: &'static str) -> Status {
    Error::Unimplemented { rpc }.into()
}

fn status_of(err: crate::pods::PodError) -> Status {
    Error::from(err).into()
}

/// The `Version` answer.
pub fn version() -> cri::VersionResponse {
    cri::VersionResponse {
        // The version of the kubelet-runtime API, as containerd reports it.
        version: "0.1.0".to_string(),
        runtime_name: RUNTIME_NAME.to_string(),
        runtime_version: env!("CARGO_PKG_VERSION").to_string(),
        runtime_api_version: RUNTIME_API_VERSION.to_string(),
    }
}

fn condition(kind: &str, ready: bool, reason: &str, message: &str) -> cri::RuntimeCondition {
    cri::RuntimeCondition {
        r#type: kind.to_string(),
        status: ready,
        reason: reason.to_string(),
        message: message.to_string(),
    }
}

#[tonic::async_trait]
impl RuntimeService for CriRuntimeService {
    type GetContainerEventsStream =
        Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send + 'static>>;

    async fn version(
        &self,
        _request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(version()))
    }

    async fn get_container_events(
        &self,
        _request: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let rx = self.pods.subscribe_events();
        // A slow reader that lagged loses events rather than blocking others.
        let stream = BroadcastStream::new(rx).filter_map(|r| r.ok().map(Ok));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let req = request.into_inner();
        let meta = req
            .config
            .as_ref()
            .and_then(|c| c.metadata.clone())
            .unwrap_or_default();
        let span = info_span!("RunPodSandbox", pod_id = tracing::field::Empty, pod = %meta.name, namespace = %meta.namespace, attempt = meta.attempt);
        async {
            let config = req.config.ok_or(Error::MissingField { field: "config" })?;
            let id = self.pods.run_pod(config, &req.runtime_handler).await?;
            tracing::Span::current().record("pod_id", id.as_str());
            Ok::<_, Error>(cri::RunPodSandboxResponse { pod_sandbox_id: id })
        }
        .instrument(span)
        .await
        .map(Response::new)
        .map_err(Status::from)
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let span = info_span!("StopPodSandbox", pod_id = %id);
        self.pods
            .stop_pod(&id)
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let span = info_span!("RemovePodSandbox", pod_id = %id);
        self.pods
            .remove_pod(&id)
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let req = request.into_inner();
        let span = info_span!("PodSandboxStatus", pod_id = %req.pod_sandbox_id);
        async {
            let pod = self.pods.load_pod(&req.pod_sandbox_id).await?;
            let containers = self.pods.pod_containers(&pod.id).await?;
            Ok::<_, crate::pods::PodError>(cri::PodSandboxStatusResponse {
                status: Some(convert::pod_status(&pod)),
                info: if req.verbose {
                    convert::pod_info(&pod)
                } else {
                    Default::default()
                },
                containers_statuses: containers.iter().map(convert::container_status).collect(),
                timestamp: crate::pods::now_nanos(),
            })
        }
        .instrument(span)
        .await
        .map(Response::new)
        .map_err(status_of)
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let filter = request.into_inner().filter;
        let span = info_span!("ListPodSandbox");
        let pods = self
            .pods
            .all_pods()
            .instrument(span)
            .await
            .map_err(status_of)?;
        let items = pods
            .iter()
            .filter(|p| p.rec.state != crate::pods::PodState::Creating)
            .filter(|p| convert::pod_matches(p, filter.as_ref()))
            .map(convert::pod_item)
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let req = request.into_inner();
        let name = req
            .config
            .as_ref()
            .and_then(|c| c.metadata.as_ref())
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let span = info_span!("CreateContainer", pod_id = %req.pod_sandbox_id, container = %name);
        async {
            let config = req.config.ok_or(Error::MissingField { field: "config" })?;
            let id = self
                .pods
                .create_container(&req.pod_sandbox_id, config)
                .await?;
            Ok::<_, Error>(cri::CreateContainerResponse { container_id: id })
        }
        .instrument(span)
        .await
        .map(Response::new)
        .map_err(Status::from)
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        let span = info_span!("StartContainer", container_id = %id);
        self.pods
            .start_container(&id)
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let req = request.into_inner();
        let span =
            info_span!("StopContainer", container_id = %req.container_id, timeout = req.timeout);
        self.pods
            .stop_container(&req.container_id, req.timeout)
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        let id = request.into_inner().container_id;
        let span = info_span!("RemoveContainer", container_id = %id);
        self.pods
            .remove_container(&id)
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let filter = request.into_inner().filter;
        let span = info_span!("ListContainers");
        let all = self
            .pods
            .all_containers()
            .instrument(span)
            .await
            .map_err(status_of)?;
        let containers = all
            .iter()
            .filter(|c| c.rec.state != crate::pods::ContainerState::Unknown)
            .filter(|c| convert::container_matches(c, filter.as_ref()))
            .map(convert::container_item)
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let req = request.into_inner();
        let span = info_span!("ContainerStatus", container_id = %req.container_id);
        let c = self
            .pods
            .load_container(&req.container_id)
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(convert::container_status(&c)),
            info: if req.verbose {
                convert::container_info(&c)
            } else {
                Default::default()
            },
        }))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        let req = request.into_inner();
        let span = info_span!("UpdateContainerResources", container_id = %req.container_id);
        self.pods
            .update_resources(&req.container_id, req.linux)
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        let id = request.into_inner().container_id;
        let span = info_span!("ReopenContainerLog", container_id = %id);
        self.pods
            .reopen_log(&id)
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let req = request.into_inner();
        let span = info_span!("ExecSync", container_id = %req.container_id, timeout = req.timeout);
        let out = self
            .pods
            .exec_sync(&req.container_id, req.cmd, req.timeout)
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(out.into()))
    }

    async fn exec(
        &self,
        request: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        let req = request.into_inner();
        let span = info_span!("Exec", container_id = %req.container_id, tty = req.tty);
        let url = self
            .streaming("Exec")?
            .exec(req)
            .instrument(span)
            .await
            .map_err(|e| Status::from(Error::from(e)))?;
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn attach(
        &self,
        request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        let req = request.into_inner();
        let span = info_span!("Attach", container_id = %req.container_id, tty = req.tty);
        let url = self
            .streaming("Attach")?
            .attach(req)
            .instrument(span)
            .await
            .map_err(|e| Status::from(Error::from(e)))?;
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        let req = request.into_inner();
        let span = info_span!("PortForward", pod_id = %req.pod_sandbox_id);
        let url = self
            .streaming("PortForward")?
            .port_forward(req)
            .instrument(span)
            .await
            .map_err(|e| Status::from(Error::from(e)))?;
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let id = request.into_inner().container_id;
        let span = info_span!("ContainerStats", container_id = %id);
        let stats = self
            .pods
            .container_stats(&id)
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(cri::ContainerStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let filter = request.into_inner().filter;
        let span = info_span!("ListContainerStats");
        let stats = self
            .pods
            .list_container_stats(filter.as_ref())
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        let span = info_span!("PodSandboxStats", pod_id = %id);
        let stats = self
            .pods
            .pod_stats(&id)
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(stats),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let filter = request.into_inner().filter;
        let span = info_span!("ListPodSandboxStats");
        let stats = self
            .pods
            .list_pod_stats(filter.as_ref())
            .instrument(span)
            .await
            .map_err(status_of)?;
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn update_runtime_config(
        &self,
        request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        // The pod CIDR lives in the CNI conflist; nothing to update here.
        let cidr = request
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        tracing::info!(pod_cidr = %cidr, "UpdateRuntimeConfig: the CNI conflist decides the pod CIDR");
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn status(
        &self,
        request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let verbose = request.into_inner().verbose;
        let net = self.pods.network().status();
        let conditions = vec![
            condition("RuntimeReady", true, "", ""),
            condition(
                "NetworkReady",
                net.ready(),
                if net.ready() {
                    ""
                } else {
                    "NetworkPluginNotReady"
                },
                net.reason()
                    .map(|r| format!("Network plugin returns error: {r}"))
                    .unwrap_or_default()
                    .as_str(),
            ),
        ];
        let handlers = ["", crate::pods::RUNTIME_HANDLER]
            .into_iter()
            .map(|name| cri::RuntimeHandler {
                name: name.to_string(),
                features: Some(HANDLER_FEATURES),
            })
            .collect();
        let mut info = std::collections::HashMap::new();
        if verbose {
            let cfg = self.pods.config();
            let net_cfg = self.pods.network().config();
            info.insert(
                "config".to_string(),
                serde_json::json!({
                    "shimPath": cfg.shim_path,
                    "cgroupParent": cfg.cgroup_parent,
                    "cniConfDir": net_cfg.conf_dir,
                    "cniBinDirs": net_cfg.bin_dirs,
                    "execSyncMaxOutput": cfg.exec_sync_max_output,
                })
                .to_string(),
            );
        }
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus { conditions }),
            info,
            runtime_handlers: handlers,
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: true,
            }),
        }))
    }

    async fn checkpoint_container(
        &self,
        _request: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        Err(unimplemented("CheckpointContainer"))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Err(unimplemented("ListMetricDescriptors"))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        Err(unimplemented("ListPodSandboxMetrics"))
    }

    async fn runtime_config(
        &self,
        _request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::network::{CniConfig, Network};
    use crate::pods::PodsConfig;
    use crate::store::Store;

    fn service(dir: &std::path::Path) -> CriRuntimeService {
        let (store, _) = Store::open(&dir.join("root")).unwrap();
        let cfg = PodsConfig {
            state: dir.join("state"),
            root: dir.join("root"),
            cri_socket: dir.join("state/berth.sock"),
            shim_path: dir.join("no-shim"),
            cgroup_parent: "/berth".into(),
            exec_sync_max_output: 1024,
        };
        let net = Network::new(
            CniConfig {
                conf_dir: dir.join("empty-cni"),
                bin_dirs: vec![],
            },
            dir.join("cache"),
        );
        CriRuntimeService::new(Arc::new(PodManager::new(cfg, Arc::new(store), net)))
    }

    #[tokio::test]
    async fn status_config_and_unknown_ids() {
        let dir = tempfile::tempdir().unwrap();
        let svc = service(dir.path());
        let st = svc
            .status(Request::new(cri::StatusRequest { verbose: true }))
            .await
            .unwrap()
            .into_inner();
        let conds = st.status.unwrap().conditions;
        assert!(conds[0].r#type == "RuntimeReady" && conds[0].status);
        assert!(conds[1].r#type == "NetworkReady" && !conds[1].status);
        assert!(!conds[1].message.is_empty());
        assert!(st.features.unwrap().supplemental_groups_policy);
        assert!(st.info.contains_key("config"));
        let rc = svc
            .runtime_config(Request::new(cri::RuntimeConfigRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            rc.linux.unwrap().cgroup_driver,
            cri::CgroupDriver::Cgroupfs as i32
        );
        // Unknown ids: status NotFound, stop and remove succeed.
        let id = "0".repeat(64);
        let err = svc
            .pod_sandbox_status(Request::new(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.clone(),
                verbose: false,
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let err = svc
            .container_status(Request::new(cri::ContainerStatusRequest {
                container_id: id.clone(),
                verbose: false,
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        svc.stop_pod_sandbox(Request::new(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        }))
        .await
        .unwrap();
        svc.remove_pod_sandbox(Request::new(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        }))
        .await
        .unwrap();
        svc.stop_container(Request::new(cri::StopContainerRequest {
            container_id: id.clone(),
            timeout: 0,
        }))
        .await
        .unwrap();
        svc.remove_container(Request::new(cri::RemoveContainerRequest {
            container_id: id.clone(),
        }))
        .await
        .unwrap();
        let err = svc
            .exec_sync(Request::new(cri::ExecSyncRequest {
                container_id: id,
                cmd: vec!["true".into()],
                timeout: 0,
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        let err = svc
            .exec(Request::new(cri::ExecRequest::default()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unimplemented);
        // A pod without metadata is refused before any work.
        let err = svc
            .run_pod_sandbox(Request::new(cri::RunPodSandboxRequest {
                config: Some(cri::PodSandboxConfig::default()),
                runtime_handler: String::new(),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let err = svc
            .run_pod_sandbox(Request::new(cri::RunPodSandboxRequest {
                config: Some(cri::PodSandboxConfig {
                    metadata: Some(cri::PodSandboxMetadata {
                        name: "n".into(),
                        uid: "u".into(),
                        namespace: "ns".into(),
                        attempt: 0,
                    }),
                    ..Default::default()
                }),
                runtime_handler: "nope".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let listed = svc
            .list_pod_sandbox(Request::new(cri::ListPodSandboxRequest { filter: None }))
            .await
            .unwrap()
            .into_inner();
        assert!(listed.items.is_empty());
    }
}
