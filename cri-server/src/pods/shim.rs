//! berthd's side of the shim v2 Task API: starting a pod's `berth-shim`
//! the way containerd starts shims, and a typed async ttrpc client.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::cgroups::metrics::Metrics;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim_async::{Client, TaskClient};
use containerd_shim_protos::ttrpc;
use tracing::debug;

/// The containerd namespace berthd's shims run in.
pub const SHIM_NAMESPACE: &str = "berth";
/// How long one ordinary Task API call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `berth-shim start` may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The `type_url` of an OCI process spec in an `Exec` request.
pub const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
/// The `type_url` of OCI `LinuxResources` in an `Update` request.
pub const RESOURCES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
/// The annotation asking the shim to reopen a container's CRI log.
pub const REOPEN_LOG_ANNOTATION: &str = "berth.io/reopen-log";

/// Errors talking to a shim.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    /// The shim binary could not be run.
    #[error("running {path}")]
    Spawn {
        /// The shim binary.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `berth-shim start` failed.
    #[error("{path} start exited with {status}: {stderr}")]
    StartFailed {
        /// The shim binary.
        path: PathBuf,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `berth-shim start` did not finish in time.
    #[error("{path} start did not finish within {START_TIMEOUT:?}")]
    StartTimeout {
        /// The shim binary.
        path: PathBuf,
    },
    /// `berth-shim start` printed no usable address.
    #[error("shim start printed no unix:// address: {output:?}")]
    BadAddress {
        /// What it printed.
        output: String,
    },
    /// The shim's socket does not answer.
    #[error("connecting to shim at {address}")]
    Connect {
        /// The ttrpc address.
        address: String,
        /// The ttrpc error.
        #[source]
        source: ttrpc::Error,
    },
    /// A Task API call failed.
    #[error("shim {method} {id}")]
    Rpc {
        /// The method.
        method: &'static str,
        /// The task id.
        id: String,
        /// The ttrpc error (with the shim's status code).
        #[source]
        source: ttrpc::Error,
    },
    /// The stats reply is not cgroup metrics.
    #[error("shim stats for {id}: {reason}")]
    BadStats {
        /// The task id.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

impl ShimError {
    /// The ttrpc status code the shim answered with, if any.
    pub fn code(&self) -> Option<ttrpc::Code> {
        match self {
            ShimError::Rpc {
                source: ttrpc::Error::RpcStatus(s),
                ..
            } => Some(s.code()),
            _ => None,
        }
    }

    /// Whether the shim said the task does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(ttrpc::Code::NOT_FOUND)
    }

    /// Whether the shim process is unreachable (dead or its socket gone).
    pub fn is_unreachable(&self) -> bool {
        match self {
            ShimError::Connect { .. } => true,
            ShimError::Rpc { source, .. } => matches!(
                source,
                ttrpc::Error::Socket(_) | ttrpc::Error::LocalClosed | ttrpc::Error::RemoteClosed
            ),
            _ => false,
        }
    }
}

/// A task's state as the shim reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskState {
    /// Process id (0 before start).
    pub pid: u32,
    /// created / running / stopped / paused / unknown
    pub status: TaskStatus,
    /// Exit status when stopped.
    pub exit_status: u32,
    /// Exit time, nanoseconds since the epoch (0 if not exited).
    pub exited_at: i64,
}

/// Coarse task status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    /// Created, not started.
    Created,
    /// Running (or paused).
    Running,
    /// Exited.
    Stopped,
    /// Anything else.
    Unknown,
}

/// An exit as `Wait` or `Delete` report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskExit {
    /// Exit status (128+N for signal N).
    pub exit_status: u32,
    /// Exit time, nanoseconds since the epoch.
    pub exited_at: i64,
}

fn ts_nanos(
    ts: &containerd_shim_protos::protobuf::MessageField<
        containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp,
    >,
) -> i64 {
    ts.as_ref()
        .map(|t| t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos))
        .unwrap_or(0)
}

/// What a container task is created with.
#[derive(Debug, Clone, Default)]
pub struct CreateTask {
    /// Task id (the container id).
    pub id: String,
    /// Bundle directory holding config.json.
    pub bundle: PathBuf,
    /// Overlay options: lowerdir, upperdir, workdir.
    pub overlay: Option<Vec<String>>,
    /// Allocate a terminal.
    pub terminal: bool,
    /// stdin FIFO path or "".
    pub stdin: String,
    /// stdout target (`cri:///log/path`, a FIFO, or "").
    pub stdout: String,
    /// stderr target.
    pub stderr: String,
}

/// A connection to one pod's shim.
#[derive(Clone)]
pub struct ShimClient {
    address: String,
    task: TaskClient,
}

impl std::fmt::Debug for ShimClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShimClient")
            .field("address", &self.address)
            .finish()
    }
}

fn ctx() -> ttrpc::context::Context {
    ttrpc::context::with_duration(CALL_TIMEOUT)
}

/// Parses `berth-shim start` output: a bare address or the JSON bootstrap
/// reply `{"version":2,"address":"unix:///...","protocol":"ttrpc"}`.
pub fn parse_start_output(out: &str) -> Option<String> {
    let out = out.trim();
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(out) {
        return v
            .get("address")
            .and_then(|a| a.as_str())
            .filter(|a| a.starts_with("unix://"))
            .map(str::to_string);
    }
    out.lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("unix://"))
        .map(str::to_string)
}

/// How a pod's shim is started.
#[derive(Debug, Clone)]
pub struct ShimLaunch<'a> {
    /// The shim binary.
    pub shim_path: &'a Path,
    /// The pod sandbox id (the shim's `-id`).
    pub pod_id: &'a str,
    /// The pod's directory (the shim's cwd).
    pub pod_dir: &'a Path,
    /// berthd's CRI socket (the shim's `-address`).
    pub cri_socket: &'a Path,
    /// berthd's Events ttrpc socket (`TTRPC_ADDRESS`).
    pub events_socket: &'a Path,
}

impl ShimClient {
    /// Runs `<shim> -namespace berth -id <pod> -address <sock> start` in the
    /// pod dir and connects to the address it prints. The shim daemon it
    /// leaves behind outlives berthd.
    pub async fn start(launch: &ShimLaunch<'_>) -> Result<ShimClient, ShimError> {
        let path = launch.shim_path.to_path_buf();
        // The containerd-shim crate logs to a `log` file in its cwd; a plain
        // file keeps the shim's own log next to its pod without a reader.
        let log = launch.pod_dir.join("log");
        if !log.exists() {
            std::fs::File::create(&log).map_err(|source| ShimError::Spawn {
                path: log.clone(),
                source,
            })?;
        }
        let mut cmd = tokio::process::Command::new(&path);
        cmd.arg("-namespace")
            .arg(SHIM_NAMESPACE)
            .arg("-id")
            .arg(launch.pod_id)
            .arg("-address")
            .arg(launch.cri_socket)
            .arg("start")
            .current_dir(launch.pod_dir)
            .env("TTRPC_ADDRESS", launch.events_socket)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| ShimError::Spawn {
            path: path.clone(),
            source,
        })?;
        let out = tokio::time::timeout(START_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| ShimError::StartTimeout { path: path.clone() })?
            .map_err(|source| ShimError::Spawn {
                path: path.clone(),
                source,
            })?;
        if !out.status.success() {
            return Err(ShimError::StartFailed {
                path,
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let address = parse_start_output(&text).ok_or(ShimError::BadAddress { output: text })?;
        debug!(pod_id = %launch.pod_id, %address, "shim started");
        ShimClient::connect(&address).await
    }

    /// Connects to a running shim.
    pub async fn connect(address: &str) -> Result<ShimClient, ShimError> {
        let client = Client::connect(address)
            .await
            .map_err(|source| ShimError::Connect {
                address: address.to_string(),
                source,
            })?;
        Ok(ShimClient {
            address: address.to_string(),
            task: TaskClient::new(client),
        })
    }

    /// The ttrpc address.
    pub fn address(&self) -> &str {
        &self.address
    }

    fn rpc(method: &'static str, id: &str) -> impl FnOnce(ttrpc::Error) -> ShimError {
        let id = id.to_string();
        move |source| ShimError::Rpc { method, id, source }
    }

    /// `Create`; returns the task pid.
    pub async fn create(&self, t: &CreateTask) -> Result<u32, ShimError> {
        let rootfs = t
            .overlay
            .as_ref()
            .map(|options| {
                vec![api::Mount {
                    type_: "overlay".to_string(),
                    source: "overlay".to_string(),
                    options: options.clone(),
                    ..Default::default()
                }]
            })
            .unwrap_or_default();
        let req = api::CreateTaskRequest {
            id: t.id.clone(),
            bundle: t.bundle.to_string_lossy().into_owned(),
            rootfs,
            terminal: t.terminal,
            stdin: t.stdin.clone(),
            stdout: t.stdout.clone(),
            stderr: t.stderr.clone(),
            ..Default::default()
        };
        let resp = self
            .task
            .create(ctx(), &req)
            .await
            .map_err(Self::rpc("Create", &t.id))?;
        Ok(resp.pid)
    }

    /// `Start`; returns the pid.
    pub async fn start_task(&self, id: &str, exec_id: &str) -> Result<u32, ShimError> {
        let req = api::StartRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let resp = self
            .task
            .start(ctx(), &req)
            .await
            .map_err(Self::rpc("Start", id))?;
        Ok(resp.pid)
    }

    /// `State`.
    pub async fn state(&self, id: &str, exec_id: &str) -> Result<TaskState, ShimError> {
        let req = api::StateRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let resp = self
            .task
            .state(ctx(), &req)
            .await
            .map_err(Self::rpc("State", id))?;
        use containerd_shim_protos::types::task::Status;
        let status = match resp.status.enum_value() {
            Ok(Status::CREATED) => TaskStatus::Created,
            Ok(Status::RUNNING) | Ok(Status::PAUSED) | Ok(Status::PAUSING) => TaskStatus::Running,
            Ok(Status::STOPPED) => TaskStatus::Stopped,
            _ => TaskStatus::Unknown,
        };
        Ok(TaskState {
            pid: resp.pid,
            status,
            exit_status: resp.exit_status,
            exited_at: ts_nanos(&resp.exited_at),
        })
    }

    /// `Wait`: blocks until the task (or exec) exits; `timeout` bounds it.
    pub async fn wait(
        &self,
        id: &str,
        exec_id: &str,
        timeout: Option<Duration>,
    ) -> Result<TaskExit, ShimError> {
        let req = api::WaitRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let c = match timeout {
            Some(t) => ttrpc::context::with_duration(t),
            None => ttrpc::context::Context::default(),
        };
        let resp = self
            .task
            .wait(c, &req)
            .await
            .map_err(Self::rpc("Wait", id))?;
        Ok(TaskExit {
            exit_status: resp.exit_status,
            exited_at: ts_nanos(&resp.exited_at),
        })
    }

    /// `Kill`.
    pub async fn kill(
        &self,
        id: &str,
        exec_id: &str,
        signal: u32,
        all: bool,
    ) -> Result<(), ShimError> {
        let req = api::KillRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            signal,
            all,
            ..Default::default()
        };
        self.task
            .kill(ctx(), &req)
            .await
            .map_err(Self::rpc("Kill", id))?;
        Ok(())
    }

    /// `Pause` (freeze) or `Resume` (thaw) the container `id`.
    pub async fn set_paused(&self, id: &str, paused: bool) -> Result<(), ShimError> {
        if paused {
            let req = api::PauseRequest {
                id: id.to_string(),
                ..Default::default()
            };
            self.task
                .pause(ctx(), &req)
                .await
                .map_err(Self::rpc("Pause", id))?;
        } else {
            let req = api::ResumeRequest {
                id: id.to_string(),
                ..Default::default()
            };
            self.task
                .resume(ctx(), &req)
                .await
                .map_err(Self::rpc("Resume", id))?;
        }
        Ok(())
    }

    /// `Delete`.
    pub async fn delete(&self, id: &str, exec_id: &str) -> Result<TaskExit, ShimError> {
        let req = api::DeleteRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            ..Default::default()
        };
        let resp = self
            .task
            .delete(ctx(), &req)
            .await
            .map_err(Self::rpc("Delete", id))?;
        Ok(TaskExit {
            exit_status: resp.exit_status,
            exited_at: ts_nanos(&resp.exited_at),
        })
    }

    /// `Exec` of an OCI process (JSON) with FIFO stdout/stderr, no stdin.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process_json: Vec<u8>,
        stdout: &str,
        stderr: &str,
    ) -> Result<(), ShimError> {
        let stdio = ExecStdio {
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
            ..Default::default()
        };
        self.exec_with(id, exec_id, process_json, &stdio).await
    }

    /// `Exec` of an OCI process (JSON) with the given stdio and terminal.
    pub async fn exec_with(
        &self,
        id: &str,
        exec_id: &str,
        process_json: Vec<u8>,
        stdio: &ExecStdio,
    ) -> Result<(), ShimError> {
        let req = api::ExecProcessRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            terminal: stdio.terminal,
            stdin: stdio.stdin.clone(),
            stdout: stdio.stdout.clone(),
            stderr: stdio.stderr.clone(),
            spec: Some(Any {
                type_url: PROCESS_TYPE_URL.to_string(),
                value: process_json,
                ..Default::default()
            })
            .into(),
            ..Default::default()
        };
        self.task
            .exec(ctx(), &req)
            .await
            .map_err(Self::rpc("Exec", id))?;
        Ok(())
    }

    /// `Stats`, decoded as cgroup v1-shaped metrics.
    pub async fn stats(&self, id: &str) -> Result<Metrics, ShimError> {
        let req = api::StatsRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let resp = self
            .task
            .stats(ctx(), &req)
            .await
            .map_err(Self::rpc("Stats", id))?;
        let any = resp.stats.as_ref().ok_or_else(|| ShimError::BadStats {
            id: id.to_string(),
            reason: "no stats in the reply".to_string(),
        })?;
        Metrics::parse_from_bytes(&any.value).map_err(|e| ShimError::BadStats {
            id: id.to_string(),
            reason: e.to_string(),
        })
    }

    /// `Update` with OCI LinuxResources JSON and/or annotations.
    pub async fn update(
        &self,
        id: &str,
        resources_json: Option<Vec<u8>>,
        annotations: HashMap<String, String>,
    ) -> Result<(), ShimError> {
        let req = api::UpdateTaskRequest {
            id: id.to_string(),
            resources: resources_json
                .map(|value| Any {
                    type_url: RESOURCES_TYPE_URL.to_string(),
                    value,
                    ..Default::default()
                })
                .into(),
            annotations,
            ..Default::default()
        };
        self.task
            .update(ctx(), &req)
            .await
            .map_err(Self::rpc("Update", id))?;
        Ok(())
    }

    /// `ResizePty` of a task's init (`exec_id` "") or exec.
    pub async fn resize_pty(
        &self,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), ShimError> {
        let req = api::ResizePtyRequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            width,
            height,
            ..Default::default()
        };
        self.task
            .resize_pty(ctx(), &req)
            .await
            .map_err(Self::rpc("ResizePty", id))?;
        Ok(())
    }

    /// `CloseIO`: closes the stdin of a task's init or exec.
    pub async fn close_stdin(&self, id: &str, exec_id: &str) -> Result<(), ShimError> {
        let req = api::CloseIORequest {
            id: id.to_string(),
            exec_id: exec_id.to_string(),
            stdin: true,
            ..Default::default()
        };
        self.task
            .close_io(ctx(), &req)
            .await
            .map_err(Self::rpc("CloseIO", id))?;
        Ok(())
    }

    /// `Connect`: (shim pid, task pid); a cheap liveness probe.
    pub async fn connect_task(&self, id: &str) -> Result<(u32, u32), ShimError> {
        let req = api::ConnectRequest {
            id: id.to_string(),
            ..Default::default()
        };
        let resp = self
            .task
            .connect(ttrpc::context::with_duration(Duration::from_secs(5)), &req)
            .await
            .map_err(Self::rpc("Connect", id))?;
        Ok((resp.shim_pid, resp.task_pid))
    }

    /// `Shutdown`: the shim exits once it holds no task.
    pub async fn shutdown(&self, id: &str) -> Result<(), ShimError> {
        let req = api::ShutdownRequest {
            id: id.to_string(),
            now: false,
            ..Default::default()
        };
        match self.task.shutdown(ctx(), &req).await {
            Ok(_) => Ok(()),
            // The shim may exit before it answers.
            Err(ttrpc::Error::RemoteClosed | ttrpc::Error::LocalClosed) => Ok(()),
            Err(source) => Err(ShimError::Rpc {
                method: "Shutdown",
                id: id.to_string(),
                source,
            }),
        }
    }
}

/// stdio of an exec: FIFO paths ("" for none) and the terminal flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecStdio {
    /// A pty instead of pipes (stdout carries both streams).
    pub terminal: bool,
    /// stdin FIFO.
    pub stdin: String,
    /// stdout FIFO.
    pub stdout: String,
    /// stderr FIFO (empty with a terminal).
    pub stderr: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn start_output_forms() {
        assert_eq!(
            parse_start_output("unix:///run/berth/s/abc\n").as_deref(),
            Some("unix:///run/berth/s/abc")
        );
        assert_eq!(
            parse_start_output(r#"{"version":2,"address":"unix:///x","protocol":"ttrpc"}"#)
                .as_deref(),
            Some("unix:///x")
        );
        assert_eq!(parse_start_output("garbage"), None);
        assert_eq!(parse_start_output(""), None);
    }
}
