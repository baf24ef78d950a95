//! What berth's Docker-style containers (berth.v1) ask of the pod layer
//! beyond the CRI, carried in labels and annotations berthd itself sets:
//! a pod without CNI (`--network none`), a custom stop signal, a pids
//! limit (the CRI has no field for it), and a writable layer that can be
//! mounted again (restart in place).

use berth_proto::cri;

/// Label on berth-made pods and containers.
pub const MANAGED_LABEL: &str = "io.berth.managed";
/// Label holding the container's name.
pub const NAME_LABEL: &str = "io.berth.name";
/// Pod annotation: `none` gives the pod a network namespace without CNI.
pub const NETWORK_ANNOTATION: &str = "io.berth.network";
/// Container annotation: the stop signal (name or number).
pub const STOP_SIGNAL_ANNOTATION: &str = "io.berth.stop-signal";
/// Container annotation: the pids cgroup limit.
pub const PIDS_LIMIT_ANNOTATION: &str = "io.berth.pids-limit";

/// Whether berthd made this container for berth.v1.
pub fn is_managed(config: &cri::ContainerConfig) -> bool {
    config
        .labels
        .get(MANAGED_LABEL)
        .is_some_and(|v| v == "true")
}

/// Whether the pod's network namespace gets CNI ADD.
pub fn wants_cni(config: &cri::PodSandboxConfig) -> bool {
    let managed = config
        .labels
        .get(MANAGED_LABEL)
        .is_some_and(|v| v == "true");
    !(managed
        && config
            .annotations
            .get(NETWORK_ANNOTATION)
            .is_some_and(|v| v == "none"))
}

/// The stop signal berthd was asked for, if any.
pub fn stop_signal(config: &cri::ContainerConfig) -> Option<String> {
    if !is_managed(config) {
        return None;
    }
    config
        .annotations
        .get(STOP_SIGNAL_ANNOTATION)
        .filter(|s| !s.is_empty())
        .cloned()
}

/// Applies berth's annotations to a berth container's OCI spec (JSON);
/// CRI containers are left alone.
pub fn apply_to_spec(config: &cri::ContainerConfig, spec: &mut serde_json::Value) {
    if !is_managed(config) {
        return;
    }
    let limit = config
        .annotations
        .get(PIDS_LIMIT_ANNOTATION)
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v > 0);
    if let Some(limit) = limit {
        if let Some(linux) = spec.get_mut("linux").and_then(|l| l.as_object_mut()) {
            let resources = linux
                .entry("resources")
                .or_insert_with(|| serde_json::json!({}));
            if let Some(r) = resources.as_object_mut() {
                r.insert("pids".into(), serde_json::json!({ "limit": limit }));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn managed(annotations: &[(&str, &str)]) -> cri::ContainerConfig {
        cri::ContainerConfig {
            labels: [(MANAGED_LABEL.to_string(), "true".to_string())].into(),
            annotations: annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn pids_limit_only_for_berth_containers() {
        let mut spec = serde_json::json!({"linux": {}});
        apply_to_spec(&managed(&[(PIDS_LIMIT_ANNOTATION, "42")]), &mut spec);
        assert_eq!(spec["linux"]["resources"]["pids"]["limit"], 42);
        let mut cri_spec = serde_json::json!({"linux": {}});
        let mut plain = managed(&[(PIDS_LIMIT_ANNOTATION, "42")]);
        plain.labels.clear();
        apply_to_spec(&plain, &mut cri_spec);
        assert!(cri_spec["linux"].get("resources").is_none());
        assert_eq!(stop_signal(&plain), None);
    }

    #[test]
    fn network_none_skips_cni() {
        let mut pod = cri::PodSandboxConfig::default();
        assert!(wants_cni(&pod));
        pod.annotations
            .insert(NETWORK_ANNOTATION.into(), "none".into());
        // Only berth's own pods may skip CNI.
        assert!(wants_cni(&pod));
        pod.labels.insert(MANAGED_LABEL.into(), "true".into());
        assert!(!wants_cni(&pod));
        assert_eq!(
            stop_signal(&managed(&[(STOP_SIGNAL_ANNOTATION, "SIGINT")])).as_deref(),
            Some("SIGINT")
        );
    }
}
