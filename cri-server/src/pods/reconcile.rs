//! Start-up reconciliation: reconnect to live shims, record exits that
//! happened while berthd was down, finish interrupted creations, and remove
//! leftovers (netns pins, pod and container dirs, snapshot references) of
//! objects the DB no longer has.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use nix::mount::{umount2, MntFlags};
use tracing::{info, warn};

use super::sandbox::remove_pod_dir;
use super::shim::{ShimClient, TaskStatus};
use super::{Container, ContainerState, Pod, PodError, PodManager, PodState};
use crate::network::PodNetns;
use crate::store::ObjectKind;

/// What reconciliation found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Pods whose shim answered.
    pub live_pods: usize,
    /// Pods whose shim is gone.
    pub dead_pods: usize,
    /// Pods whose set-up a restart interrupted (undone and forgotten).
    pub interrupted_pods: usize,
    /// Containers found exited (meanwhile or with their shim).
    pub exited_containers: usize,
    /// Containers still running, watched again.
    pub running_containers: usize,
    /// Leftover netns pins, pod dirs and container dirs removed.
    pub leftovers: usize,
}

fn entries(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default()
}

impl PodManager {
    /// Runs once at start-up, before the socket serves.
    pub async fn reconcile(self: &Arc<Self>) -> Result<ReconcileReport, PodError> {
        let mut report = ReconcileReport::default();
        let mut live: HashMap<String, ShimClient> = HashMap::new();
        let mut pods_kept: HashSet<String> = HashSet::new();
        for mut pod in self.all_pods().await? {
            if pod.rec.state == PodState::Creating {
                report.interrupted_pods += 1;
                self.forget_interrupted_pod(&mut pod).await?;
                continue;
            }
            pods_kept.insert(pod.id.clone());
            match self.probe_shim(&pod).await {
                Some(shim) => {
                    report.live_pods += 1;
                    self.cache_shim(&pod.id, shim.clone());
                    live.insert(pod.id.clone(), shim);
                }
                None => {
                    if !pod.rec.shim_address.is_empty() {
                        report.dead_pods += 1;
                    }
                    if pod.rec.state == PodState::Ready {
                        warn!(pod_id = %pod.id, "pod shim is gone; pod marked not ready");
                        pod.rec.state = PodState::NotReady;
                        self.save_pod(&pod).await?;
                    }
                }
            }
        }
        let mut containers_kept: HashSet<String> = HashSet::new();
        let mut refs: HashMap<String, i64> = HashMap::new();
        for mut c in self.all_containers().await? {
            if !pods_kept.contains(&c.pod_id) {
                // Its pod is gone: nothing can run it any more.
                self.delete_container(&c).await?;
                continue;
            }
            containers_kept.insert(c.id.clone());
            for chain in &c.rec.chain_ids {
                *refs.entry(chain.clone()).or_default() += 1;
            }
            match live.get(&c.pod_id) {
                Some(shim) => self.reconcile_live(shim, &mut c, &mut report).await?,
                None => {
                    if c.rec.state != ContainerState::Exited {
                        self.apply_exit(&mut c, None, None);
                        self.save_container(&c).await?;
                        report.exited_containers += 1;
                    }
                }
            }
        }
        report.leftovers += self.remove_leftovers(&pods_kept, &containers_kept).await;
        self.db(move |s| s.set_snapshot_refs(&refs)).await?;
        info!(?report, "reconciled pods and containers");
        Ok(report)
    }

    async fn probe_shim(&self, pod: &Pod) -> Option<ShimClient> {
        if pod.rec.shim_address.is_empty() {
            return None;
        }
        let shim = ShimClient::connect(&pod.rec.shim_address).await.ok()?;
        shim.connect_task(&pod.id).await.ok()?;
        Some(shim)
    }

    async fn reconcile_live(
        self: &Arc<Self>,
        shim: &ShimClient,
        c: &mut Container,
        report: &mut ReconcileReport,
    ) -> Result<(), PodError> {
        let state = shim.state(&c.id, "").await;
        match (c.rec.state, state) {
            (ContainerState::Running, Ok(st)) if st.status != TaskStatus::Stopped => {
                report.running_containers += 1;
                self.spawn_exit_waiter(shim.clone(), shim.address().to_string(), c.id.clone());
            }
            (ContainerState::Running, Ok(st)) => {
                self.apply_exit(
                    c,
                    Some(super::shim::TaskExit {
                        exit_status: st.exit_status,
                        exited_at: st.exited_at,
                    }),
                    None,
                );
                self.save_container(c).await?;
                report.exited_containers += 1;
            }
            (ContainerState::Running, Err(e)) => {
                self.apply_exit(c, None, Some(&e));
                self.save_container(c).await?;
                report.exited_containers += 1;
            }
            (ContainerState::Unknown, _) => {
                // A create the restart interrupted: unusable, but the kubelet
                // may still remove it.
                let _ = shim.delete(&c.id, "").await;
                self.apply_exit(c, None, None);
                c.rec.message = "creation interrupted by a berthd restart".into();
                self.save_container(c).await?;
                report.exited_containers += 1;
            }
            _ => {}
        }
        Ok(())
    }

    async fn forget_interrupted_pod(&self, pod: &mut Pod) -> Result<(), PodError> {
        warn!(pod_id = %pod.id, "pod set-up was interrupted; undoing it");
        self.teardown_pod(pod).await;
        let id = pod.id.clone();
        self.db(move |s| s.delete_object(ObjectKind::Pod, &id))
            .await?;
        Ok(())
    }

    async fn remove_leftovers(
        &self,
        pods: &HashSet<String>,
        containers: &HashSet<String>,
    ) -> usize {
        let cfg = self.cfg.clone();
        let (pods, containers) = (pods.clone(), containers.clone());
        let joined = tokio::task::spawn_blocking(move || {
            let mut n = 0;
            for (name, _) in entries(&cfg.netns_dir()) {
                if !pods.contains(&name) {
                    match PodNetns::at(&cfg.netns_dir(), &name).and_then(|ns| ns.remove()) {
                        Ok(()) => n += 1,
                        Err(e) => warn!(netns = %name, error = %crate::error::chain(&e), "cannot remove leftover netns"),
                    }
                }
            }
            for (name, path) in entries(&cfg.state.join("pods")) {
                if !pods.contains(&name) {
                    remove_pod_dir(&path);
                    n += 1;
                }
            }
            for dir in [cfg.state.join("containers"), cfg.root.join("containers")] {
                for (name, path) in entries(&dir) {
                    if !containers.contains(&name) {
                        let _ = umount2(&path.join("bundle/rootfs"), MntFlags::MNT_DETACH);
                        match std::fs::remove_dir_all(&path) {
                            Ok(()) => n += 1,
                            Err(err) => warn!(?err, dir = %path.display(), "cannot remove leftover container dir"),
                        }
                    }
                }
            }
            n
        })
        .await;
        joined.unwrap_or(0)
    }
}
