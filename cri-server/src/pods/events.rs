//! Events: the CRI `GetContainerEvents` broadcast, and the containerd
//! Events ttrpc service shims publish to (`TTRPC_ADDRESS`).
//!
//! Shim events are a fast path only: exits are recorded from `Wait`, exit
//! files and reconciliation, so a lost event changes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use berth_proto::cri;
use containerd_shim_protos::events::task::{TaskExit, TaskOOM};
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{create_events, Events};
use containerd_shim_protos::ttrpc;
use containerd_shim_protos::ttrpc::r#async::{Server, TtrpcContext};
use tokio::sync::broadcast;
use tracing::{debug, info};

use super::convert::{container_status, pod_status};
use super::{now_nanos, Container, PodManager};

/// Errors serving the Events ttrpc service.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The socket could not be prepared.
    #[error("preparing events socket {path}")]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// ttrpc could not bind or start.
    #[error("serving events on {path}")]
    Serve {
        /// The socket path.
        path: PathBuf,
        /// The ttrpc error.
        #[source]
        source: ttrpc::Error,
    },
}

impl PodManager {
    /// A receiver of every container event from now on.
    pub fn subscribe_events(&self) -> broadcast::Receiver<cri::ContainerEventResponse> {
        self.events.subscribe()
    }

    /// Broadcasts a container event with its pod's current status.
    pub(crate) async fn emit_container_event(&self, c: &Container, kind: cri::ContainerEventType) {
        if self.events.receiver_count() == 0 {
            return;
        }
        let pod = self.load_pod(&c.pod_id).await.ok();
        let containers = self.pod_containers(&c.pod_id).await.unwrap_or_default();
        let ev = cri::ContainerEventResponse {
            container_id: c.id.clone(),
            container_event_type: kind as i32,
            created_at: now_nanos(),
            pod_sandbox_status: pod.as_ref().map(pod_status),
            containers_statuses: containers.iter().map(container_status).collect(),
        };
        // No receiver left is not an error.
        let _ = self.events.send(ev);
    }
}

/// The Events service the shims forward to.
struct Forwarder;

#[async_trait]
impl Events for Forwarder {
    async fn forward(
        &self,
        _ctx: &TtrpcContext,
        req: ForwardRequest,
    ) -> ttrpc::Result<containerd_shim_protos::protobuf::well_known_types::empty::Empty> {
        let env = req.envelope.as_ref();
        let topic = env.map(|e| e.topic.as_str()).unwrap_or_default();
        let value = env
            .and_then(|e| e.event.as_ref())
            .map(|a| a.value.as_slice())
            .unwrap_or_default();
        match topic {
            "/tasks/exit" => {
                if let Ok(ev) = TaskExit::parse_from_bytes(value) {
                    debug!(container_id = %ev.id, exit_status = ev.exit_status, "shim reported an exit");
                }
            }
            "/tasks/oom" => {
                if let Ok(ev) = TaskOOM::parse_from_bytes(value) {
                    info!(container_id = %ev.container_id, "shim reported an OOM kill");
                }
            }
            other => debug!(topic = %other, "shim event"),
        }
        Ok(Default::default())
    }
}

/// A running Events ttrpc server; dropped with the daemon.
pub struct EventsServer {
    server: Server,
}

impl std::fmt::Debug for EventsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventsServer").finish_non_exhaustive()
    }
}

impl EventsServer {
    /// Binds `path` (mode 0600, a stale socket replaced) and serves.
    pub async fn start(path: &Path) -> Result<EventsServer, EventsError> {
        let sock_err = |source| EventsError::Socket {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(sock_err)?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(sock_err(e)),
        }
        let addr = format!("unix://{}", path.display());
        let serve_err = |source| EventsError::Serve {
            path: path.to_path_buf(),
            source,
        };
        let mut server = Server::new()
            .bind(&addr)
            .map_err(serve_err)?
            .register_service(create_events(Arc::new(Forwarder)));
        std::fs::set_permissions(
            path,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
        )
        .map_err(sock_err)?;
        server.start().await.map_err(serve_err)?;
        Ok(EventsServer { server })
    }

    /// Stops serving.
    pub async fn shutdown(mut self) {
        let _ = self.server.shutdown().await;
    }
}
