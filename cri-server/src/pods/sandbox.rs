//! Pod sandbox lifecycle: RunPodSandbox, StopPodSandbox, RemovePodSandbox.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::cri;
use nix::mount::{umount2, MntFlags};
use tracing::{info, warn};

use super::records::{pod_name_key, PodRecord};
use super::shim::{CreateTask, ShimClient, ShimLaunch};
use super::{new_id, now_nanos, Pod, PodError, PodManager, PodState};
use crate::container_spec::{
    build_sandbox_spec, pinned_ns_dir, pod_cgroup_parent, SandboxSpecInput,
};
use crate::network::{PodNetns, PodNetworkRequest, PortMapping};
use crate::pod_files::{mount_pod_shm, unmount_pod_shm, write_pod_files, HostFiles};
use crate::store::ObjectKind;

/// SIGKILL.
pub(crate) const SIGKILL: u32 = 9;
/// How long a killed sandbox task may take to be reported gone.
const SANDBOX_KILL_WAIT: Duration = Duration::from_secs(10);

/// Whether the pod uses the host's network namespace.
pub fn host_network(config: &cri::PodSandboxConfig) -> bool {
    namespace_options(config).network == cri::NamespaceMode::Node as i32
}

/// The pod's namespace options (defaults when absent).
pub fn namespace_options(config: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

fn port_mappings(config: &cri::PodSandboxConfig) -> Vec<PortMapping> {
    config
        .port_mappings
        .iter()
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port).ok().filter(|p| *p > 0)?;
            let container_port = u16::try_from(p.container_port).ok()?;
            let protocol = match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
            Some(PortMapping {
                host_port,
                container_port,
                protocol: protocol.to_string(),
                host_ip: p.host_ip.clone(),
            })
        })
        .collect()
}

fn network_request(pod: &Pod, netns: &Path) -> PodNetworkRequest {
    let meta = pod.metadata();
    PodNetworkRequest {
        pod_id: pod.id.clone(),
        namespace: meta.namespace,
        name: meta.name,
        uid: meta.uid,
        netns: netns.to_path_buf(),
        port_mappings: port_mappings(&pod.config),
        bandwidth: None,
    }
}

/// The sandbox bundle of a pod dir.
pub fn bundle_dir(pod_dir: &Path) -> PathBuf {
    pod_dir.join("bundle")
}

impl PodManager {
    /// RunPodSandbox: reserves the name, then sets up network, pod files,
    /// shim and sandbox task. On failure everything done is undone.
    pub async fn run_pod(
        &self,
        config: cri::PodSandboxConfig,
        runtime_handler: &str,
    ) -> Result<String, PodError> {
        let meta = config
            .metadata
            .as_ref()
            .ok_or_else(|| PodError::InvalidArgument("pod sandbox metadata is required".into()))?;
        if meta.name.is_empty() || meta.namespace.is_empty() || meta.uid.is_empty() {
            return Err(PodError::InvalidArgument(
                "pod sandbox metadata needs name, namespace and uid".into(),
            ));
        }
        if !runtime_handler.is_empty() && runtime_handler != super::RUNTIME_HANDLER {
            return Err(PodError::InvalidArgument(format!(
                "unknown runtime handler {runtime_handler:?} (berth serves {:?} and the default)",
                super::RUNTIME_HANDLER
            )));
        }
        // Refuse bad user namespace options before any network work.
        crate::container_spec::pod_user_namespace(&config)?;
        let id = new_id()?;
        let dir = self.cfg.pod_dir(&id);
        let cgroup_parent = pod_cgroup_parent(&config, &self.cfg.cgroup_parent);
        let mut pod = Pod {
            id: id.clone(),
            config,
            rec: PodRecord {
                state: PodState::Creating,
                created_at: now_nanos(),
                dir,
                netns: None,
                ips: Vec::new(),
                network_down: true,
                shim_address: String::new(),
                pid: 0,
                cgroup_parent,
                runtime_handler: runtime_handler.to_string(),
            },
        };
        let row = pod.to_row()?;
        if !self
            .db(move |s| s.insert_object(ObjectKind::Pod, &row))
            .await?
        {
            let name = pod_name_key(&pod.config);
            let existing = self
                .all_pods()
                .await?
                .into_iter()
                .find(|p| pod_name_key(&p.config) == name)
                .map(|p| p.id)
                .unwrap_or_default();
            return Err(PodError::AlreadyExists {
                kind: "pod sandbox",
                name,
                existing,
            });
        }
        let _guard = self.locks.write(&id).await;
        match self.setup_pod(&mut pod).await {
            Ok(()) => {
                pod.rec.state = PodState::Ready;
                self.save_pod(&pod).await?;
                info!(pod_id = %id, ips = ?pod.rec.ips, "pod sandbox ready");
                Ok(id)
            }
            Err(err) => {
                warn!(pod_id = %id, error = %crate::error::chain(&err), "pod sandbox set-up failed, undoing");
                self.teardown_pod(&mut pod).await;
                let key = id.clone();
                if let Err(e) = self
                    .db(move |s| s.delete_object(ObjectKind::Pod, &key))
                    .await
                {
                    warn!(pod_id = %id, error = %crate::error::chain(&e), "cannot forget failed pod");
                }
                self.locks.forget(&id);
                Err(err)
            }
        }
    }

    async fn setup_pod(&self, pod: &mut Pod) -> Result<(), PodError> {
        let dir = pod.rec.dir.clone();
        std::fs::create_dir_all(&dir).map_err(PodError::io("creating", &dir))?;
        let mut network_req = None;
        if !host_network(&pod.config) {
            let (ns_dir, id) = (self.cfg.netns_dir(), pod.id.clone());
            let netns =
                tokio::task::spawn_blocking(move || PodNetns::create(&ns_dir, &id)).await??;
            pod.rec.netns = Some(netns.path().to_path_buf());
            if super::berth::wants_cni(&pod.config) {
                pod.rec.network_down = false;
                // Saved before ADD so a crash in between leaves a record to undo.
                self.save_pod(pod).await?;
                network_req = Some(network_request(pod, netns.path()));
            } else {
                // `--network none`: a namespace of its own with only lo; no
                // ADD, so no DEL either (network_down stays true).
                self.save_pod(pod).await?;
            }
        }
        // CNI ADD and the shim's start are independent (the sandbox joins
        // the netns by path; only the pod files need the IPs): run them side
        // by side. `join!`, not `try_join!`: a failed shim must not drop a
        // plugin mid-ADD, since the teardown that follows runs DEL.
        let cni = async {
            match &network_req {
                Some(req) => self.network.setup(req).await.map(Some),
                None => Ok(None),
            }
        };
        let (cni, shim) = tokio::join!(cni, self.start_sandbox(pod, &dir));
        if let Some(result) = cni? {
            // Not saved on its own: the addresses reach the store when the
            // pod is recorded ready, and undoing a crashed set-up (CNI DEL,
            // netns removal) needs only the netns saved above.
            pod.rec.ips = result.ips.iter().map(ToString::to_string).collect();
        }
        shim?;
        let (d, config, ips) = (dir.clone(), pod.config.clone(), pod.rec.ips.clone());
        tokio::task::spawn_blocking(move || {
            write_pod_files(&d, &config, &ips, &HostFiles::default())?;
            mount_pod_shm(&d, &config)
        })
        .await??;
        Ok(())
    }

    /// Writes the sandbox bundle, starts the pod's shim (its address saved
    /// before anything runs in it) and creates and starts the sandbox task.
    async fn start_sandbox(&self, pod: &mut Pod, dir: &Path) -> Result<(), PodError> {
        let bundle = bundle_dir(dir);
        std::fs::create_dir_all(&bundle).map_err(PodError::io("creating", &bundle))?;
        let spec = build_sandbox_spec(&SandboxSpecInput {
            pod_id: &pod.id,
            config: &pod.config,
            netns: pod.rec.netns.as_deref(),
            cgroup_parent: &pod.rec.cgroup_parent,
        })?;
        write_json(&bundle.join("config.json"), &spec, &pod.id)?;
        let events = self.cfg.events_socket();
        let shim = ShimClient::start(&ShimLaunch {
            shim_path: &self.cfg.shim_path,
            pod_id: &pod.id,
            pod_dir: dir,
            cri_socket: &self.cfg.cri_socket,
            events_socket: &events,
        })
        .await
        .map_err(PodError::shim(&pod.id))?;
        pod.rec.shim_address = shim.address().to_string();
        self.cache_shim(&pod.id, shim.clone());
        self.save_pod(pod).await?;
        let shim_err = PodError::shim(&pod.id);
        shim.create(&CreateTask {
            id: pod.id.clone(),
            bundle,
            ..Default::default()
        })
        .await
        .map_err(shim_err)?;
        pod.rec.pid = shim
            .start_task(&pod.id, "")
            .await
            .map_err(PodError::shim(&pod.id))?;
        Ok(())
    }

    /// Undoes what [`PodManager::setup_pod`] did, best effort (used after a
    /// failed set-up and by reconciliation).
    pub(crate) async fn teardown_pod(&self, pod: &mut Pod) {
        if let Err(e) = self.stop_sandbox_task(pod).await {
            warn!(pod_id = %pod.id, error = %crate::error::chain(&e), "cannot stop sandbox task");
        }
        self.shutdown_shim(pod).await;
        if let Err(e) = self.stop_network(pod).await {
            warn!(pod_id = %pod.id, error = %crate::error::chain(&e), "cannot tear the pod network down");
        }
        remove_pod_dir(&pod.rec.dir);
    }

    /// Kills the sandbox task (the pod init) and waits briefly for it.
    async fn stop_sandbox_task(&self, pod: &Pod) -> Result<(), PodError> {
        if pod.rec.shim_address.is_empty() {
            return Ok(());
        }
        let shim = match self.shim_for(pod).await {
            Ok(s) => s,
            // A dead shim took its task with it.
            Err(PodError::Shim { source, .. }) if source.is_unreachable() => return Ok(()),
            Err(e) => return Err(e),
        };
        match shim.kill(&pod.id, "", SIGKILL, true).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() || e.is_unreachable() => return Ok(()),
            Err(e)
                if e.code() == Some(containerd_shim_protos::ttrpc::Code::FAILED_PRECONDITION) => {}
            Err(e) => return Err(PodError::shim(&pod.id)(e)),
        }
        match shim.wait(&pod.id, "", Some(SANDBOX_KILL_WAIT)).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() || e.is_unreachable() => Ok(()),
            Err(e) => Err(PodError::shim(&pod.id)(e)),
        }
    }

    /// Deletes the sandbox task and asks the shim to exit.
    async fn shutdown_shim(&self, pod: &Pod) {
        if pod.rec.shim_address.is_empty() {
            return;
        }
        let shim = self.shim_for(pod).await;
        if let Err(PodError::Shim { source, .. }) = &shim {
            if source.is_unreachable() {
                // A dead shim leaves its socket file behind.
                if let Some(path) = pod.rec.shim_address.strip_prefix("unix://") {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
        if let Ok(shim) = shim {
            match shim.delete(&pod.id, "").await {
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.is_unreachable() => {}
                Err(e) => {
                    warn!(pod_id = %pod.id, error = %crate::error::chain(&e), "sandbox task delete failed")
                }
            }
            if let Err(e) = shim.shutdown(&pod.id).await {
                if !e.is_unreachable() {
                    warn!(pod_id = %pod.id, error = %crate::error::chain(&e), "shim shutdown failed");
                }
            }
        }
        self.forget_shim(&pod.id);
    }

    /// CNI DEL (once) and removal of the pinned netns.
    async fn stop_network(&self, pod: &mut Pod) -> Result<(), PodError> {
        let Some(path) = pod.rec.netns.clone() else {
            return Ok(());
        };
        if !pod.rec.network_down {
            self.network.teardown(&network_request(pod, &path)).await?;
            pod.rec.network_down = true;
        }
        let (dir, id) = (self.cfg.netns_dir(), pod.id.clone());
        tokio::task::spawn_blocking(move || PodNetns::at(&dir, &id)?.remove()).await??;
        Ok(())
    }

    /// StopPodSandbox: kills every container and the pod init, tears the
    /// network down. Stopping a stopped or unknown pod succeeds.
    pub async fn stop_pod(&self, id: &str) -> Result<(), PodError> {
        let _guard = self.locks.write(id).await;
        let mut pod = match self.load_pod(id).await {
            Ok(p) => p,
            // The kubelet expects stopping a removed pod to succeed.
            Err(PodError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_pod_locked(&mut pod).await
    }

    async fn stop_pod_locked(&self, pod: &mut Pod) -> Result<(), PodError> {
        for c in self.pod_containers(&pod.id).await? {
            self.stop_container(&c.id, 0).await?;
        }
        self.stop_sandbox_task(pod).await?;
        self.stop_network(pod).await?;
        if pod.rec.state != PodState::NotReady {
            pod.rec.state = PodState::NotReady;
            info!(pod_id = %pod.id, "pod sandbox stopped");
        }
        self.save_pod(pod).await?;
        Ok(())
    }

    /// RemovePodSandbox: stops the pod, removes its containers, the shim
    /// and every file. Removing an unknown pod succeeds.
    pub async fn remove_pod(&self, id: &str) -> Result<(), PodError> {
        let _guard = self.locks.write(id).await;
        let mut pod = match self.load_pod(id).await {
            Ok(p) => p,
            Err(PodError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.stop_pod_locked(&mut pod).await?;
        for c in self.pod_containers(id).await? {
            self.remove_container(&c.id).await?;
        }
        self.shutdown_shim(&pod).await;
        let dir = pod.rec.dir.clone();
        tokio::task::spawn_blocking(move || {
            unmount_pod_shm(&dir)?;
            remove_pod_dir(&dir);
            Ok::<_, PodError>(())
        })
        .await??;
        let key = id.to_string();
        self.db(move |s| s.delete_object(ObjectKind::Pod, &key))
            .await?;
        self.locks.forget(id);
        info!(pod_id = %id, "pod sandbox removed");
        Ok(())
    }
}

/// Unmounts what may still be mounted in a pod dir (pins a dead shim left,
/// the shm) and removes it. Best effort: logs what it cannot do.
pub(crate) fn remove_pod_dir(dir: &Path) {
    let ns = pinned_ns_dir(&bundle_dir(dir));
    if let Ok(entries) = std::fs::read_dir(&ns) {
        for e in entries.flatten() {
            let _ = umount2(&e.path(), MntFlags::MNT_DETACH);
        }
    }
    let _ = umount2(&dir.join("shm"), MntFlags::MNT_DETACH);
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => warn!(?err, dir = %dir.display(), "cannot remove pod dir"),
    }
}

/// Writes `value` as JSON to `path`.
pub(crate) fn write_json<T: serde::Serialize>(
    path: &Path,
    value: &T,
    id: &str,
) -> Result<(), PodError> {
    let data = serde_json::to_vec_pretty(value).map_err(|source| PodError::Json {
        id: id.to_string(),
        source,
    })?;
    std::fs::write(path, data).map_err(PodError::io("writing", path))
}
