//! Streaming exec: the command runs through the pod's shim (`Exec` with
//! FIFO stdio, a pty when tty), its FIFOs are copied to the client's
//! streams, resizes become `ResizePty`, the exit code goes on the error
//! stream. A client that leaves first gets its process killed and
//! deleted; every FIFO descriptor is owned by a task that ends with the
//! session.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::cri;
use berth_streaming::remotecommand::{CommandResult, OutputWriter, ServerStreams, StdinReader};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::requests::ProcessOverrides;
use super::ClientStreams;
use crate::pods::sandbox::SIGKILL;
use crate::pods::shim::ExecStdio;
use crate::pods::{fifo, new_id, PodError, PodManager, ShimClient};

/// After the process exited, output is copied until it ends, unless no
/// byte moved for this long (a background child that inherited the pipe
/// keeps it open forever).
const OUTPUT_IDLE: Duration = Duration::from_secs(2);
/// How long a killed exec may take to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Runs `req` against `streams` to the end and reports its result.
pub async fn run(
    pods: Arc<PodManager>,
    req: cri::ExecRequest,
    overrides: ProcessOverrides,
    streams: ServerStreams,
) {
    let id = req.container_id.clone();
    let (client, status) = ClientStreams::split(streams);
    let result = match prepare(&pods, &req, &overrides).await {
        Ok(exec) => exec.run(client).await,
        Err(e) => CommandResult::Error(crate::error::chain(&e)),
    };
    debug!(container_id = %id, ?result, "streaming exec finished");
    if let Err(err) = status.finish(result).await {
        debug!(error = %crate::error::chain(&err), "sending the exec status");
    }
}

/// A created-but-not-started exec and what cleans it up.
struct Exec {
    shim: ShimClient,
    pod_id: String,
    id: String,
    exec_id: String,
    dir: PathBuf,
    tty: bool,
    process_json: Vec<u8>,
    /// Set once the shim started the process (it must be killed if the
    /// session fails after that).
    started: AtomicBool,
}

/// Applies `o` to a process spec (JSON, as the runtime spec lays it out).
pub fn apply_overrides(process: &mut serde_json::Value, o: &ProcessOverrides) {
    let Some(obj) = process.as_object_mut() else {
        return;
    };
    if !o.env.is_empty() {
        let mut env: Vec<String> = obj
            .get("env")
            .and_then(|e| serde_json::from_value(e.clone()).ok())
            .unwrap_or_default();
        for kv in &o.env {
            let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
            env.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
            env.push(kv.clone());
        }
        obj.insert("env".into(), serde_json::json!(env));
    }
    if let Some(u) = &o.user {
        let mut user = obj
            .get("user")
            .cloned()
            .filter(serde_json::Value::is_object)
            .unwrap_or_else(|| serde_json::json!({}));
        if let Some(uo) = user.as_object_mut() {
            uo.insert("uid".into(), serde_json::json!(u.uid));
            uo.insert("gid".into(), serde_json::json!(u.gid));
            uo.insert(
                "additionalGids".into(),
                serde_json::json!(u.additional_gids),
            );
            uo.remove("username");
        }
        obj.insert("user".into(), user);
    }
    if let Some(cwd) = &o.cwd {
        obj.insert("cwd".into(), serde_json::json!(cwd));
    }
}

async fn prepare(
    pods: &PodManager,
    req: &cri::ExecRequest,
    overrides: &ProcessOverrides,
) -> Result<Exec, PodError> {
    let (c, shim) = pods.running_container_shim(&req.container_id).await?;
    let mut process = c.rec.process.clone();
    apply_overrides(&mut process, overrides);
    if let Some(obj) = process.as_object_mut() {
        obj.insert("args".into(), serde_json::json!(req.cmd));
        obj.insert("terminal".into(), serde_json::Value::Bool(req.tty));
        obj.remove("consoleSize");
    }
    let process_json = serde_json::to_vec(&process).map_err(|source| PodError::Json {
        id: c.id.clone(),
        source,
    })?;
    let exec_id = new_id()?[..32].to_string();
    let dir = pods
        .config()
        .container_state_dir(&c.id)
        .join(format!("exec-{exec_id}"));
    std::fs::create_dir_all(&dir).map_err(PodError::io("creating", &dir))?;
    Ok(Exec {
        shim,
        pod_id: c.pod_id,
        id: c.id,
        exec_id,
        dir,
        tty: req.tty,
        process_json,
        started: AtomicBool::new(false),
    })
}

/// Copies a FIFO to a client stream, counting bytes into `moved`, then
/// ends that stream.
async fn copy_out(
    mut from: tokio::net::unix::pipe::Receiver,
    mut to: OutputWriter,
    moved: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(err) => {
                debug!(%err, "exec output read ended");
                break;
            }
        };
        if let Err(err) = to.write_all(&buf[..n]).await {
            debug!(%err, "exec output write ended");
            return;
        }
        moved.fetch_add(n as u64, Ordering::Relaxed);
    }
    let _ = to.shutdown().await;
}

/// Waits for the output copies after the exit; gives up on one that
/// stayed idle for [`OUTPUT_IDLE`].
async fn drain_outputs(outputs: Vec<(JoinHandle<()>, Arc<AtomicU64>)>) {
    for (mut task, moved) in outputs {
        let mut last = moved.load(Ordering::Relaxed);
        loop {
            match tokio::time::timeout(OUTPUT_IDLE, &mut task).await {
                Ok(_) => break,
                Err(_) => {
                    let now = moved.load(Ordering::Relaxed);
                    if now == last {
                        debug!("exec output idle after the exit; closing it");
                        task.abort();
                        break;
                    }
                    last = now;
                }
            }
        }
    }
}

fn io_path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Exec {
    async fn run(self, streams: ClientStreams) -> CommandResult {
        let result = self.run_inner(streams).await;
        if result.is_err() && self.started.load(Ordering::SeqCst) {
            self.kill().await;
        }
        self.cleanup().await;
        match result {
            Ok(r) => r,
            Err(e) => CommandResult::Error(crate::error::chain(&e)),
        }
    }

    async fn run_inner(&self, streams: ClientStreams) -> Result<CommandResult, PodError> {
        let ClientStreams {
            stdin,
            stdout,
            stderr,
            resize,
            mut disconnected,
        } = streams;
        // A terminal has one output: a stderr stream would stay empty.
        let stderr = stderr.filter(|_| !self.tty);
        let stdin_path = self.dir.join("stdin");
        let out_path = self.dir.join("stdout");
        let err_path = self.dir.join("stderr");
        let mut stdio = ExecStdio {
            terminal: self.tty,
            ..Default::default()
        };
        let mut stdin_fifo = None;
        if stdin.is_some() {
            fifo::create(&stdin_path).map_err(PodError::io("creating exec FIFO", &stdin_path))?;
            stdin_fifo =
                Some(fifo::writer(&stdin_path).map_err(PodError::io("opening", &stdin_path))?);
            stdio.stdin = io_path(&stdin_path);
        }
        let mut placeholders = Vec::new();
        if stdout.is_some() {
            placeholders.push(
                fifo::create_placeholder_reader(&out_path)
                    .map_err(PodError::io("creating exec FIFO", &out_path))?,
            );
            stdio.stdout = io_path(&out_path);
        }
        if stderr.is_some() {
            placeholders.push(
                fifo::create_placeholder_reader(&err_path)
                    .map_err(PodError::io("creating exec FIFO", &err_path))?,
            );
            stdio.stderr = io_path(&err_path);
        }
        self.shim
            .exec_with(&self.id, &self.exec_id, self.process_json.clone(), &stdio)
            .await
            .map_err(PodError::shim(&self.pod_id))?;
        self.shim
            .start_task(&self.id, &self.exec_id)
            .await
            .map_err(PodError::shim(&self.pod_id))?;
        self.started.store(true, Ordering::SeqCst);

        // The shim holds the write ends now: readers see EOF when it closes.
        let mut outputs = Vec::new();
        for (path, writer) in [(&out_path, stdout), (&err_path, stderr)] {
            let Some(w) = writer else { continue };
            let r = fifo::reader(path).map_err(PodError::io("opening exec FIFO", path))?;
            let moved = Arc::new(AtomicU64::new(0));
            outputs.push((tokio::spawn(copy_out(r, w, moved.clone())), moved));
        }
        drop(placeholders);
        let mut side_tasks: Vec<JoinHandle<()>> = Vec::new();
        if let (Some(client), Some(fifo)) = (stdin, stdin_fifo) {
            side_tasks.push(tokio::spawn(copy_stdin(
                client,
                fifo,
                self.shim.clone(),
                self.id.clone(),
                self.exec_id.clone(),
            )));
        }
        if let Some(mut sizes) = resize {
            let (shim, id, exec_id) = (self.shim.clone(), self.id.clone(), self.exec_id.clone());
            side_tasks.push(tokio::spawn(async move {
                while let Some(s) = sizes.recv().await {
                    let (w, h) = (u32::from(s.width), u32::from(s.height));
                    if let Err(e) = shim.resize_pty(&id, &exec_id, w, h).await {
                        debug!(error = %crate::error::chain(&e), "exec resize");
                    }
                }
            }));
        }

        let exit = tokio::select! {
            r = self.shim.wait(&self.id, &self.exec_id, None) => Some(r),
            _ = disconnected.wait() => None,
        };
        let result = match exit {
            Some(Ok(exit)) => {
                let code = i32::try_from(exit.exit_status).unwrap_or(255);
                drain_outputs(outputs).await;
                Ok(if code == 0 {
                    CommandResult::Success
                } else {
                    CommandResult::ExitCode(code)
                })
            }
            Some(Err(e)) => {
                outputs.iter().for_each(|(t, _)| t.abort());
                Err(PodError::shim(&self.pod_id)(e))
            }
            None => {
                debug!(container_id = %self.id, exec_id = %self.exec_id, "client left; killing the exec");
                outputs.iter().for_each(|(t, _)| t.abort());
                self.kill().await;
                Ok(CommandResult::Error("the client disconnected".into()))
            }
        };
        side_tasks.iter().for_each(JoinHandle::abort);
        result
    }

    /// SIGKILL and wait until the shim reaped it (so Delete succeeds).
    async fn kill(&self) {
        if let Err(e) = self
            .shim
            .kill(&self.id, &self.exec_id, SIGKILL, false)
            .await
        {
            if !e.is_not_found() {
                warn!(error = %crate::error::chain(&e), exec_id = %self.exec_id, "killing an abandoned exec");
            }
        }
        if let Err(e) = self
            .shim
            .wait(&self.id, &self.exec_id, Some(KILL_WAIT))
            .await
        {
            debug!(error = %crate::error::chain(&e), "waiting for a killed exec");
        }
    }

    async fn cleanup(&self) {
        if let Err(e) = self.shim.delete(&self.id, &self.exec_id).await {
            if !e.is_not_found() {
                debug!(container_id = %self.id, exec_id = %self.exec_id, error = %crate::error::chain(&e), "exec delete failed");
            }
        }
        if let Err(err) = std::fs::remove_dir_all(&self.dir) {
            warn!(?err, dir = %self.dir.display(), "cannot remove exec dir");
        }
    }
}

/// Copies the client's stdin into the exec's FIFO; at the client's EOF
/// the shim closes the process' stdin (the shim itself keeps the FIFO
/// open, so closing our end alone would not reach the process).
async fn copy_stdin(
    mut client: StdinReader,
    mut fifo: tokio::net::unix::pipe::Sender,
    shim: ShimClient,
    id: String,
    exec_id: String,
) {
    if let Err(err) = tokio::io::copy(&mut client, &mut fifo).await {
        debug!(%err, "exec stdin copy ended");
    }
    // Everything written is in the pipe before CloseIO drops the shim's end.
    drop(fifo);
    if let Err(e) = shim.close_stdin(&id, &exec_id).await {
        debug!(error = %crate::error::chain(&e), "closing exec stdin");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::streaming::requests::ExecUser;

    #[test]
    fn overrides_replace_env_keys_user_and_cwd() {
        let mut p = serde_json::json!({
            "env": ["PATH=/bin", "A=1", "B=2"],
            "user": {"uid": 0, "gid": 0, "username": "root"},
            "cwd": "/",
        });
        apply_overrides(
            &mut p,
            &ProcessOverrides {
                env: vec!["A=9".into(), "C=3".into()],
                user: Some(ExecUser {
                    uid: 1000,
                    gid: 100,
                    additional_gids: vec![100, 27],
                }),
                cwd: Some("/tmp".into()),
            },
        );
        assert_eq!(
            p["env"],
            serde_json::json!(["PATH=/bin", "B=2", "A=9", "C=3"])
        );
        assert_eq!(
            p["user"],
            serde_json::json!({"uid": 1000, "gid": 100, "additionalGids": [100, 27]})
        );
        assert_eq!(p["cwd"], "/tmp");
        // No overrides: untouched.
        let before = p.clone();
        apply_overrides(&mut p, &ProcessOverrides::default());
        assert_eq!(p, before);
    }

    #[tokio::test(start_paused = true)]
    async fn output_drains_while_it_moves_and_is_cut_when_idle() {
        // Moving: 5 chunks 1 s apart (longer than OUTPUT_IDLE in total).
        let moved = Arc::new(AtomicU64::new(0));
        let m = moved.clone();
        let busy = tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                m.fetch_add(1, Ordering::Relaxed);
            }
        });
        drain_outputs(vec![(busy, moved.clone())]).await;
        assert_eq!(moved.load(Ordering::Relaxed), 5);
        // Idle forever (a background child holds the pipe): cut.
        let idle = tokio::spawn(std::future::pending::<()>());
        let started = tokio::time::Instant::now();
        drain_outputs(vec![(idle, Arc::new(AtomicU64::new(0)))]).await;
        assert!(started.elapsed() >= OUTPUT_IDLE);
        assert!(started.elapsed() < OUTPUT_IDLE * 2);
    }
}
