//! containerd's Task API over ttrpc: each handler decodes the request,
//! calls [`Service`] and encodes the result. The one place errors become
//! ttrpc status codes.

use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, DeleteResponse, ExecProcessRequest, KillRequest, PauseRequest, PidsRequest,
    PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest, StartRequest, StartResponse,
    StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateTaskRequest, WaitRequest,
    WaitResponse,
};
use containerd_shim::protos::protobuf::well_known_types::empty::Empty;
use containerd_shim::protos::types::task::{ProcessInfo, Status};
use containerd_shim::{Task, TtrpcContext, TtrpcResult};
use containerd_shim_protos::ttrpc::{get_status, Code, Error as TtrpcError};
use oci_spec::runtime::LinuxResources;
use serde_json::value::RawValue;

use crate::events::timestamp;
use crate::helper::error_chain;
use crate::rootfs::RootMount;
use crate::service::{
    CreateRequest, ProcRef, ProcStatus, Service, TaskError, REOPEN_LOG_ANNOTATION,
};
use crate::stats;

/// The ttrpc Task service of the shim.
pub struct TaskApi {
    svc: Arc<Service>,
}

impl TaskApi {
    /// Serves `svc`.
    pub fn new(svc: Arc<Service>) -> TaskApi {
        TaskApi { svc }
    }
}

fn status(e: TaskError) -> TtrpcError {
    let code = match &e {
        TaskError::NotFound(_) => Code::NOT_FOUND,
        TaskError::AlreadyExists(_) => Code::ALREADY_EXISTS,
        TaskError::Precondition(_) => Code::FAILED_PRECONDITION,
        TaskError::Invalid(_) => Code::INVALID_ARGUMENT,
        TaskError::Unimplemented(_) => Code::UNIMPLEMENTED,
        _ => Code::INTERNAL,
    };
    let msg = error_chain(&e);
    if code == Code::INTERNAL {
        tracing::error!(error = %msg, "task request failed");
    } else {
        tracing::debug!(error = %msg, ?code, "task request refused");
    }
    TtrpcError::RpcStatus(get_status(code, msg))
}

fn pref<'a>(id: &'a str, exec_id: &'a str) -> ProcRef<'a> {
    ProcRef { id, exec_id }
}

fn pid_u32(pid: i32) -> u32 {
    u32::try_from(pid).unwrap_or(0)
}

fn invalid(msg: String) -> TtrpcError {
    status(TaskError::Invalid(msg))
}

impl Task for TaskApi {
    fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        tracing::debug!(id = %req.id, bundle = %req.bundle, "create");
        if !req.checkpoint.is_empty() {
            return Err(status(TaskError::Unimplemented(
                "checkpoint/restore is not supported".into(),
            )));
        }
        let creq = CreateRequest {
            id: req.id.clone(),
            bundle: PathBuf::from(&req.bundle),
            rootfs: req
                .rootfs
                .iter()
                .map(|m| RootMount {
                    typ: m.type_.clone(),
                    source: m.source.clone(),
                    options: m.options.clone(),
                })
                .collect(),
            terminal: req.terminal,
            stdio: [req.stdin.clone(), req.stdout.clone(), req.stderr.clone()],
        };
        let pid = self.svc.create(creq).map_err(status)?;
        Ok(CreateTaskResponse {
            pid: pid_u32(pid),
            ..Default::default()
        })
    }

    fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let pid = self
            .svc
            .start(pref(&req.id, &req.exec_id))
            .map_err(status)?;
        Ok(StartResponse {
            pid: pid_u32(pid),
            ..Default::default()
        })
    }

    fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let st = self
            .svc
            .state(pref(&req.id, &req.exec_id))
            .map_err(status)?;
        let s = match st.status {
            ProcStatus::Created => Status::CREATED,
            ProcStatus::Running => Status::RUNNING,
            ProcStatus::Paused => Status::PAUSED,
            ProcStatus::Stopped => Status::STOPPED,
        };
        let [stdin, stdout, stderr] = st.stdio;
        Ok(StateResponse {
            id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            bundle: st.bundle.display().to_string(),
            pid: pid_u32(st.pid),
            status: s.into(),
            stdin,
            stdout,
            stderr,
            terminal: st.terminal,
            exit_status: st.exit.map(|e| pid_u32(e.code)).unwrap_or(0),
            exited_at: st.exit.map(|e| timestamp(e.at)).into(),
            ..Default::default()
        })
    }

    fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let e = self.svc.wait(pref(&req.id, &req.exec_id)).map_err(status)?;
        Ok(WaitResponse {
            exit_status: pid_u32(e.code),
            exited_at: Some(timestamp(e.at)).into(),
            ..Default::default()
        })
    }

    fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        self.svc
            .kill(pref(&req.id, &req.exec_id), req.signal, req.all)
            .map_err(status)?;
        Ok(Empty::new())
    }

    fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let (pid, e) = self
            .svc
            .delete(pref(&req.id, &req.exec_id))
            .map_err(status)?;
        Ok(DeleteResponse {
            pid: pid_u32(pid),
            exit_status: pid_u32(e.code),
            exited_at: Some(timestamp(e.at)).into(),
            ..Default::default()
        })
    }

    fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let spec = req
            .spec
            .as_ref()
            .ok_or_else(|| invalid(format!("{}/{}: exec without a spec", req.id, req.exec_id)))?;
        // Checked as JSON here, parsed as a process spec by the helper.
        let process: Box<RawValue> = serde_json::from_slice(&spec.value)
            .map_err(|e| invalid(format!("{}/{}: process spec: {e}", req.id, req.exec_id)))?;
        self.svc
            .exec(
                &req.id,
                &req.exec_id,
                req.terminal,
                [req.stdin.clone(), req.stdout.clone(), req.stderr.clone()],
                process,
            )
            .map_err(status)?;
        Ok(Empty::new())
    }

    fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        self.svc.set_paused(&req.id, true).map_err(status)?;
        Ok(Empty::new())
    }

    fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        self.svc.set_paused(&req.id, false).map_err(status)?;
        Ok(Empty::new())
    }

    fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let pids = self.svc.pids(&req.id).map_err(status)?;
        Ok(PidsResponse {
            processes: pids
                .into_iter()
                .map(|p| ProcessInfo {
                    pid: pid_u32(p),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let s = self.svc.stats(&req.id).map_err(status)?;
        let any = stats::to_any(&stats::to_metrics(&s))
            .map_err(|e| status(TaskError::Invalid(format!("encoding metrics: {e}"))))?;
        Ok(StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let reopen = req
            .annotations
            .get(REOPEN_LOG_ANNOTATION)
            .is_some_and(|v| v == "true");
        if reopen {
            self.svc.reopen_log(&req.id).map_err(status)?;
        }
        if let Some(any) = req.resources.as_ref() {
            let r: LinuxResources = serde_json::from_slice(&any.value)
                .map_err(|e| invalid(format!("{}: resources: {e}", req.id)))?;
            self.svc.update(&req.id, &r).map_err(status)?;
        } else if !reopen {
            return Err(invalid(format!("{}: update without resources", req.id)));
        }
        Ok(Empty::new())
    }

    fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        self.svc
            .resize_pty(pref(&req.id, &req.exec_id), req.width, req.height)
            .map_err(status)?;
        Ok(Empty::new())
    }

    fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        if req.stdin {
            self.svc
                .close_stdin(pref(&req.id, &req.exec_id))
                .map_err(status)?;
        }
        Ok(Empty::new())
    }

    fn connect(&self, _ctx: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let task_pid = self.svc.task_pid(&req.id).map_err(status)?;
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: pid_u32(task_pid),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _ctx: &TtrpcContext, req: ShutdownRequest) -> TtrpcResult<Empty> {
        let exiting = self.svc.shutdown(req.now);
        tracing::debug!(exiting, "shutdown requested");
        Ok(Empty::new())
    }
}
