//! Records → CRI messages: status, list items and filters.

use std::collections::HashMap;

use berth_proto::cri;

use super::sandbox::namespace_options;
use super::{Container, Pod};

/// Whether every `selector` label is on `labels` with the same value.
pub fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The CRI status of a pod.
pub fn pod_status(pod: &Pod) -> cri::PodSandboxStatus {
    let mut ips = pod.rec.ips.iter();
    let network = cri::PodSandboxNetworkStatus {
        ip: ips.next().cloned().unwrap_or_default(),
        additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
    };
    cri::PodSandboxStatus {
        id: pod.id.clone(),
        metadata: pod.config.metadata.clone(),
        state: pod.cri_state() as i32,
        created_at: pod.rec.created_at,
        network: Some(network),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(namespace_options(&pod.config)),
            }),
        }),
        labels: pod.config.labels.clone(),
        annotations: pod.config.annotations.clone(),
        runtime_handler: pod.rec.runtime_handler.clone(),
    }
}

/// The verbose `info` map of PodSandboxStatus.
pub fn pod_info(pod: &Pod) -> HashMap<String, String> {
    let info = serde_json::json!({
        "pid": pod.rec.pid,
        "netns": pod.rec.netns,
        "shimAddress": pod.rec.shim_address,
        "cgroupParent": pod.rec.cgroup_parent,
        "podDir": pod.rec.dir,
        "state": format!("{:?}", pod.rec.state),
        "runtimeHandler": pod.rec.runtime_handler,
    });
    HashMap::from([("info".to_string(), info.to_string())])
}

/// A ListPodSandbox item.
pub fn pod_item(pod: &Pod) -> cri::PodSandbox {
    cri::PodSandbox {
        id: pod.id.clone(),
        metadata: pod.config.metadata.clone(),
        state: pod.cri_state() as i32,
        created_at: pod.rec.created_at,
        labels: pod.config.labels.clone(),
        annotations: pod.config.annotations.clone(),
        runtime_handler: pod.rec.runtime_handler.clone(),
    }
}

/// Whether a pod passes a ListPodSandbox filter.
pub fn pod_matches(pod: &Pod, filter: Option<&cri::PodSandboxFilter>) -> bool {
    let Some(f) = filter else {
        return true;
    };
    (f.id.is_empty() || pod.id.starts_with(&f.id))
        && f.state
            .as_ref()
            .is_none_or(|s| s.state == pod.cri_state() as i32)
        && labels_match(&pod.config.labels, &f.label_selector)
}

fn image_spec(c: &Container) -> cri::ImageSpec {
    cri::ImageSpec {
        image: c.rec.image.clone(),
        annotations: c
            .config
            .image
            .as_ref()
            .map(|i| i.annotations.clone())
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// The CRI status of a container.
pub fn container_status(c: &Container) -> cri::ContainerStatus {
    let resources = c
        .config
        .linux
        .as_ref()
        .and_then(|l| l.resources.clone())
        .map(|r| cri::ContainerResources {
            linux: Some(r),
            ..Default::default()
        });
    cri::ContainerStatus {
        id: c.id.clone(),
        metadata: c.config.metadata.clone(),
        state: c.cri_state() as i32,
        created_at: c.rec.created_at,
        started_at: c.rec.started_at,
        finished_at: c.rec.finished_at,
        exit_code: c.rec.exit_code,
        image: Some(image_spec(c)),
        image_ref: c.rec.image_ref.clone(),
        reason: c.rec.reason.clone(),
        message: c.rec.message.clone(),
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        mounts: c.config.mounts.clone(),
        log_path: c.rec.log_path.clone(),
        resources,
        image_id: c.rec.image_id.clone(),
        user: container_user(&c.rec.process),
    }
}

/// The identity the container's process starts with (from its OCI spec).
fn container_user(process: &serde_json::Value) -> Option<cri::ContainerUser> {
    let user = process.get("user")?;
    let id = |k: &str| user.get(k).and_then(serde_json::Value::as_i64);
    Some(cri::ContainerUser {
        linux: Some(cri::LinuxContainerUser {
            uid: id("uid")?,
            gid: id("gid")?,
            supplemental_groups: user
                .get("additionalGids")
                .and_then(serde_json::Value::as_array)
                .map(|a| a.iter().filter_map(serde_json::Value::as_i64).collect())
                .unwrap_or_default(),
        }),
    })
}

/// The verbose `info` map of ContainerStatus.
pub fn container_info(c: &Container) -> HashMap<String, String> {
    let info = serde_json::json!({
        "sandboxID": c.pod_id,
        "pid": c.rec.pid,
        "bundle": c.rec.bundle,
        "stopSignal": c.rec.stop_signal,
        "snapshots": c.rec.chain_ids,
        "process": c.rec.process,
    });
    HashMap::from([("info".to_string(), info.to_string())])
}

/// A ListContainers item.
pub fn container_item(c: &Container) -> cri::Container {
    cri::Container {
        id: c.id.clone(),
        pod_sandbox_id: c.pod_id.clone(),
        metadata: c.config.metadata.clone(),
        image: Some(image_spec(c)),
        image_ref: c.rec.image_ref.clone(),
        state: c.cri_state() as i32,
        created_at: c.rec.created_at,
        labels: c.config.labels.clone(),
        annotations: c.config.annotations.clone(),
        image_id: c.rec.image_id.clone(),
    }
}

/// Whether a container passes a ListContainers filter.
pub fn container_matches(c: &Container, filter: Option<&cri::ContainerFilter>) -> bool {
    let Some(f) = filter else {
        return true;
    };
    (f.id.is_empty() || c.id.starts_with(&f.id))
        && (f.pod_sandbox_id.is_empty() || c.pod_id.starts_with(&f.pod_sandbox_id))
        && f.state
            .as_ref()
            .is_none_or(|s| s.state == c.cri_state() as i32)
        && labels_match(&c.config.labels, &f.label_selector)
}

/// Whether a container passes a ListContainerStats filter.
pub fn container_stats_matches(c: &Container, f: Option<&cri::ContainerStatsFilter>) -> bool {
    let Some(f) = f else {
        return true;
    };
    (f.id.is_empty() || c.id.starts_with(&f.id))
        && (f.pod_sandbox_id.is_empty() || c.pod_id.starts_with(&f.pod_sandbox_id))
        && labels_match(&c.config.labels, &f.label_selector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let labels = HashMap::from([("a".to_string(), "1".to_string())]);
        assert!(labels_match(&labels, &HashMap::new()));
        assert!(labels_match(
            &labels,
            &HashMap::from([("a".to_string(), "1".to_string())])
        ));
        assert!(!labels_match(
            &labels,
            &HashMap::from([("a".to_string(), "2".to_string())])
        ));
        assert!(!labels_match(
            &labels,
            &HashMap::from([("b".to_string(), "1".to_string())])
        ));
    }
}
