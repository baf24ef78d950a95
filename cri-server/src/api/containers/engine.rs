//! The Docker-style container engine shared by the berth.v1 services: the
//! records, name/id resolution, per-container locks and Create.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use berth_proto::berth::v1 as api;
use prost::Message;
use serde::{Deserialize, Serialize};
use tracing::{info, info_span, warn, Instrument};

use super::error::ApiError;
use super::names::{generated_name, random_pair, validate_container_name};
use super::spec::{plan, volume_data_dir, ImageDefaults, PlanInput};
use crate::images::ImageManager;
use crate::pods::layers::copy_image_dir;
use crate::pods::{new_id, now_nanos, PodManager};
use crate::store::{DockerRow, VolumeRow};

/// Prefix of the placeholder id of a container being created.
const PENDING: &str = "pending-";

/// berthd's own state of a Docker-style container (JSON in the DB).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct DockerState {
    /// Restarts made by the restart policy.
    #[serde(default)]
    pub restart_count: u32,
    /// Stopped by the user (Stop/Restart): policies leave it alone.
    #[serde(default)]
    pub manually_stopped: bool,
    /// The Docker entrypoint and cmd it runs.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// See `entrypoint`.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// The image id.
    #[serde(default)]
    pub image_id: String,
    /// Creation time, ns since the epoch.
    #[serde(default)]
    pub created_at: i64,
    /// The pod's CRI log directory.
    #[serde(default)]
    pub log_dir: PathBuf,
    /// The restart policy's current delay (Docker's backoff), ms.
    #[serde(default)]
    pub restart_delay_ms: u64,
    /// Being restarted by its policy (Docker's "restarting").
    #[serde(default)]
    pub restarting: bool,
}

impl DockerState {
    /// The process it runs: the entrypoint, then the cmd.
    pub fn process(&self) -> impl Iterator<Item = &String> {
        self.entrypoint.iter().chain(self.cmd.iter())
    }
}

/// A container as berth.v1 sees it.
#[derive(Debug, Clone)]
pub struct Record {
    /// The row.
    pub row: DockerRow,
    /// The decoded spec.
    pub spec: api::ContainerSpec,
    /// The decoded state.
    pub state: DockerState,
}

impl Record {
    /// Decodes a row.
    pub fn from_row(row: DockerRow) -> Result<Record, ApiError> {
        let spec =
            api::ContainerSpec::decode(row.spec.as_slice()).map_err(|e| ApiError::Corrupt {
                id: row.id.clone(),
                reason: e.to_string(),
            })?;
        let state = serde_json::from_str(&row.state).map_err(|e| ApiError::Corrupt {
            id: row.id.clone(),
            reason: e.to_string(),
        })?;
        Ok(Record { row, spec, state })
    }

    /// The row with the current spec and state encoded.
    pub fn to_row(&self) -> Result<DockerRow, ApiError> {
        let mut row = self.row.clone();
        row.spec = self.spec.encode_to_vec();
        row.state = serde_json::to_string(&self.state).map_err(|e| ApiError::Corrupt {
            id: row.id.clone(),
            reason: e.to_string(),
        })?;
        Ok(row)
    }

    /// The CRI container id.
    pub fn id(&self) -> &str {
        &self.row.id
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.row.name
    }

    /// The restart policy name ("no" when unset).
    pub fn policy(&self) -> (&str, u32) {
        match &self.spec.restart {
            Some(r) if !r.name.is_empty() => (r.name.as_str(), r.maximum_retry_count),
            _ => ("no", 0),
        }
    }
}

/// Picks `reference` among `rows`: exact name, exact id, then a unique id
/// prefix.
pub fn resolve_in<'a>(rows: &'a [DockerRow], reference: &str) -> Result<&'a DockerRow, ApiError> {
    let r = reference.strip_prefix('/').unwrap_or(reference);
    if r.is_empty() {
        return Err(ApiError::InvalidArgument(
            "a container name or id is required".into(),
        ));
    }
    let live = || rows.iter().filter(|row| !row.id.starts_with(PENDING));
    if let Some(row) = live().find(|row| row.name == r || row.id == r) {
        return Ok(row);
    }
    let matches: Vec<&DockerRow> = live().filter(|row| row.id.starts_with(r)).collect();
    match matches.len() {
        0 => Err(ApiError::no_such_container(reference)),
        1 => Ok(matches[0]),
        n => Err(ApiError::InvalidArgument(format!(
            "{reference} matches {n} containers, use more characters"
        ))),
    }
}

/// The Docker-style engine over the pod manager.
#[derive(Debug)]
pub struct Engine {
    pub(crate) pods: Arc<PodManager>,
    pub(crate) images: Arc<ImageManager>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Exit codes of containers removed after they exited (auto-remove),
    /// for a Wait that comes late.
    pub(crate) last_exit: Mutex<HashMap<String, i32>>,
}

static ENGINES: Mutex<Vec<Weak<Engine>>> = Mutex::new(Vec::new());

impl Engine {
    /// The engine of this pod manager: made (and its restart supervisor
    /// started) by the first service that asks, shared by the others.
    pub fn shared(pods: &Arc<PodManager>, images: &Arc<ImageManager>) -> Arc<Engine> {
        let mut all = ENGINES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.retain(|w| w.strong_count() > 0);
        if let Some(e) = all
            .iter()
            .filter_map(Weak::upgrade)
            .find(|e| Arc::ptr_eq(&e.pods, pods))
        {
            return e;
        }
        let engine = Arc::new(Engine {
            pods: pods.clone(),
            images: images.clone(),
            locks: Mutex::new(HashMap::new()),
            last_exit: Mutex::new(HashMap::new()),
        });
        all.push(Arc::downgrade(&engine));
        super::supervisor::start(&engine);
        engine
    }

    /// The pod manager.
    pub fn pods(&self) -> &Arc<PodManager> {
        &self.pods
    }

    /// The image manager.
    pub fn images(&self) -> &Arc<ImageManager> {
        &self.images
    }

    /// `<root>/volumes`.
    pub fn volumes_dir(&self) -> PathBuf {
        self.pods.config().root.join("volumes")
    }

    /// The per-container operation lock (serialises Start/Stop/Remove and
    /// the restart supervisor).
    pub(crate) async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(id.to_string())
            .or_default()
            .clone();
        m.lock_owned().await
    }

    pub(crate) fn forget_lock(&self, id: &str) {
        self.locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    /// Runs a store call on the blocking pool.
    pub(crate) async fn db<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&crate::store::Store) -> Result<T, crate::store::StoreError> + Send + 'static,
    {
        let store = self.pods.store().clone();
        Ok(tokio::task::spawn_blocking(move || f(&store)).await??)
    }

    /// Every created container (not those being created).
    pub async fn records(&self) -> Result<Vec<Record>, ApiError> {
        let rows = self.db(|s| s.list_docker()).await?;
        rows.into_iter()
            .filter(|r| !r.id.starts_with(PENDING))
            .map(Record::from_row)
            .collect()
    }

    /// Resolves a name, id or unique id prefix.
    pub async fn resolve(&self, reference: &str) -> Result<Record, ApiError> {
        let rows = self.db(|s| s.list_docker()).await?;
        Record::from_row(resolve_in(&rows, reference)?.clone())
    }

    /// The record of `id` as stored now (NotFound when removed).
    pub async fn reload(&self, id: &str) -> Result<Record, ApiError> {
        let key = id.to_string();
        match self.db(move |s| s.get_docker(&key)).await? {
            Some(row) => Record::from_row(row),
            None => Err(ApiError::no_such_container(id)),
        }
    }

    /// Saves a record's spec and state.
    pub async fn save(&self, rec: &Record) -> Result<(), ApiError> {
        let row = rec.to_row()?;
        let id = rec.row.id.clone();
        self.db(move |s| s.update_docker(&id, &row)).await?;
        Ok(())
    }

    /// Makes a volume's directory and record if missing; returns whether it
    /// is new (then empty, to be seeded from the image).
    pub async fn ensure_volume(
        &self,
        name: &str,
        anonymous: bool,
        labels: &HashMap<String, String>,
    ) -> Result<bool, ApiError> {
        let data = volume_data_dir(&self.volumes_dir(), name);
        std::fs::create_dir_all(&data).map_err(ApiError::io("creating volume", &data))?;
        let row = VolumeRow {
            name: name.to_string(),
            created: now_nanos() / 1_000_000_000,
            labels: serde_json::to_string(labels).unwrap_or_else(|_| "{}".into()),
            anonymous,
        };
        self.db(move |s| s.insert_volume(&row)).await
    }

    /// Create: translates the spec, reserves the name, makes volumes, then
    /// the pod and its container.
    pub async fn create(&self, spec: api::ContainerSpec) -> Result<(String, String), ApiError> {
        let image = spec.image.clone();
        if image.is_empty() {
            return Err(ApiError::InvalidArgument("an image is required".into()));
        }
        let key = image.clone();
        let stored = self
            .db(move |s| s.find_image(&key))
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("No such image: {image}")))?;
        let defaults = ImageDefaults::from_config_json(&stored.config);
        let pod_uid = new_id()?;
        let log_dir = self.pods.config().root.join("berth-logs").join(&pod_uid);
        let volumes_dir = self.volumes_dir();
        let given = if spec.name.is_empty() {
            None
        } else {
            Some(validate_container_name(&spec.name)?)
        };
        for attempt in 0..10u32 {
            let name = match &given {
                Some(n) => n.clone(),
                None => {
                    let (a, b) = random_pair();
                    generated_name(a, b, attempt)
                }
            };
            let mut free_port = pick_free_port;
            let mut volume_name = || new_id().unwrap_or_else(|_| format!("{:x}", now_nanos()));
            let p = plan(
                &spec,
                &mut PlanInput {
                    name: &name,
                    pod_uid: &pod_uid,
                    image: &defaults,
                    volumes_dir: &volumes_dir,
                    log_dir: &log_dir,
                    free_port: &mut free_port,
                    new_volume_name: &mut volume_name,
                },
            )?;
            let state = DockerState {
                entrypoint: p.entrypoint.clone(),
                cmd: p.cmd.clone(),
                image_id: stored.id.clone(),
                created_at: now_nanos(),
                log_dir: log_dir.clone(),
                ..Default::default()
            };
            let mut rec = Record {
                row: DockerRow {
                    id: format!("{PENDING}{pod_uid}"),
                    name: name.clone(),
                    pod_id: String::new(),
                    spec: Vec::new(),
                    state: String::new(),
                    created: now_nanos() / 1_000_000_000,
                },
                spec: p.spec.clone(),
                state,
            };
            let row = rec.to_row()?;
            if !self.db(move |s| s.insert_docker(&row)).await? {
                if given.is_some() {
                    let rows = self.db(|s| s.list_docker()).await?;
                    let holder = rows
                        .iter()
                        .find(|r| r.name == name)
                        .map(|r| r.id.clone())
                        .unwrap_or_default();
                    return Err(ApiError::Conflict(format!(
                        "Conflict. The container name \"/{name}\" is already in use by container \
                         \"{holder}\". You have to remove (or rename) that container to be able \
                         to reuse that name."
                    )));
                }
                continue;
            }
            let span = info_span!("create", container_name = %name);
            let pending = rec.row.id.clone();
            return match self
                .create_reserved(&mut rec, &p, &stored)
                .instrument(span)
                .await
            {
                Ok(()) => Ok((rec.row.id.clone(), name)),
                Err(e) => {
                    let _ = self.db(move |s| s.delete_docker(&pending)).await;
                    // Anonymous volumes were made for this container only.
                    for v in p.volumes.iter().filter(|v| v.anonymous) {
                        if let Err(err) = self.delete_volume_files(&v.name).await {
                            warn!(volume = %v.name, error = %crate::error::chain(&err), "cannot remove volume");
                        }
                    }
                    Err(e)
                }
            };
        }
        Err(ApiError::Conflict(
            "could not generate a free container name; give one with --name".into(),
        ))
    }

    async fn create_reserved(
        &self,
        rec: &mut Record,
        p: &super::spec::Plan,
        image: &crate::store::ImageRecord,
    ) -> Result<(), ApiError> {
        let mut layers = Vec::new();
        for chain in image.chain_ids.iter().rev() {
            let key = chain.clone();
            if let Some(path) = self.db(move |s| s.snapshot_path(&key)).await? {
                layers.push(path);
            }
        }
        for v in &p.volumes {
            let fresh = self
                .ensure_volume(&v.name, v.anonymous, &HashMap::new())
                .await?;
            if fresh {
                // Docker fills a new volume with what the image has there.
                let data = volume_data_dir(&self.volumes_dir(), &v.name);
                let dest = PathBuf::from(&v.destination);
                let l = layers.clone();
                tokio::task::spawn_blocking(move || copy_image_dir(&l, &dest, &data))
                    .await?
                    .map_err(ApiError::io(
                        "seeding volume",
                        &volume_data_dir(&self.volumes_dir(), &v.name),
                    ))?;
            }
        }
        for m in p.spec.mounts.iter().filter(|m| m.kind == "bind") {
            let src = Path::new(&m.source);
            if !src.exists() {
                std::fs::create_dir_all(src).map_err(ApiError::io("creating bind source", src))?;
            }
        }
        std::fs::create_dir_all(&rec.state.log_dir)
            .map_err(ApiError::io("creating", &rec.state.log_dir))?;
        let pod_id = self.pods.run_pod(p.pod.clone(), "").await?;
        let id = match self
            .pods
            .create_container(&pod_id, p.container.clone())
            .await
        {
            Ok(id) => id,
            Err(e) => {
                self.remove_pod(&pod_id).await;
                // The runtime resolves the program at create: a missing one
                // is the CLI's exit 127, as at start.
                let chain = crate::error::chain(&e);
                if chain.contains("executable file not found") {
                    return Err(ApiError::FailedPrecondition(format!(
                        "cannot create container {}: {chain}",
                        rec.row.name
                    )));
                }
                return Err(e.into());
            }
        };
        if let Err(e) = self.check_program(&id, rec, &p.spec.mounts).await {
            if let Err(err) = self.pods.remove_container(&id).await {
                warn!(container_id = %id, error = %crate::error::chain(&err), "cannot remove container");
            }
            self.remove_pod(&pod_id).await;
            return Err(e);
        }
        let pending = rec.row.id.clone();
        rec.row.id = id.clone();
        rec.row.pod_id = pod_id;
        let row = rec.to_row()?;
        self.db(move |s| s.update_docker(&pending, &row)).await?;
        info!(container_id = %id, name = %rec.row.name, "berth container created");
        Ok(())
    }

    /// The runtime looks a bare program name up in PATH at create, but
    /// only execs a path at start (and the container then just exits 1):
    /// a path is checked here, inside the mounted rootfs, so that a
    /// missing or non-executable program fails like Docker's (the CLI's 127
    /// and 126). Paths under a mount are not visible yet and not checked.
    async fn check_program(
        &self,
        id: &str,
        rec: &Record,
        mounts: &[api::Mount],
    ) -> Result<(), ApiError> {
        let Some(program) = rec.state.process().next() else {
            return Ok(());
        };
        if !program.contains('/') {
            return Ok(());
        }
        let c = self.pods.load_container(id).await?;
        let cwd = c
            .rec
            .process
            .get("cwd")
            .and_then(|v| v.as_str())
            .unwrap_or("/")
            .to_string();
        let path = super::copy::absolute(Path::new(&cwd), program);
        if mounts.iter().any(|m| path.starts_with(&m.destination)) {
            return Ok(());
        }
        let rootfs = c.rec.bundle.join("rootfs");
        let (name, shown) = (rec.row.name.clone(), program.clone());
        tokio::task::spawn_blocking(move || {
            use nix::fcntl::OFlag;
            use nix::sys::stat::Mode;
            let root = nix::fcntl::open(&rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| ApiError::io("opening", &rootfs)(e.into()))?;
            let fd = match berth_runtime::rootfs::safe_path::open_in_root(
                std::os::fd::AsFd::as_fd(&root),
                &path,
                OFlag::O_PATH,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(_) => {
                    return Err(ApiError::FailedPrecondition(format!(
                        "cannot create container {name}: exec: \"{shown}\": executable file not found in the container: no such file or directory"
                    )))
                }
            };
            let st = nix::sys::stat::fstat(&fd).map_err(|e| ApiError::io("stat", &path)(e.into()))?;
            let regular = st.st_mode & libc::S_IFMT == libc::S_IFREG;
            if !regular || st.st_mode & 0o111 == 0 {
                return Err(ApiError::FailedPrecondition(format!(
                    "cannot create container {name}: exec: \"{shown}\": permission denied"
                )));
            }
            Ok(())
        })
        .await?
    }

    /// Stops and removes a pod, logging failures.
    pub(crate) async fn remove_pod(&self, pod_id: &str) {
        if let Err(e) = self.pods.stop_pod(pod_id).await {
            warn!(%pod_id, error = %crate::error::chain(&e), "cannot stop pod");
        }
        if let Err(e) = self.pods.remove_pod(pod_id).await {
            warn!(%pod_id, error = %crate::error::chain(&e), "cannot remove pod");
        }
    }
}

/// A free port on `host_ip` (all addresses when empty) for `protocol`,
/// found by binding port 0.
pub fn pick_free_port(host_ip: &str, protocol: &str) -> Result<u32, String> {
    let ip = if host_ip.is_empty() {
        "0.0.0.0"
    } else {
        host_ip
    };
    let addr = format!("{ip}:0");
    let port = if protocol == "udp" {
        std::net::UdpSocket::bind(&addr)
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
    } else {
        std::net::TcpListener::bind(&addr)
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
    };
    port.map(u32::from)
        .map_err(|e| format!("binding {addr}: {e}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(id: &str, name: &str) -> DockerRow {
        DockerRow {
            id: id.into(),
            name: name.into(),
            pod_id: String::new(),
            spec: Vec::new(),
            state: "{}".into(),
            created: 0,
        }
    }

    #[test]
    fn resolution_by_name_id_and_prefix() {
        let rows = vec![
            row("abc123", "web"),
            row("abd456", "db"),
            row("pending-ff", "new"),
            row("ffff", "abc"),
        ];
        assert_eq!(resolve_in(&rows, "web").unwrap().id, "abc123");
        assert_eq!(resolve_in(&rows, "/db").unwrap().id, "abd456");
        assert_eq!(resolve_in(&rows, "abc1").unwrap().id, "abc123");
        // A name wins over an id prefix.
        assert_eq!(resolve_in(&rows, "abc").unwrap().id, "ffff");
        let e = resolve_in(&rows, "ab").unwrap_err();
        assert!(e.to_string().contains("matches 2 containers"), "{e}");
        assert!(matches!(
            resolve_in(&rows, "new"),
            Err(ApiError::NotFound(_))
        ));
        assert!(matches!(
            resolve_in(&rows, "zz"),
            Err(ApiError::NotFound(_))
        ));
        assert!(resolve_in(&rows, "").is_err());
    }

    #[test]
    fn free_ports_bind() {
        let p = pick_free_port("127.0.0.1", "tcp").unwrap();
        assert!(p > 0);
        assert!(pick_free_port("127.0.0.1", "udp").unwrap() > 0);
        assert!(pick_free_port("192.0.2.1", "tcp").is_err());
    }
}
