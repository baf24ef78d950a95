//! ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats
//! from the shim's cgroup metrics plus the writable layer's disk usage.

use berth_proto::cri;
use containerd_shim_protos::cgroups::metrics::Metrics;
use tracing::debug;

use super::convert::container_stats_matches;
use super::{now_nanos, Container, ContainerState, Pod, PodError, PodManager};
use crate::images::dir_usage;
use crate::network::{netdev, PodNetns, POD_IFNAME};

fn u64v(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

/// CPU and memory of cgroup metrics.
fn usage(m: Option<&Metrics>, ts: i64) -> (Option<cri::CpuUsage>, Option<cri::MemoryUsage>) {
    let Some(m) = m else {
        return (None, None);
    };
    let cpu = m.cpu.as_ref().map(|c| cri::CpuUsage {
        timestamp: ts,
        usage_core_nano_seconds: u64v(c.usage.as_ref().map(|u| u.total).unwrap_or(0)),
        usage_nano_cores: None,
    });
    let memory = m.memory.as_ref().map(|mem| {
        let used = mem.usage.as_ref().map(|u| u.usage).unwrap_or(0);
        let inactive = mem.total_inactive_file.max(mem.inactive_file);
        cri::MemoryUsage {
            timestamp: ts,
            working_set_bytes: u64v(used.saturating_sub(inactive)),
            available_bytes: None,
            usage_bytes: u64v(used),
            rss_bytes: u64v(mem.total_rss.max(mem.rss)),
            page_faults: u64v(mem.total_pg_fault.max(mem.pg_fault)),
            major_page_faults: u64v(mem.total_pg_maj_fault.max(mem.pg_maj_fault)),
        }
    });
    (cpu, memory)
}

impl PodManager {
    async fn metrics_of(&self, c: &Container) -> Option<Metrics> {
        if c.rec.state != ContainerState::Running {
            return None;
        }
        let pod = self.load_pod(&c.pod_id).await.ok()?;
        let shim = self.shim_for(&pod).await.ok()?;
        match shim.stats(&c.id).await {
            Ok(m) => Some(m),
            Err(e) => {
                debug!(container_id = %c.id, error = %crate::error::chain(&e), "no stats from shim");
                None
            }
        }
    }

    /// Drops the CPU sample of a removed container.
    pub(crate) fn forget_cpu_sample(&self, id: &str) {
        self.cpu_samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    /// Cores used since the previous sample of the same container.
    fn nano_cores(&self, id: &str, ts: i64, total: u64) -> Option<u64> {
        let mut samples = self
            .cpu_samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let prev = samples.insert(id.to_string(), (ts, total));
        let (pts, ptotal) = prev?;
        let dt = u64::try_from(ts.checked_sub(pts)?)
            .ok()
            .filter(|d| *d > 0)?;
        let used = total.checked_sub(ptotal)?;
        Some(u64::try_from(u128::from(used) * 1_000_000_000 / u128::from(dt)).unwrap_or(u64::MAX))
    }

    async fn stats_of(&self, c: &Container) -> cri::ContainerStats {
        self.stats_and_pids_of(c).await.0
    }

    /// A container's stats and the number of its processes (running only).
    async fn stats_and_pids_of(&self, c: &Container) -> (cri::ContainerStats, Option<u64>) {
        let ts = now_nanos();
        let metrics = self.metrics_of(c).await;
        let pids = metrics
            .as_ref()
            .and_then(|m| m.pids.as_ref())
            .map(|p| p.current);
        let (mut cpu, memory) = usage(metrics.as_ref(), ts);
        if let Some(cpu) = cpu.as_mut() {
            let total = cpu.usage_core_nano_seconds.as_ref().map_or(0, |v| v.value);
            cpu.usage_nano_cores = self.nano_cores(&c.id, ts, total).and_then(u64v);
        }
        let upper = c.rec.data_dir.join("upper");
        let u = upper.clone();
        let layer = tokio::task::spawn_blocking(move || dir_usage(&u))
            .await
            .unwrap_or_default();
        let stats = cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: c.id.clone(),
                metadata: c.config.metadata.clone(),
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
            }),
            cpu,
            memory,
            writable_layer: Some(cri::FilesystemUsage {
                timestamp: ts,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: upper.to_string_lossy().into_owned(),
                }),
                used_bytes: u64v(layer.used_bytes),
                inodes_used: u64v(layer.inodes_used),
            }),
            swap: None,
        };
        (stats, pids)
    }

    /// ContainerStats.
    pub async fn container_stats(&self, id: &str) -> Result<cri::ContainerStats, PodError> {
        let c = self.load_container(id).await?;
        Ok(self.stats_of(&c).await)
    }

    /// ListContainerStats.
    pub async fn list_container_stats(
        &self,
        filter: Option<&cri::ContainerStatsFilter>,
    ) -> Result<Vec<cri::ContainerStats>, PodError> {
        let mut out = Vec::new();
        for c in self.all_containers().await? {
            if container_stats_matches(&c, filter) {
                out.push(self.stats_of(&c).await);
            }
        }
        Ok(out)
    }

    async fn pod_stats_of(&self, pod: &Pod) -> Result<cri::PodSandboxStats, PodError> {
        let ts = now_nanos();
        let mut containers = Vec::new();
        let mut processes: Option<u64> = None;
        for c in self.pod_containers(&pod.id).await? {
            let (stats, pids) = self.stats_and_pids_of(&c).await;
            if let Some(n) = pids {
                processes = Some(processes.unwrap_or(0) + n);
            }
            containers.push(stats);
        }
        let mut cpu_total = 0u64;
        let mut nano_cores: Option<u64> = None;
        let (mut ws, mut used, mut rss, mut pf, mut mpf) = (0u64, 0u64, 0u64, 0u64, 0u64);
        for s in &containers {
            let v = |x: &Option<cri::UInt64Value>| x.as_ref().map(|v| v.value).unwrap_or(0);
            if let Some(c) = &s.cpu {
                cpu_total += v(&c.usage_core_nano_seconds);
                if let Some(n) = &c.usage_nano_cores {
                    nano_cores = Some(nano_cores.unwrap_or(0) + n.value);
                }
            }
            if let Some(m) = &s.memory {
                ws += v(&m.working_set_bytes);
                used += v(&m.usage_bytes);
                rss += v(&m.rss_bytes);
                pf += v(&m.page_faults);
                mpf += v(&m.major_page_faults);
            }
        }
        Ok(cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: pod.id.clone(),
                metadata: pod.config.metadata.clone(),
                labels: pod.config.labels.clone(),
                annotations: pod.config.annotations.clone(),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: Some(cri::CpuUsage {
                    timestamp: ts,
                    usage_core_nano_seconds: u64v(cpu_total),
                    usage_nano_cores: nano_cores.and_then(u64v),
                }),
                memory: Some(cri::MemoryUsage {
                    timestamp: ts,
                    working_set_bytes: u64v(ws),
                    available_bytes: None,
                    usage_bytes: u64v(used),
                    rss_bytes: u64v(rss),
                    page_faults: u64v(pf),
                    major_page_faults: u64v(mpf),
                }),
                network: self.network_usage(pod, ts).await,
                process: processes.map(|n| cri::ProcessUsage {
                    timestamp: ts,
                    process_count: u64v(n),
                }),
                containers,
            }),
            windows: None,
        })
    }

    /// Counters of the pod's own network namespace (none on the host's).
    async fn network_usage(&self, pod: &Pod, ts: i64) -> Option<cri::NetworkUsage> {
        if super::sandbox::host_network(&pod.config) {
            return None;
        }
        let ns = PodNetns::at(&self.cfg.netns_dir(), &pod.id).ok()?;
        if !ns.exists() {
            return None;
        }
        let path = ns.path().to_path_buf();
        let read = tokio::task::spawn_blocking(move || netdev::read_in(&path)).await;
        let counters = match read {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                debug!(pod_id = %pod.id, error = %crate::error::chain(&e), "no network stats");
                return None;
            }
            Err(_) => return None,
        };
        let iface = |c: &netdev::InterfaceCounters| cri::NetworkInterfaceUsage {
            name: c.name.clone(),
            rx_bytes: u64v(c.rx_bytes),
            rx_errors: u64v(c.rx_errors),
            tx_bytes: u64v(c.tx_bytes),
            tx_errors: u64v(c.tx_errors),
        };
        let default = counters.iter().find(|c| c.name == POD_IFNAME).map(iface);
        Some(cri::NetworkUsage {
            timestamp: ts,
            default_interface: default,
            interfaces: counters
                .iter()
                .filter(|c| c.name != "lo" && c.name != POD_IFNAME)
                .map(iface)
                .collect(),
        })
    }

    /// PodSandboxStats.
    pub async fn pod_stats(&self, id: &str) -> Result<cri::PodSandboxStats, PodError> {
        let pod = self.load_pod(id).await?;
        self.pod_stats_of(&pod).await
    }

    /// ListPodSandboxStats.
    pub async fn list_pod_stats(
        &self,
        filter: Option<&cri::PodSandboxStatsFilter>,
    ) -> Result<Vec<cri::PodSandboxStats>, PodError> {
        let mut out = Vec::new();
        for pod in self.all_pods().await? {
            let keep = filter.is_none_or(|f| {
                (f.id.is_empty() || pod.id.starts_with(&f.id))
                    && super::convert::labels_match(&pod.config.labels, &f.label_selector)
            });
            if keep {
                out.push(self.pod_stats_of(&pod).await?);
            }
        }
        Ok(out)
    }
}
