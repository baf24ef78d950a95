//! berth.v1 System: Info (daemon and host facts), DiskUsage and Prune.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use berth_proto::berth::v1 as api;
use berth_proto::berth::v1::system_server::System;
use tonic::{Request, Response, Status};
use tracing::{info, info_span, warn, Instrument};

use crate::api::containers::{ApiError, Engine};
use crate::pods::ContainerState;

/// berth.v1.System over the shared [`Engine`].
#[derive(Debug, Clone)]
pub struct SystemApi {
    engine: Arc<Engine>,
}

impl SystemApi {
    /// A service over `engine`.
    pub fn new(engine: Arc<Engine>) -> SystemApi {
        SystemApi { engine }
    }
}

/// `PRETTY_NAME` of an os-release file.
pub fn pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|l| {
        l.strip_prefix("PRETTY_NAME=")
            .map(|v| v.trim().trim_matches('"').to_string())
    })
}

/// `MemTotal` of /proc/meminfo, bytes.
pub fn mem_total(meminfo: &str) -> Option<i64> {
    meminfo.lines().find_map(|l| {
        let kb: i64 = l
            .strip_prefix("MemTotal:")?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    })
}

fn security_options() -> Vec<String> {
    let mut out = Vec::new();
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if status.lines().any(|l| l.starts_with("Seccomp:")) {
        out.push("seccomp".to_string());
    }
    if Path::new("/proc/self/ns/user").exists() {
        out.push("userns".to_string());
    }
    // Recursive read-only mounts need mount_setattr (Linux 5.12).
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut nums = release
        .split(['.', '-'])
        .filter_map(|p| p.parse::<u32>().ok());
    if (nums.next().unwrap_or(0), nums.next().unwrap_or(0)) >= (5, 12) {
        out.push("rro".to_string());
    }
    out
}

impl Engine {
    /// Info.
    pub async fn info(&self) -> Result<api::InfoResponse, ApiError> {
        let records = self.records().await?;
        let states: HashMap<String, ContainerState> = self
            .pods
            .all_containers()
            .await?
            .into_iter()
            .map(|c| (c.id, c.rec.state))
            .collect();
        let running = records
            .iter()
            .filter(|r| states.get(r.id()) == Some(&ContainerState::Running))
            .count() as i64;
        let images = self.db(|s| s.list_images()).await?.len() as i64;
        let cfg = self.pods.config();
        let net = self.pods.network().status();
        let uname = nix::sys::utsname::uname().ok();
        Ok(api::InfoResponse {
            version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: option_env!("BERTH_GIT_COMMIT").unwrap_or("").to_string(),
            api_version: "berth.v1".into(),
            containers: records.len() as i64,
            containers_running: running,
            containers_paused: 0,
            containers_stopped: records.len() as i64 - running,
            images,
            storage_driver: "overlay".into(),
            root_dir: cfg.root.to_string_lossy().into_owned(),
            state_dir: cfg.state.to_string_lossy().into_owned(),
            cgroup_driver: "cgroupfs".into(),
            cgroup_version: if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
                "2".into()
            } else {
                "1".into()
            },
            kernel_version: uname
                .as_ref()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            operating_system: std::fs::read_to_string("/etc/os-release")
                .ok()
                .and_then(|t| pretty_name(&t))
                .unwrap_or_else(|| "Linux".into()),
            architecture: std::env::consts::ARCH.to_string(),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get() as i64)
                .unwrap_or(1),
            memory_bytes: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|t| mem_total(&t))
                .unwrap_or(0),
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            runtime: "berth-runtime (in berth-shim)".into(),
            network_ready: net.ready(),
            network_message: net.reason().unwrap_or("").to_string(),
            registry_mirrors: Vec::new(),
            security_options: security_options(),
        })
    }

    /// DiskUsage.
    pub async fn disk_usage(&self) -> Result<api::DiskUsageResponse, ApiError> {
        let records = self.records().await?;
        let containers = self.pods.all_containers().await?;
        let images = self.db(|s| s.list_images()).await?;
        let mut chain_users: HashMap<String, usize> = HashMap::new();
        for img in &images {
            for c in &img.chain_ids {
                *chain_users.entry(c.clone()).or_default() += 1;
            }
        }
        let mut out = api::DiskUsageResponse::default();
        for img in &images {
            let shared = img
                .chain_ids
                .iter()
                .any(|c| chain_users.get(c).copied().unwrap_or(0) > 1);
            out.images.push(api::DiskUsageImage {
                id: img.id.clone(),
                repo_tags: img.repo_tags.clone(),
                size: img.size,
                // Per-layer sizes are not exposed by the store: an image
                // sharing any layer reports its whole size as shared.
                shared_size: if shared { img.size } else { 0 },
                containers: containers
                    .iter()
                    .filter(|c| c.rec.image_id == img.id)
                    .count() as i64,
                created: serde_json::from_str::<serde_json::Value>(&img.config)
                    .ok()
                    .and_then(|v| {
                        v.get("created")
                            .and_then(|c| c.as_str())
                            .map(str::to_string)
                    })
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(&c).ok())
                    .map(|t| t.timestamp())
                    .unwrap_or(0),
            });
        }
        for r in &records {
            let c = containers.iter().find(|c| c.id == r.id());
            let upper: Option<std::path::PathBuf> = c.map(|c| c.rec.data_dir.join("upper"));
            let size = match upper {
                Some(u) => {
                    tokio::task::spawn_blocking(move || crate::images::dir_usage(&u).used_bytes)
                        .await?
                }
                None => 0,
            };
            out.containers.push(api::DiskUsageContainer {
                id: r.id().to_string(),
                name: r.name().to_string(),
                image: r.spec.image.clone(),
                size_rw: size,
                state: c
                    .map(|c| {
                        super::containers::lifecycle::state_name(c.rec.state, r.state.restarting)
                    })
                    .unwrap_or("dead")
                    .to_string(),
            });
        }
        let used = self.volumes_in_use().await?;
        for v in self.db(|s| s.list_volumes()).await? {
            let dir = self.volumes_dir().join(&v.name);
            let size =
                tokio::task::spawn_blocking(move || crate::images::dir_usage(&dir).used_bytes)
                    .await?;
            out.volumes.push(api::DiskUsageVolume {
                links: used.get(&v.name).map(Vec::len).unwrap_or(0) as i64,
                name: v.name,
                size,
            });
        }
        let (usage, _) = self
            .images
            .fs_usage()
            .await
            .map_err(|e| ApiError::FailedPrecondition(crate::error::chain(&e)))?;
        out.layers_size = usage.used_bytes;
        Ok(out)
    }

    /// Prune: stopped berth containers, then dangling images (every image
    /// no container uses with `all`), then unused anonymous volumes.
    pub async fn prune(
        &self,
        all: bool,
        volumes: bool,
    ) -> Result<api::SystemPruneResponse, ApiError> {
        let mut out = api::SystemPruneResponse::default();
        for r in self.records().await? {
            let _g = self.lock(r.id()).await;
            let Ok(c) = self.pods.load_container(r.id()).await else {
                continue;
            };
            if c.rec.state == ContainerState::Running || r.state.restarting {
                continue;
            }
            let upper = c.rec.data_dir.join("upper");
            let size =
                tokio::task::spawn_blocking(move || crate::images::dir_usage(&upper).used_bytes)
                    .await?;
            match self.remove_locked(r.clone(), false, false).await {
                Ok(_) => {
                    out.reclaimed_bytes += size;
                    out.containers_deleted.push(r.id().to_string());
                }
                Err(e) => {
                    warn!(container_id = %r.id(), error = %crate::error::chain(&e), "prune: cannot remove")
                }
            }
        }
        // Images: the Images service's prune (the CRI containers of the
        // kubelet or crictl count as users too).
        let images = crate::api::images::maint::prune(self.images(), self.pods(), all)
            .await
            .map_err(|e| ApiError::Images(Box::new(e)))?;
        out.reclaimed_bytes += images.reclaimed_bytes;
        out.images_deleted = images.deleted;
        if volumes {
            let (deleted, bytes) = self.prune_volumes(false).await?;
            out.volumes_deleted = deleted;
            out.reclaimed_bytes += bytes;
        }
        info!(
            containers = out.containers_deleted.len(),
            images = out.images_deleted.len(),
            volumes = out.volumes_deleted.len(),
            "system prune"
        );
        Ok(out)
    }
}

fn reply<T>(r: Result<T, ApiError>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl System for SystemApi {
    async fn info(
        &self,
        _request: Request<api::InfoRequest>,
    ) -> Result<Response<api::InfoResponse>, Status> {
        reply(self.engine.info().await)
    }

    async fn disk_usage(
        &self,
        _request: Request<api::DiskUsageRequest>,
    ) -> Result<Response<api::DiskUsageResponse>, Status> {
        reply(self.engine.disk_usage().await)
    }

    async fn prune(
        &self,
        request: Request<api::SystemPruneRequest>,
    ) -> Result<Response<api::SystemPruneResponse>, Status> {
        let r = request.into_inner();
        let span = info_span!("berth.SystemPrune", all = r.all, volumes = r.volumes);
        reply(self.engine.prune(r.all, r.volumes).instrument(span).await)
    }
}

/// The System gRPC service of a daemon.
pub fn server(
    pods: &Arc<crate::pods::PodManager>,
    images: &Arc<crate::images::ImageManager>,
) -> berth_proto::berth::v1::system_server::SystemServer<SystemApi> {
    berth_proto::berth::v1::system_server::SystemServer::new(SystemApi::new(Engine::shared(
        pods, images,
    )))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn host_facts_parse() {
        assert_eq!(
            pretty_name("NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n")
                .as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(
            mem_total("MemTotal:        2048 kB\nMemFree: 1 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(mem_total("nothing"), None);
        assert!(security_options().contains(&"seccomp".to_string()));
    }
}
