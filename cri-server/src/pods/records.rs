//! What berthd remembers about each pod and container (the JSON `record`
//! column), next to the CRI config it was created with.

use std::path::PathBuf;

use berth_proto::cri;
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::store::ObjectRow;

use super::PodError;

/// Pod sandbox state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PodState {
    /// Being set up (not yet visible as ready).
    Creating,
    /// Running.
    Ready,
    /// Stopped (or failed).
    NotReady,
}

/// Container state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    /// Created, not started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Exited,
    /// Unknown (half-created).
    Unknown,
}

/// The runtime record of a pod.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    /// Current state.
    pub state: PodState,
    /// Creation time, ns since the epoch.
    pub created_at: i64,
    /// The pod's directory under the state dir.
    pub dir: PathBuf,
    /// Pinned netns (None with hostNetwork).
    pub netns: Option<PathBuf>,
    /// Pod IPs, primary first.
    pub ips: Vec<String>,
    /// Whether CNI DEL has run since the last ADD.
    pub network_down: bool,
    /// The shim's ttrpc address ("" before it started).
    pub shim_address: String,
    /// The sandbox task's pid.
    pub pid: u32,
    /// The pod's cgroup parent.
    pub cgroup_parent: String,
    /// The runtime handler asked for.
    pub runtime_handler: String,
}

/// The runtime record of a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// Current state.
    pub state: ContainerState,
    /// Creation time, ns since the epoch.
    pub created_at: i64,
    /// Start time (0: never started).
    pub started_at: i64,
    /// Exit time (0: not exited).
    pub finished_at: i64,
    /// Exit code.
    pub exit_code: i32,
    /// Exit reason (Completed, Error, OOMKilled).
    pub reason: String,
    /// Exit message.
    pub message: String,
    /// The init's pid while running.
    pub pid: u32,
    /// The image as the CreateContainer request named it.
    pub image: String,
    /// The image id (`sha256:` config digest).
    pub image_id: String,
    /// A repo digest of the image, if known (`ContainerStatus.image_ref`).
    pub image_ref: String,
    /// Chain ids whose snapshot refcount this container holds.
    pub chain_ids: Vec<String>,
    /// Full CRI log path ("" when the kubelet gave none).
    pub log_path: String,
    /// The bundle directory (state dir).
    pub bundle: PathBuf,
    /// The directory of the writable layer and volumes (root dir).
    pub data_dir: PathBuf,
    /// The image's STOPSIGNAL, if any.
    pub stop_signal: Option<String>,
    /// The process spec JSON (ExecSync copies its env, user, caps).
    pub process: serde_json::Value,
}

/// A pod: its config and record.
#[derive(Debug, Clone)]
pub struct Pod {
    /// The id.
    pub id: String,
    /// The CRI config.
    pub config: cri::PodSandboxConfig,
    /// The record.
    pub rec: PodRecord,
}

/// A container: its config and record.
#[derive(Debug, Clone)]
pub struct Container {
    /// The id.
    pub id: String,
    /// The pod's id.
    pub pod_id: String,
    /// The CRI config.
    pub config: cri::ContainerConfig,
    /// The record.
    pub rec: ContainerRecord,
}

fn decode_err(id: &str) -> impl FnOnce(prost::DecodeError) -> PodError + '_ {
    move |source| PodError::Decode {
        id: id.to_string(),
        source,
    }
}

fn json_err(id: &str) -> impl FnOnce(serde_json::Error) -> PodError + '_ {
    move |source| PodError::Json {
        id: id.to_string(),
        source,
    }
}

impl Pod {
    /// From a DB row.
    pub fn from_row(row: &ObjectRow) -> Result<Pod, PodError> {
        Ok(Pod {
            id: row.id.clone(),
            config: cri::PodSandboxConfig::decode(row.config.as_slice())
                .map_err(decode_err(&row.id))?,
            rec: serde_json::from_str(&row.record).map_err(json_err(&row.id))?,
        })
    }

    /// To a DB row.
    pub fn to_row(&self) -> Result<ObjectRow, PodError> {
        Ok(ObjectRow {
            id: self.id.clone(),
            pod_id: self.id.clone(),
            name_key: pod_name_key(&self.config),
            config: self.config.encode_to_vec(),
            record: serde_json::to_string(&self.rec).map_err(json_err(&self.id))?,
        })
    }

    /// The pod's metadata (default when absent).
    pub fn metadata(&self) -> cri::PodSandboxMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    /// The CRI state.
    pub fn cri_state(&self) -> cri::PodSandboxState {
        match self.rec.state {
            PodState::Ready => cri::PodSandboxState::SandboxReady,
            PodState::Creating | PodState::NotReady => cri::PodSandboxState::SandboxNotready,
        }
    }
}

impl Container {
    /// From a DB row.
    pub fn from_row(row: &ObjectRow) -> Result<Container, PodError> {
        Ok(Container {
            id: row.id.clone(),
            pod_id: row.pod_id.clone(),
            config: cri::ContainerConfig::decode(row.config.as_slice())
                .map_err(decode_err(&row.id))?,
            rec: serde_json::from_str(&row.record).map_err(json_err(&row.id))?,
        })
    }

    /// To a DB row.
    pub fn to_row(&self) -> Result<ObjectRow, PodError> {
        Ok(ObjectRow {
            id: self.id.clone(),
            pod_id: self.pod_id.clone(),
            name_key: container_name_key(&self.pod_id, &self.config),
            config: self.config.encode_to_vec(),
            record: serde_json::to_string(&self.rec).map_err(json_err(&self.id))?,
        })
    }

    /// The container's metadata (default when absent).
    pub fn metadata(&self) -> cri::ContainerMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    /// The CRI state.
    pub fn cri_state(&self) -> cri::ContainerState {
        match self.rec.state {
            ContainerState::Created => cri::ContainerState::ContainerCreated,
            ContainerState::Running => cri::ContainerState::ContainerRunning,
            ContainerState::Exited => cri::ContainerState::ContainerExited,
            ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
        }
    }

    /// Records an exit (status as the shim reports it).
    pub fn set_exited(&mut self, exit_code: i32, finished_at: i64, oom: bool) {
        self.rec.state = ContainerState::Exited;
        self.rec.exit_code = exit_code;
        self.rec.finished_at = if finished_at > 0 {
            finished_at
        } else {
            super::now_nanos()
        };
        self.rec.pid = 0;
        self.rec.reason = exit_reason(exit_code, oom).to_string();
    }
}

/// The CRI exit reason of an exit code.
pub fn exit_reason(exit_code: i32, oom: bool) -> &'static str {
    if oom {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// Pods are unique per (name, namespace, uid, attempt).
pub fn pod_name_key(config: &cri::PodSandboxConfig) -> String {
    let m = config.metadata.clone().unwrap_or_default();
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

/// Containers are unique per (pod, name, attempt).
pub fn container_name_key(pod_id: &str, config: &cri::ContainerConfig) -> String {
    let m = config.metadata.clone().unwrap_or_default();
    format!("{}_{}_{}", pod_id, m.name, m.attempt)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        assert_eq!(exit_reason(0, false), "Completed");
        assert_eq!(exit_reason(137, false), "Error");
        assert_eq!(exit_reason(137, true), "OOMKilled");
    }

    #[test]
    fn pod_row_round_trip() {
        let pod = Pod {
            id: "a".repeat(64),
            config: cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "n".into(),
                    uid: "u".into(),
                    namespace: "ns".into(),
                    attempt: 2,
                }),
                hostname: "h".into(),
                ..Default::default()
            },
            rec: PodRecord {
                state: PodState::Ready,
                created_at: 5,
                dir: "/d".into(),
                netns: Some("/n".into()),
                ips: vec!["10.0.0.2".into()],
                network_down: false,
                shim_address: "unix:///s".into(),
                pid: 7,
                cgroup_parent: "/berth".into(),
                runtime_handler: String::new(),
            },
        };
        let row = pod.to_row().unwrap();
        assert_eq!(row.name_key, "n_ns_u_2");
        let back = Pod::from_row(&row).unwrap();
        assert_eq!(back.config, pod.config);
        assert_eq!(back.rec.ips, pod.rec.ips);
        assert_eq!(back.rec.state, PodState::Ready);
    }
}
