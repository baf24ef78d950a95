//! Pods and containers, independent of gRPC: the CRI RuntimeService's
//! domain logic. [`PodManager`] keeps every object in the metadata DB,
//! runs CNI for pod networks and drives one `berth-shim` per pod over the
//! shim v2 Task API (the protocol is in docs/architecture.md, "Pods and
//! containers").
//!
//! Locking is per object ([`locks::Locks`]): pod operations take the pod's
//! lock exclusively, container creation takes it shared, container
//! operations take the container's lock. No global lock is held across CNI,
//! shim start or process start.

pub mod berth;
pub mod container;
pub mod convert;
pub mod events;
pub mod exec;
pub mod fifo;
pub mod layers;
pub mod locks;
pub mod reconcile;
pub mod records;
pub mod restart;
pub mod sandbox;
pub mod shim;
pub mod stats;
pub mod update;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::config::Config;
use crate::container_spec::SpecBuildError;
use crate::network::{NetnsError, Network, NetworkError};
use crate::pod_files::PodFilesError;
use crate::store::{ObjectKind, Store, StoreError};

pub use records::{Container, ContainerState, Pod, PodState};
pub use shim::{ShimClient, ShimError};

/// Errors of pod and container operations.
#[derive(Debug, thiserror::Error)]
pub enum PodError {
    /// No such pod or container.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// "pod sandbox" or "container".
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The name is taken.
    #[error("{kind} name {name:?} is already reserved by {existing}")]
    AlreadyExists {
        /// "pod sandbox" or "container".
        kind: &'static str,
        /// The name key.
        name: String,
        /// The id holding it (may be empty when unknown).
        existing: String,
    },
    /// The request is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// The object is not in a state that allows the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The metadata DB failed.
    #[error("metadata store")]
    Store(#[from] StoreError),
    /// CNI failed.
    #[error("pod network")]
    Network(#[from] NetworkError),
    /// The pod netns could not be created or removed.
    #[error("pod network namespace")]
    Netns(#[from] NetnsError),
    /// Pod files could not be written.
    #[error("pod files")]
    PodFiles(#[from] PodFilesError),
    /// The OCI spec could not be built.
    #[error("building the OCI spec")]
    Spec(#[from] SpecBuildError),
    /// The shim failed.
    #[error("shim of pod {pod_id}")]
    Shim {
        /// The pod.
        pod_id: String,
        /// The shim error (boxed: ttrpc errors are large).
        #[source]
        source: Box<ShimError>,
    },
    /// A file operation failed.
    #[error("{op} {path}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A stored config could not be decoded.
    #[error("stored config of {id}")]
    Decode {
        /// The object id.
        id: String,
        /// The protobuf error.
        #[source]
        source: prost::DecodeError,
    },
    /// A stored record or spec could not be (de)serialised.
    #[error("JSON of {id}")]
    Json {
        /// The object id.
        id: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A blocking task failed.
    #[error("background task")]
    Task(#[from] tokio::task::JoinError),
    /// Something did not finish in time.
    #[error("{what} of {id} timed out")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// The object id.
        id: String,
    },
}

impl PodError {
    /// Builds an I/O error mapper.
    pub fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> PodError {
        let path = path.to_path_buf();
        move |source| PodError::Io { op, path, source }
    }

    /// Builds a shim error mapper.
    pub fn shim(pod_id: &str) -> impl FnOnce(ShimError) -> PodError {
        let pod_id = pod_id.to_string();
        move |source| PodError::Shim {
            pod_id,
            source: Box::new(source),
        }
    }

    pub(crate) fn pod_not_found(id: &str) -> PodError {
        PodError::NotFound {
            kind: "pod sandbox",
            id: id.to_string(),
        }
    }

    pub(crate) fn container_not_found(id: &str) -> PodError {
        PodError::NotFound {
            kind: "container",
            id: id.to_string(),
        }
    }
}

/// The runtime handler name berth answers to (besides the default "").
pub const RUNTIME_HANDLER: &str = "berth";

/// Paths and limits the manager runs with.
#[derive(Debug, Clone)]
pub struct PodsConfig {
    /// The state dir (tmpfs): pods/, containers/, netns/, events.sock.
    pub state: PathBuf,
    /// The root dir: writable layers and volumes under containers/.
    pub root: PathBuf,
    /// berthd's CRI socket (passed to shims as `-address`).
    pub cri_socket: PathBuf,
    /// The shim binary.
    pub shim_path: PathBuf,
    /// Default pod cgroup parent.
    pub cgroup_parent: String,
    /// ExecSync output cap per stream.
    pub exec_sync_max_output: usize,
}

impl PodsConfig {
    /// From the daemon config.
    pub fn from_config(c: &Config) -> PodsConfig {
        PodsConfig {
            state: c.state.clone(),
            root: c.root.clone(),
            cri_socket: c.socket_path(),
            shim_path: c.runtime.shim_path(),
            cgroup_parent: c.runtime.cgroup_parent.clone(),
            exec_sync_max_output: c.runtime.exec_sync_max_output,
        }
    }

    /// `<state>/pods/<id>`
    pub fn pod_dir(&self, id: &str) -> PathBuf {
        self.state.join("pods").join(id)
    }

    /// `<state>/netns`
    pub fn netns_dir(&self) -> PathBuf {
        self.state.join("netns")
    }

    /// `<state>/containers/<id>` (bundle parent)
    pub fn container_state_dir(&self, id: &str) -> PathBuf {
        self.state.join("containers").join(id)
    }

    /// `<root>/containers/<id>` (writable layer, volumes)
    pub fn container_data_dir(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// `<state>/events.sock`
    pub fn events_socket(&self) -> PathBuf {
        self.state.join("events.sock")
    }
}

/// The pods and containers side of berthd.
#[derive(Debug)]
pub struct PodManager {
    cfg: PodsConfig,
    store: Arc<Store>,
    network: Network,
    shims: Mutex<HashMap<String, ShimClient>>,
    locks: locks::Locks,
    events: broadcast::Sender<berth_proto::cri::ContainerEventResponse>,
    /// Last CPU sample per container (ns timestamp, usage ns), for
    /// `usage_nano_cores`.
    cpu_samples: Mutex<HashMap<String, (i64, u64)>>,
}

/// Nanoseconds since the epoch.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new random 64-hex id.
pub fn new_id() -> Result<String, PodError> {
    let mut buf = [0u8; 32];
    let path = Path::new("/dev/urandom");
    std::io::Read::read_exact(
        &mut std::fs::File::open(path).map_err(PodError::io("opening", path))?,
        &mut buf,
    )
    .map_err(PodError::io("reading", path))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

impl PodManager {
    /// A manager over an opened store.
    pub fn new(cfg: PodsConfig, store: Arc<Store>, network: Network) -> PodManager {
        let (events, _) = broadcast::channel(1024);
        PodManager {
            cfg,
            store,
            network,
            shims: Mutex::new(HashMap::new()),
            locks: locks::Locks::default(),
            events,
            cpu_samples: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &PodsConfig {
        &self.cfg
    }

    /// The CNI front end.
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// The store.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Runs a store operation on the blocking pool (SQLite fsyncs).
    pub(crate) async fn db<T, F>(&self, f: F) -> Result<T, PodError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.store.clone();
        Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
    }

    /// The pod `id`, or NotFound.
    pub async fn load_pod(&self, id: &str) -> Result<Pod, PodError> {
        let key = id.to_string();
        match self
            .db(move |s| s.get_object(ObjectKind::Pod, &key))
            .await?
        {
            Some(row) => Pod::from_row(&row),
            None => Err(PodError::pod_not_found(id)),
        }
    }

    /// Saves a pod's record and config.
    pub async fn save_pod(&self, pod: &Pod) -> Result<(), PodError> {
        let row = pod.to_row()?;
        self.db(move |s| s.update_object(ObjectKind::Pod, &row.id, &row.config, &row.record))
            .await?;
        Ok(())
    }

    /// The container `id`, or NotFound.
    pub async fn load_container(&self, id: &str) -> Result<Container, PodError> {
        let key = id.to_string();
        match self
            .db(move |s| s.get_object(ObjectKind::Container, &key))
            .await?
        {
            Some(row) => Container::from_row(&row),
            None => Err(PodError::container_not_found(id)),
        }
    }

    /// Saves a container's record and config (a removed row stays removed).
    pub async fn save_container(&self, c: &Container) -> Result<(), PodError> {
        let row = c.to_row()?;
        self.db(move |s| s.update_object(ObjectKind::Container, &row.id, &row.config, &row.record))
            .await?;
        Ok(())
    }

    /// Every pod.
    pub async fn all_pods(&self) -> Result<Vec<Pod>, PodError> {
        let rows = self.db(|s| s.list_objects(ObjectKind::Pod)).await?;
        rows.iter().map(Pod::from_row).collect()
    }

    /// Every container.
    pub async fn all_containers(&self) -> Result<Vec<Container>, PodError> {
        let rows = self.db(|s| s.list_objects(ObjectKind::Container)).await?;
        rows.iter().map(Container::from_row).collect()
    }

    /// The containers of one pod.
    pub async fn pod_containers(&self, pod_id: &str) -> Result<Vec<Container>, PodError> {
        Ok(self
            .all_containers()
            .await?
            .into_iter()
            .filter(|c| c.pod_id == pod_id)
            .collect())
    }

    /// A running container and its pod's shim, for operations on its
    /// process (ExecSync, log reopening); FailedPrecondition otherwise.
    pub async fn running_container_shim(
        &self,
        id: &str,
    ) -> Result<(Container, ShimClient), PodError> {
        let c = self.load_container(id).await?;
        if c.rec.state != ContainerState::Running {
            return Err(PodError::FailedPrecondition(format!(
                "container {id} is not running"
            )));
        }
        let pod = self.load_pod(&c.pod_id).await?;
        let shim = self.shim_for(&pod).await?;
        Ok((c, shim))
    }

    /// The shim client of a pod, connecting (again) when needed.
    pub async fn shim_for(&self, pod: &Pod) -> Result<ShimClient, PodError> {
        if let Some(c) = self.cached_shim(&pod.id) {
            return Ok(c);
        }
        if pod.rec.shim_address.is_empty() {
            return Err(PodError::FailedPrecondition(format!(
                "pod sandbox {} has no shim",
                pod.id
            )));
        }
        let client = ShimClient::connect(&pod.rec.shim_address)
            .await
            .map_err(PodError::shim(&pod.id))?;
        self.cache_shim(&pod.id, client.clone());
        Ok(client)
    }

    fn cached_shim(&self, pod_id: &str) -> Option<ShimClient> {
        self.shims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(pod_id)
            .cloned()
    }

    pub(crate) fn cache_shim(&self, pod_id: &str, client: ShimClient) {
        self.shims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(pod_id.to_string(), client);
    }

    pub(crate) fn forget_shim(&self, pod_id: &str) {
        self.shims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(pod_id);
    }
}
